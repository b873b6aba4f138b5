"""Run a coroutine from sync code, whether or not an event loop is running here."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="cw-sync")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]], *, inline: bool) -> T:
    """Drive a coroutine to completion from sync code and return its result.

    ``inline`` is for coroutines known never to suspend (the in-memory store's reads):
    they finish in one step on this thread, even inside a running loop. Others run on a
    helper thread with a private loop, so a loop running here is never re-entered.
    """
    if not inline:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(make())
        return _pool.submit(asyncio.run, make()).result()
    coro = make()
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("an in-memory store operation suspended; it must not do I/O")
