"""Validation of a workflow's resources, as upstream's ``Workflow.validate()`` does it.

Resource configs (JSON files read into pydantic models) are loaded at validation, so a
missing file or a bad field fails ``run()`` instead of the step. Factories are resolved
only on request (``validate(validate_resources=True)``): they may need the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._signature import StepSpec
from .resource import ResourceDescriptor, ResourceManager, _ResourceConfig


@dataclass
class _Found:
    """A descriptor reached from a step parameter, through ``chain`` (names)."""

    resource: ResourceDescriptor
    step: str
    param: str
    chain: list[str] = field(default_factory=list)

    def where(self) -> str:
        place = f"step '{self.step}', parameter '{self.param}'"
        return f"{place} ({' -> '.join(self.chain)})" if len(self.chain) > 1 else place


def check_resource_configs(specs: Mapping[str, StepSpec]) -> list[str]:
    """Load every resource config the steps use (directly or through a factory's
    dependencies); one message per config that fails, saying where it is used."""
    pending: list[_Found] = []
    for name, spec in specs.items():
        for definition in spec.resources:
            definition.resource.set_type_annotation(definition.type_annotation)
            pending.append(
                _Found(definition.resource, name, definition.name, [definition.resource.name])
            )
    errors: list[str] = []
    seen: set[str] = set()
    while pending:
        found = pending.pop()
        if found.resource.name in seen:
            continue
        seen.add(found.resource.name)
        for _, dependency, type_annotation in found.resource.get_dependencies():
            dependency.set_type_annotation(type_annotation)
            chain = [*found.chain, dependency.name]
            pending.append(_Found(dependency, found.step, found.param, chain))
        if isinstance(found.resource, _ResourceConfig):
            try:
                found.resource.call()
            except Exception as exc:
                errors.append(f"In {found.where()}: {exc}")
    return errors


async def check_resources(specs: Mapping[str, StepSpec], manager: ResourceManager) -> list[str]:
    """Build every resource the steps use through ``manager`` (factories run, cycles are
    found); one message per parameter that fails."""
    errors: list[str] = []
    for name, spec in specs.items():
        for definition in spec.resources:
            definition.resource.set_type_annotation(definition.type_annotation)
            try:
                await manager.get(definition.resource)
            except Exception as exc:
                errors.append(f"In step '{name}', parameter '{definition.name}': {exc}")
    return errors
