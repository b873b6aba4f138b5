"""Resource factories in a module WITHOUT ``from __future__ import annotations``.

Here the ``Annotated[...]`` annotations of local factories are evaluated when each
function is defined (objects, not strings), the other way user code may be written.
"""

from types import SimpleNamespace
from typing import Annotated, Any


def layered(impl: SimpleNamespace, built: list[str]) -> Any:
    """A step taking a factory that takes another factory's value (both local)."""
    Resource = impl.resource.Resource

    def make_base() -> list[str]:
        built.append("base")
        return ["base"]

    def make_top(base: Annotated[list[str], Resource(make_base)]) -> list[str]:
        built.append("top")
        return [*base, "top"]

    class Eager(impl.Workflow):
        @impl.step
        async def s(
            self, ev: impl.StartEvent, top: Annotated[list[str], Resource(make_top)]
        ) -> impl.StopEvent:
            return impl.StopEvent(result=top)

    return Eager
