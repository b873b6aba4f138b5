"""The engine of a SQL run store: connections, transactions, and error translation.

Everything here is blocking and runs on a :class:`~._threads.TxnThread`, never on the loop.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RootTransaction, create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from celery_workflows.errors import StoreError, StoreUnavailableError
from celery_workflows.store.sql._codec import engine_json_serializer
from celery_workflows.store.sql._pg import PgHotPath
from celery_workflows.store.sql.dialects import (
    WRITE_OPTION,
    SqlDialect,
    dialect_for,
    normalize_url,
)
from celery_workflows.store.sql.queries import Queries

__all__ = ["Database", "masked_url"]

T = TypeVar("T")

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_QUERY_PARAM = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")
#: Query parameters that carry a secret (libpq takes ``password`` and ``sslpassword``).
_SECRET_PARAM = re.compile(r"pass(word|wd)|^pwd$|secret|token", re.IGNORECASE)


def masked_url(url: str | URL) -> str:
    """The URL with its secrets replaced by ``***``: the password in the user part and
    query parameters such as ``?password=`` (also for URLs that do not parse)."""
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = make_url(url)
        except sa_exc.ArgumentError:
            return _QUERY_PARAM.sub(_mask_param, _PASSWORD.sub(r"\1***@", url))
    query = {k: "***" if _SECRET_PARAM.search(k) else v for k, v in parsed.query.items()}
    # Not URL-quoted: "***" reads as a mask, "%2A%2A%2A" would not.
    return parsed.set(query={}).render_as_string(hide_password=True) + _query_text(query)


def _query_text(query: dict[str, Any]) -> str:
    pairs = [
        f"{key}={item}"
        for key, value in sorted(query.items())
        for item in (value if isinstance(value, tuple) else (value,))
    ]
    return "?" + "&".join(pairs) if pairs else ""


def _mask_param(match: re.Match[str]) -> str:
    separator, key, value = match.groups()
    return f"{separator}{key}={'***' if _SECRET_PARAM.search(key) else value}"


class Database:
    """An engine plus what the store needs around it. Construction does not connect."""

    def __init__(
        self,
        url: str | URL,
        *,
        busy_timeout_s: float,
        pool_size: int,
        max_overflow: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.url = _parse(url)
        self.masked_url = masked_url(self.url)
        self.dialect: SqlDialect = dialect_for(self.url)
        self.busy_timeout_s = busy_timeout_s
        self.clock = clock
        self.queries = Queries(self.dialect)
        #: The pipelined hot path, on PostgreSQL through psycopg 3 (None elsewhere).
        self.hot = PgHotPath(self.queries) if self.url.get_driver_name() == "psycopg" else None
        try:
            self.engine: Engine = create_engine(
                self.url,
                json_serializer=engine_json_serializer,
                pool_size=pool_size,
                max_overflow=max_overflow,
                **self.dialect.engine_options(busy_timeout_s),
            )
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise StoreUnavailableError(
                f"cannot open run store database {self.masked_url}: {exc}"
            ) from exc
        self.dialect.install(self.engine)

    def connect(self, *, write: bool) -> Connection:
        """A pooled connection; ``write`` makes SQLite begin with BEGIN IMMEDIATE."""
        try:
            conn = self.engine.connect()
        except sa_exc.DBAPIError as exc:
            raise self.unavailable(exc) from exc
        except sa_exc.TimeoutError as exc:
            raise StoreUnavailableError(
                f"run store database {self.masked_url}: every pooled connection is in use "
                f"({exc}); raise pool_size/max_overflow or lower the concurrency"
            ) from exc
        if write:
            conn.execution_options(**{WRITE_OPTION: True})
        return conn

    def begin(
        self, first: Callable[[Connection], T], *, write: bool
    ) -> tuple[Connection, RootTransaction, T]:
        """Open a transaction and run its first part, ``first``, in it.

        Pooled connections are not pinged on checkout (that is a round trip per
        transaction); when ``first`` meets a connection the server dropped while it was
        pooled, it is run again, once, on a new one. Safe, because nothing of ``first``
        can have been committed.
        """
        for last_try in (False, True):
            conn = self.connect(write=write)
            try:
                trans = conn.begin()
                return conn, trans, first(conn)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    conn.close()
                stale = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
                if last_try or not stale:
                    raise
        raise AssertionError("unreachable")

    def transaction(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction (commit on return), translating driver errors."""
        with self.guard():
            conn, trans, result = self.begin(fn, write=write)
            with conn:
                trans.commit()
            return result

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn driver errors raised inside the block into store errors."""
        try:
            yield
        except Exception as exc:
            translated = self.translate(exc)
            if translated is None:
                raise
            raise translated from exc

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        """The error for "cannot reach the database" (password masked)."""
        return StoreUnavailableError(
            f"run store database {self.masked_url} is unavailable: {_reason(exc)}"
        )

    def translate(self, exc: BaseException) -> BaseException | None:
        """A store error for a driver error, or None to let it through unchanged."""
        if not isinstance(exc, sa_exc.DBAPIError):
            return None
        if exc.orig is not None and self.dialect.is_lock_timeout(exc.orig):
            return StoreUnavailableError(
                f"run store database {self.masked_url}: gave up after {self.busy_timeout_s}s "
                f"waiting for a lock ({_reason(exc)}); another transaction held it that long"
            )
        if exc.connection_invalidated:
            return self.unavailable(exc)
        text = _reason(exc)
        if "no such table" in text or ("relation" in text and "does not exist" in text):
            return StoreError(
                f"run store database {self.masked_url} has no celery_workflows schema "
                f"({text}); run `python -m celery_workflows.store.sql upgrade <url>` or "
                "pass create_schema=True"
            )
        return None

    def listen_args(self) -> dict[str, Any] | None:
        """psycopg's connection arguments for the LISTEN connection (None: the driver is
        not psycopg, so nothing listens)."""
        if self.hot is None:
            return None
        _, kwargs = self.engine.dialect.create_connect_args(self.url)
        return {k: v for k, v in kwargs.items() if k != "context"}

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _parse(url: str | URL) -> URL:
    try:
        parsed = normalize_url(url)
        dialect_for(parsed)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise StoreUnavailableError(f"bad run store database URL {masked_url(url)}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreUnavailableError(
            f"bad run store database URL {masked_url(parsed)}: an in-memory SQLite database "
            "is private to one connection; use a file (sqlite:///path/runs.db) or "
            "InMemoryRunStore"
        )
    return parsed


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return " ".join(str(orig if orig is not None else exc).split())
