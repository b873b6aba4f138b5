"""PostgreSQL LISTEN: one listener connection per process and database, fanned out.

Every transaction that appends to a run's stream or changes its status queues
``pg_notify('cw_runs', run_id)`` (:mod:`._txn`), which PostgreSQL delivers at commit. A
:class:`PgNotifier` is a :class:`~celery_workflows.store.changes.LocalNotifier` whose
watches are also woken by those notifications: a daemon thread holds one psycopg
connection in ``LISTEN cw_runs`` and wakes the watches of each run id it hears.

The thread starts with the first subscription (a worker that never waits on a result
opens no connection). When the connection breaks (a database restart, the backend
killed) it reconnects with bounded exponential backoff and then wakes every watch:
whatever committed while nobody listened is read by its waiters at once.

Stores of one database in one process share the notifier (:func:`acquire`), so many
stores and many waiters cost one connection; after ``fork()`` a child builds its own.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import psycopg

from celery_workflows.store.changes import LocalNotifier
from celery_workflows.store.sql.queries import NOTIFY_CHANNEL

__all__ = ["APPLICATION_NAME", "PgNotifier", "StoreChanges", "acquire", "release"]

log = logging.getLogger("celery_workflows.store")

#: ``application_name`` of listener connections (``pg_stat_activity`` shows them).
APPLICATION_NAME = "celery_workflows.listener"
#: Backoff between reconnection attempts: first and longest wait, in seconds.
BACKOFF = (0.05, 2.0)
#: How often the thread looks at its stop flag while no notification arrives.
_TICK = 0.5


class PgNotifier(LocalNotifier):
    """Watches woken by PostgreSQL notifications; see the module docstring.

    ``connect_kwargs`` are psycopg's (``host``, ``dbname``, ...). ``connected`` is set
    while the listener is in ``LISTEN``; ``backend_pid`` is its server process then.
    """

    def __init__(self, connect_kwargs: dict[str, Any]) -> None:
        super().__init__(pushes=True)
        self._kwargs = {
            **connect_kwargs,
            "autocommit": True,
            "application_name": APPLICATION_NAME,
            "connect_timeout": 5,
            # A peer that vanished without closing the socket is noticed in ~25 s.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.backend_pid: int | None = None
        #: Connections made so far (the first one included).
        self.connections = 0

    def _subscribed(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="cw-listener", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """End the listener thread and close its connection."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        delay = BACKOFF[0]
        while not self._stop.is_set():
            try:
                self._listen()
                delay = BACKOFF[0]
            except Exception as exc:  # the database is down or the backend was killed
                log.warning("run-change listener lost its connection (%s); retrying", exc)
            finally:
                self.connected.clear()
                self.backend_pid = None
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, BACKOFF[1])

    def _listen(self) -> None:
        with psycopg.connect(**self._kwargs) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self.connections += 1
            self.backend_pid = conn.info.backend_pid
            self.connected.set()
            # Commits made while nobody listened were not heard: every waiter reads.
            self.wake_all()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=_TICK):
                    self.wake(note.payload)


_lock = threading.Lock()
#: (pid, database) -> (notifier, stores using it).
_shared: dict[tuple[int, str], tuple[PgNotifier, int]] = {}


def acquire(key: str, connect_kwargs: dict[str, Any]) -> PgNotifier:
    """The process's notifier for the database ``key`` (made on first use)."""
    with _lock:
        found = _shared.get((os.getpid(), key))
        notifier = found[0] if found is not None else PgNotifier(connect_kwargs)
        _shared[(os.getpid(), key)] = (notifier, (found[1] if found else 0) + 1)
        return notifier


def release(key: str) -> None:
    """A store of database ``key`` closed; the last one stops the listener."""
    with _lock:
        found = _shared.get((os.getpid(), key))
        if found is None:
            return
        notifier, users = found
        if users > 1:
            _shared[(os.getpid(), key)] = (notifier, users - 1)
            return
        del _shared[(os.getpid(), key)]
    notifier.stop()


class StoreChanges:
    """A SQL store's side of the wake-up seam: its notifier, made on first use.

    PostgreSQL (psycopg): the process's shared :class:`PgNotifier` of the database.
    SQLite: a :class:`LocalNotifier` woken after this store's own commits (other
    processes' commits are not seen: waiters poll).
    """

    def __init__(self, url: str, connect_kwargs: dict[str, Any] | None) -> None:
        self._url = url
        self._kwargs = connect_kwargs
        self._lock = threading.Lock()
        self._notifier: LocalNotifier | None = None

    def notifier(self) -> LocalNotifier:
        """The notifier (acquired on first call)."""
        if self._notifier is None:
            with self._lock:
                if self._notifier is None:
                    if self._kwargs is None:
                        self._notifier = LocalNotifier()
                    else:
                        self._notifier = acquire(self._url, self._kwargs)
        return self._notifier

    def committed(self, run_id: str) -> None:
        """A commit of this process woke ``run_id``'s waiters (NOTIFY does it on
        PostgreSQL, for every process alike)."""
        notifier = self._notifier
        if notifier is not None and not notifier.pushes:
            notifier.wake(run_id)

    def close(self) -> None:
        """Release the shared notifier (the last store of the database stops it)."""
        with self._lock:
            notifier, self._notifier = self._notifier, None
        if notifier is not None and self._kwargs is not None:
            release(self._url)
