"""``WorkflowHandler``: the caller's handle on one run."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import warnings
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any

from ._sync import run_sync
from .errors import WorkflowCancelledByUser, WorkflowRuntimeError
from .events import Event, InternalDispatchEvent, StopEvent, WorkflowCancelledEvent

if TYPE_CHECKING:
    from .context.context import Context
    from .context.ports import RunPort


class WorkflowHandler:
    """Await it for the result; stream its events; send it events; cancel it.

    ``run_id`` identifies the run in the run store: ``runtime.get_handler(run_id)`` gives
    an equivalent handle in another process.
    """

    def __init__(self, port: RunPort, ctx: Context[Any]) -> None:
        self._port = port
        self.run_id = port.run_id
        self._ctx = ctx
        self._stop: StopEvent | None = None
        self._error: BaseException | None = None
        self._streamed = False

    @property
    def ctx(self) -> Context[Any]:
        """The run's Context (state, snapshot, send_event)."""
        return self._ctx

    async def stop_event_result(self) -> StopEvent:
        """Wait for the run and return its StopEvent (raise what it failed with)."""
        try:
            self._stop = await self._port.result()
        except BaseException as exc:
            self._ended_with(exc)
            raise
        return self._stop

    def _ended_with(self, exc: BaseException) -> None:
        """Record the error the run ended with (a cancel stands for its stop event)."""
        self._error = exc
        if isinstance(exc, WorkflowCancelledByUser) and self._stop is None:
            self._stop = WorkflowCancelledEvent()

    async def _await_result(self) -> Any:
        stop = await self.stop_event_result()
        return stop.result if type(stop) is StopEvent else stop

    def __await__(self) -> Generator[Any, None, Any]:
        return self._await_result().__await__()

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run finishes (for sync code with no running loop)."""

        async def wait() -> Any:
            return await asyncio.wait_for(self._await_result(), timeout)

        return run_sync(wait, inline=False)

    def get_stop_event(self) -> StopEvent | None:
        """The run's StopEvent once it finished, else None."""
        return self._stop

    def is_done(self) -> bool:
        """True when the run is completed, failed or cancelled."""
        return not self._port.is_running()

    def done(self) -> bool:
        """Deprecated alias of :meth:`is_done`."""
        warnings.warn(
            "handler.done() is deprecated; use is_done()", DeprecationWarning, stacklevel=2
        )
        return self.is_done()

    def exception(self) -> BaseException | None:
        """The error the run ended with, once known (deprecated upstream: warns once)."""
        _warn_exception_deprecated()
        return self._error

    def cancelled(self) -> bool:
        """True when the run was cancelled."""
        return self._port.status() == "cancelled"

    async def stream_events(self, expose_internal: bool = False) -> AsyncGenerator[Event, None]:
        """Events written to the run's stream, ending with its StopEvent. Single use."""
        if self._streamed:
            raise WorkflowRuntimeError("All the streamed events have already been consumed.")
        events = self._port.stream(internal=expose_internal)
        try:
            async for event in events:
                if isinstance(event, InternalDispatchEvent) and not expose_internal:
                    continue
                yield event
                if isinstance(event, StopEvent):
                    self._streamed = True
                    break
        finally:
            # Closed here, not by the loop's finalizer a turn later: until then the
            # store's stream reader would keep the run's workflow alive.
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def cancel_run(self, *, timeout: float = 5.0) -> None:
        """Cancel the run and wait up to ``timeout`` seconds for it to have ended;
        awaiting the handler then raises WorkflowCancelledByUser."""
        await self._port.cancel()
        # The cancel commits the run's end; what is left is the waiters seeing it. As
        # upstream, exception() tells how the run ended once this returns.
        outcome = asyncio.ensure_future(self._port.result())
        done, _ = await asyncio.wait({outcome}, timeout=timeout)
        if not done:
            outcome.cancel()
            with contextlib.suppress(BaseException):
                await outcome
        elif (error := outcome.exception()) is not None:
            self._ended_with(error)

    async def send_event(self, event: Event, step: str | None = None) -> None:
        """Send ``event`` into the run (e.g. a HumanResponseEvent)."""
        await self._port.send(event, step)

    def __str__(self) -> str:
        name = self._port.workflow_name
        return f"WorkflowHandler(workflow={name}, run_id={self.run_id}, result={self._stop})"


@functools.lru_cache(maxsize=1)
def _warn_exception_deprecated() -> None:
    # Once per process, as upstream.
    warnings.warn(
        "WorkflowHandler.exception() is deprecated and will be removed in a future release",
        DeprecationWarning,
        stacklevel=3,
    )
