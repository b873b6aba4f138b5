"""Data never makes a process import code (DESIGN invariant 10).

A tagged value (``{"__is_pydantic": true, "qualified_name": "<module.Class>", ...}``) or an
``exception_type`` inside state, an event, a run error or a snapshot names a module. Each
test puts the name of a throwaway module into such a payload, decodes it on one path and
checks the module was never imported: its import would leave a flag file behind and an
entry in ``sys.modules``.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from celery_workflows import Context, Workflow, step
from celery_workflows.context import JsonSerializer
from celery_workflows.context.state_store import DictState, deserialize_state_from_dict
from celery_workflows.errors import ContextSerdeError, InvalidMessageError
from celery_workflows.events import (
    Event,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    UnreconstructedException,
    WorkflowFailedEvent,
)
from celery_workflows.runtime.binding import bind
from celery_workflows.runtime.codec import JsonCodec
from celery_workflows.runtime.local import LocalRuntime
from celery_workflows.store.sql import SqlRunStore

TRAP_SOURCE = """
from pathlib import Path

Path({flag!r}).write_text("imported")


class Boom(Exception):
    pass


class Model:
    @classmethod
    def model_validate(cls, value):
        return cls()

    @classmethod
    def from_dict(cls, value):
        return cls()
"""


@dataclass
class Trap:
    """A module on ``sys.path`` whose import is recorded."""

    module: str
    flag: Path

    def name(self, attr: str) -> str:
        return f"{self.module}.{attr}"

    @property
    def imported(self) -> bool:
        return self.flag.exists() or self.module in sys.modules


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Trap]:
    module = f"cw_trap_{uuid.uuid4().hex[:10]}"
    flag = tmp_path / "imported.flag"
    (tmp_path / f"{module}.py").write_text(TRAP_SOURCE.format(flag=str(flag)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Trap(module, flag)
    sys.modules.pop(module, None)


def failed_event_payload(trap: Trap) -> dict[str, Any]:
    """What a web client may post: a framework event whose nested exception names a module."""
    return {
        "__is_pydantic": True,
        "qualified_name": "workflows.events.WorkflowFailedEvent",
        "value": {
            "step_name": "posted",
            "exception": {"exception_type": trap.name("Boom"), "exception_message": "posted"},
        },
    }


def look_alike(trap: Trap) -> dict[str, Any]:
    """A user's dict that looks tagged but names a class nobody registered."""
    return {"__is_pydantic": True, "qualified_name": trap.name("Model"), "value": {"a": [1, 2]}}


class Stored(Event):
    pass


class Keep(Workflow):
    """Stores the posted value in untyped state; a second step reads it back."""

    @step
    async def store(self, ctx: Context, ev: StartEvent) -> Stored:
        await ctx.store.set("posted", ev.get("posted"))
        return Stored()

    @step
    async def read(self, ctx: Context, ev: Stored) -> StopEvent:
        return StopEvent(result=await ctx.store.get("posted"))


class LocalError(Exception):
    """An exception no serializer was told about."""


class Raise(Workflow):
    @step
    async def fail(self, ev: StartEvent) -> StopEvent:
        raise LocalError("local failure")


@pytest.fixture
async def sqlite_runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    store = SqlRunStore(f"sqlite:///{tmp_path / 'runs.db'}", create_schema=True)
    try:
        yield LocalRuntime(store)
    finally:
        await store.close()


def json_codec() -> JsonCodec:
    codec = bind(Keep(), payloads="json").codec
    assert isinstance(codec, JsonCodec)
    return codec


# --- the failure events' nested fields ---------------------------------------------------


def test_a_failure_event_naming_a_module_validates_without_importing_it(trap: Trap) -> None:
    event = WorkflowFailedEvent.model_validate(failed_event_payload(trap)["value"])
    assert isinstance(event.exception, UnreconstructedException)
    assert not trap.imported


def test_an_unknown_exception_degrades_keeping_its_type_name_and_message(trap: Trap) -> None:
    codec = json_codec()
    exc = codec.decode_error({"exception_type": trap.name("Boom"), "exception_message": "m"})
    assert isinstance(exc, UnreconstructedException)
    assert exc.original_type == trap.name("Boom")
    assert str(exc) == "m"  # as upstream's stand-in: the message alone
    assert trap.name("Boom") in repr(exc)
    assert not trap.imported


def test_a_degraded_exception_keeps_its_original_type_through_another_round_trip(
    trap: Trap,
) -> None:
    codec = json_codec()
    payload = {"exception_type": trap.name("Boom"), "exception_message": "m"}
    again = codec.decode_error(codec.encode_error(codec.decode_error(payload)))
    assert isinstance(again, UnreconstructedException)
    assert again.original_type == trap.name("Boom")
    assert str(again) == str(codec.decode_error(payload))
    assert not trap.imported


def test_builtin_and_framework_exceptions_are_rebuilt() -> None:
    codec = json_codec()
    exc = codec.decode_error({"exception_type": "builtins.KeyError", "exception_message": "k"})
    assert type(exc) is KeyError
    timeout = codec.decode_error(
        {
            "exception_type": "celery_workflows.errors.WorkflowTimeoutError",
            "exception_message": "late",
        }
    )
    assert type(timeout).__name__ == "WorkflowTimeoutError"


def test_a_builtin_name_that_is_not_an_exception_is_not_called() -> None:
    exc = json_codec().decode_error({"exception_type": "builtins.exit", "exception_message": "0"})
    assert isinstance(exc, UnreconstructedException)


def test_a_step_failed_event_naming_a_module_as_input_event_imports_nothing(
    trap: Trap,
) -> None:
    value = {
        "step_name": "s",
        "input_event": {"__is_pydantic": True, "qualified_name": trap.name("Model"), "value": {}},
        "exception": {"exception_type": "builtins.ValueError", "exception_message": "x"},
        "attempts": 1,
        "elapsed_seconds": 0.0,
        "failed_at": "2024-01-01T00:00:00Z",
    }
    with pytest.raises(ValueError):
        StepFailedEvent.model_validate(value)
    assert not trap.imported


# --- the JSON codec (state, events) ------------------------------------------------------


def test_dict_state_holding_a_failure_event_payload_decodes_without_import(trap: Trap) -> None:
    codec = json_codec()
    state = codec.decode_state({"_data": {"posted": failed_event_payload(trap)}}, for_edit=False)
    assert isinstance(state, DictState)
    assert isinstance(state["posted"].exception, UnreconstructedException)
    assert not trap.imported


def test_a_look_alike_dict_in_dict_state_round_trips_as_the_same_dict(trap: Trap) -> None:
    codec = json_codec()
    original = {"nested": look_alike(trap), "plain": 1}
    state = codec.decode_state(codec.encode_state(DictState(_data=original)), for_edit=True)
    assert isinstance(state, DictState)
    assert dict(state.items()) == original
    assert not trap.imported


def test_an_event_of_an_unregistered_type_is_refused_naming_it(trap: Trap) -> None:
    with pytest.raises(InvalidMessageError, match=trap.name("Model")):
        json_codec().decode_event(look_alike(trap))
    assert not trap.imported


def test_the_default_json_serializer_imports_nothing(trap: Trap) -> None:
    serializer = JsonSerializer()
    assert serializer.deserialize_value(look_alike(trap)) == look_alike(trap)
    with pytest.raises(ValueError, match="not registered"):
        serializer.resolve_class(trap.name("Model"))
    event = serializer.deserialize_value(failed_event_payload(trap))
    assert isinstance(event.exception, UnreconstructedException)
    assert not trap.imported


def test_a_typed_state_payload_naming_an_unknown_class_is_refused_without_import(
    trap: Trap,
) -> None:
    payload = {"state_data": json.dumps(look_alike(trap)), "state_type": "Model"}
    with pytest.raises(ValueError, match=f"Class {trap.name('Model')} is not registered"):
        deserialize_state_from_dict(payload, JsonSerializer())
    assert not trap.imported


def test_a_typed_state_payload_resolves_against_the_state_type_passed_in() -> None:
    class NeverStored(BaseModel):  # no store of this process ever held one
        n: int = 0

    tagged = {
        "__is_pydantic": True,
        "value": {"n": 7},
        "qualified_name": f"{__name__}.NeverStored",
    }
    payload = {"state_data": json.dumps(tagged), "state_type": "NeverStored"}
    with pytest.raises(ValueError, match="is not registered"):
        deserialize_state_from_dict(payload, JsonSerializer())
    restored = deserialize_state_from_dict(payload, JsonSerializer(), state_type=NeverStored)
    assert restored == NeverStored(n=7)


def test_an_exception_registered_on_the_serializer_is_rebuilt() -> None:
    serializer = JsonSerializer(allowed_types=[LocalError])
    payload = {
        "__is_pydantic": True,
        "qualified_name": "workflows.events.WorkflowFailedEvent",
        "value": {
            "step_name": "s",
            "exception": {
                "exception_type": f"{__name__}.LocalError",
                "exception_message": "known",
            },
        },
    }
    event = serializer.deserialize_value(payload)
    assert type(event.exception) is LocalError


# --- snapshots (Context.from_dict) -------------------------------------------------------


def snapshot(state_payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"version": 2, "state": state_payload, "is_running": False, "workers": {}, **extra}


def test_a_snapshot_holding_tagged_values_imports_nothing(trap: Trap) -> None:
    serializer = JsonSerializer()
    data = snapshot(
        {
            "store_type": "in_memory",
            "state_type": "DictState",
            "state_module": "celery_workflows.context.state_store",
            "state_data": {
                "_data": {
                    "posted": serializer.serialize(failed_event_payload(trap)),
                    "alike": serializer.serialize(look_alike(trap)),
                }
            },
        }
    )
    ctx = Context.from_dict(Keep(), data)
    state = ctx.to_dict()["state"]["state_data"]["_data"]
    assert serializer.deserialize(state["alike"]) == look_alike(trap)
    assert not trap.imported


def test_a_snapshot_naming_a_module_as_its_state_type_imports_nothing(trap: Trap) -> None:
    data = snapshot(
        {
            "store_type": "in_memory",
            "state_type": "Model",
            "state_module": trap.module,
            "state_data": {"_data": {}},
        }
    )
    Context.from_dict(Keep(), data)
    assert not trap.imported


def test_a_snapshot_waiter_naming_a_module_is_refused_without_import(trap: Trap) -> None:
    waiter = {
        "waiter_id": "w",
        "event": JsonSerializer().serialize(Stored()),
        "waiting_for_event": trap.name("Model"),
    }
    worker = {"queue": [], "in_progress": [], "collected_waiters": [waiter]}
    data = snapshot({}, workers={"read": worker})
    with pytest.raises(ContextSerdeError):
        Context.from_dict(Keep(), data)
    assert not trap.imported


# --- a run on the SQL (SQLite) store -----------------------------------------------------


async def test_a_posted_failure_event_in_sqlite_state_imports_nothing(
    trap: Trap, sqlite_runtime: LocalRuntime
) -> None:
    handler = Keep(runtime=sqlite_runtime, timeout=10).run(posted=failed_event_payload(trap))
    await handler
    stored = await handler.ctx.store.get("posted")
    assert isinstance(stored, WorkflowFailedEvent)
    assert isinstance(stored.exception, UnreconstructedException)
    assert stored.exception.original_type == trap.name("Boom")
    assert not trap.imported


async def test_a_look_alike_dict_round_trips_through_sqlite_state(
    trap: Trap, sqlite_runtime: LocalRuntime
) -> None:
    handler = Keep(runtime=sqlite_runtime, timeout=10).run(posted=look_alike(trap))
    assert await handler == look_alike(trap)
    assert await handler.ctx.store.get("posted") == look_alike(trap)
    assert not trap.imported


async def test_an_unregistered_step_exception_degrades_on_sqlite(
    sqlite_runtime: LocalRuntime,
) -> None:
    with pytest.raises(UnreconstructedException) as info:
        await Raise(runtime=sqlite_runtime, timeout=10).run()
    assert info.value.original_type == f"{__name__}.LocalError"
    assert "local failure" in str(info.value)


async def test_a_step_exception_registered_on_the_workflow_is_rebuilt_on_sqlite(
    sqlite_runtime: LocalRuntime,
) -> None:
    workflow = Raise(
        runtime=sqlite_runtime, timeout=10, serializer=JsonSerializer(allowed_types=[LocalError])
    )
    with pytest.raises(LocalError, match="local failure"):
        await workflow.run()


class Typed(BaseModel):
    count: int = 0


class TypedFlow(Workflow):
    @step
    async def go(self, ctx: Context[Typed], ev: StartEvent) -> StopEvent:
        return StopEvent()


def test_typed_state_recorded_under_an_unknown_name_validates_as_the_declared_type(
    trap: Trap,
) -> None:
    data = snapshot(
        {
            "store_type": "in_memory",
            "state_type": "Model",
            "state_module": trap.module,
            "state_data": JsonSerializer().serialize(
                {"__is_pydantic": True, "qualified_name": trap.name("Model"), "value": {"count": 3}}
            ),
        }
    )
    state = Context.from_dict(TypedFlow(), data).to_dict()["state"]
    assert '"count": 3' in state["state_data"]
    assert not trap.imported


def test_a_dotted_name_in_allowed_types_is_imported_when_the_program_builds_the_serializer(
    trap: Trap,
) -> None:
    # The program wrote the name, so the import happens here, once; a record never
    # triggers one.
    serializer = JsonSerializer(allowed_types=[trap.name("Boom")])
    assert trap.imported
    boom = serializer.registered(trap.name("Boom"))
    assert boom is sys.modules[trap.module].Boom
    error = {"exception_type": trap.name("Boom"), "exception_message": "m"}
    assert type(JsonCodec(serializer, DictState).decode_error(error)) is boom
