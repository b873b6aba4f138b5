"""``DictState``, the default untyped state (public as ``context.state_store.DictState``)."""

from __future__ import annotations

from ..events import DictLikeModel


class DictState(DictLikeModel):
    """The default, untyped state: a dict-like pydantic model (``state["k"]``, ``state.k``).

    A key may be named like a mapping method (``items``, ``get``): ``state["items"]`` and
    ``ctx.store.get("items")`` are the stored value, ``state.items()`` the method.
    """


# Snapshots record a state's class by module and name: name the public module, where
# upstream's DictState lives too, not this private one.
DictState.__module__ = "celery_workflows.context.state_store"
