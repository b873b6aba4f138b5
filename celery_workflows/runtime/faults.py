"""Named fault-injection points, for crash tests of real worker processes.

``CELERY_WORKFLOWS_FAULT=<point>:<marker file>`` makes the process that reaches
``<point>`` SIGKILL itself there, once: the first process to create the marker file dies,
later ones pass. Unset (production), a fault point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import time

FAULT_ENV = "CELERY_WORKFLOWS_FAULT"


def fault_point(name: str) -> None:
    """Die here if the environment asks for a fault at ``name`` (once per marker file)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, marker = spec.partition(":")
    if point != name:
        return
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{time.time()}".encode())
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
