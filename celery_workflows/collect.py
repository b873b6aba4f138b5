"""How a ``list[E]`` fan-in parameter is released: ``Collect`` and its cardinalities.

Put the marker on the parameter with ``Annotated``::

    @step
    async def fastest(self, results: Annotated[list[Result], Collect(Take(1))]) -> StopEvent:
        ...

A bare ``list[E]`` parameter means ``Collect(All())``.

- ``All()``: fire once when the stream is settled (every branch of the fan-out finished:
  it delivered its member or was dropped by a step returning ``None``), with the members
  in the order they arrived. A fan-out that returned ``[]`` settles at once: the step
  fires with ``[]``.
- ``Take(n)``: fire once when the ``n``-th member arrives, with the first ``n``; members
  after that are dropped. A stream that settles with fewer fires with what arrived.

Streams exist only where a step returned a list; events sent with ``ctx.send_event``
never join one (a send targeted at a collecting step is refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["All", "Cardinality", "Collect", "Take"]


@dataclass(frozen=True)
class Cardinality:
    """When a collecting step fires and with which members (use ``All`` or ``Take``)."""


@dataclass(frozen=True)
class All(Cardinality):
    """Fire once the stream is settled, with every member (the default)."""


@dataclass(frozen=True)
class Take(Cardinality):
    """Fire at the ``n``-th member with the first ``n`` (or at settling with fewer)."""

    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError("Take(n) requires an integer n >= 1")


@dataclass(frozen=True)
class Collect:
    """The marker of a ``list[E]`` parameter: how its stream's members are released."""

    cardinality: Cardinality = field(default_factory=All)
