"""Resource injection: values a step asks for by annotation instead of building itself.

A step parameter annotated ``Annotated[T, Resource(factory)]`` receives what ``factory``
returns; ``Annotated[Model, ResourceConfig("file.json")]`` receives a pydantic model read
from a JSON file. Factories can depend on other resources the same way, through their own
``Annotated`` parameters. A :class:`ResourceManager` builds and caches the values.

Resources live in the worker process that runs the step: they are built on first use,
cached per manager when ``cache=True``, and never serialized or sent over the broker.
The public API mirrors ``workflows.resource`` from llama-index-workflows 2.26.1.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import (
    Annotated,
    Any,
    Generic,
    Protocol,
    TypeVar,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    runtime_checkable,
)

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)


@runtime_checkable
class ResourceDescriptor(Protocol):
    """What the :class:`ResourceManager` needs from the marker inside ``Annotated[...]``.

    :func:`Resource` and :func:`ResourceConfig` both return one; a custom descriptor only
    has to provide these members.
    """

    @property
    def name(self) -> str:
        """Key under which the value is cached; also names it in cycle errors."""
        ...

    @property
    def cache(self) -> bool:
        """Whether the manager keeps the value for later requests."""
        ...

    async def resolve(self, manager: ResourceManager) -> Any:
        """Build the value, resolving any dependencies through ``manager``."""
        ...

    def set_type_annotation(self, type_annotation: Any) -> None:
        """Receive ``T`` from ``Annotated[T, descriptor]``, for descriptors that need it."""
        ...

    def set_localns(self, localns: dict[str, Any] | None) -> None:
        """Receive the namespace to evaluate string annotations of dependencies in."""
        ...

    def get_dependencies(self) -> list[tuple[str, ResourceDescriptor, type | None]]:
        """List ``(parameter, descriptor, T)`` for each resource this one depends on."""
        ...


def _resource_marker(annotation: Any) -> tuple[Any, ResourceDescriptor] | None:
    """Split ``Annotated[T, ..., descriptor, ...]`` into ``(T, descriptor)``, else None."""
    if get_origin(annotation) is not Annotated:
        return None
    inner, *metadata = get_args(annotation)
    for item in metadata:
        if isinstance(item, ResourceDescriptor):
            return inner, item
    return None


def _is_async_callable(factory: Callable[..., Any]) -> bool:
    # An instance with ``async def __call__`` is not a coroutine function itself. Look the
    # method up on the type: for a class used as a factory that finds the metaclass's
    # (sync) __call__, not the class's own async __call__ meant for its instances.
    if inspect.iscoroutinefunction(factory):
        return True
    return inspect.iscoroutinefunction(type(factory).__call__)


class _Resource(Generic[T]):
    """Descriptor for a value produced by a (sync or async) factory; see :func:`Resource`."""

    def __init__(self, factory: Callable[..., T | Awaitable[T]], cache: bool) -> None:
        self._factory = factory
        self._is_async = _is_async_callable(factory)
        # The qualified name is the cache key, so two factories share a cached value
        # exactly when upstream's would.
        self.name: str = getattr(factory, "__qualname__", type(factory).__name__)
        self.cache = cache
        self._localns: dict[str, Any] | None = None

    async def call(self, resource_manager: ResourceManager) -> T:
        """Resolve the factory's dependencies through ``resource_manager``, then call it."""
        kwargs: dict[str, Any] = {}
        for parameter, dependency, type_annotation in self.get_dependencies():
            dependency.set_type_annotation(type_annotation)
            dependency.set_localns(self._localns)
            kwargs[parameter] = await resource_manager.get(dependency)
        if self._is_async:
            return await cast(Callable[..., Awaitable[T]], self._factory)(**kwargs)
        return cast(Callable[..., T], self._factory)(**kwargs)

    async def resolve(self, manager: ResourceManager) -> T:
        """Build the value; part of :class:`ResourceDescriptor`."""
        return await self.call(manager)

    def set_type_annotation(self, type_annotation: Any) -> None:
        """Ignore the annotation: the factory decides what it returns."""

    def set_localns(self, localns: dict[str, Any] | None) -> None:
        """Remember ``localns`` for evaluating the factory's string annotations."""
        self._localns = localns

    def get_dependencies(self) -> list[tuple[str, ResourceDescriptor, type | None]]:
        """List the factory parameters annotated as resources, in signature order."""
        hints = _factory_hints(self._factory, self._localns)
        dependencies: list[tuple[str, ResourceDescriptor, type | None]] = []
        for parameter in inspect.signature(self._factory).parameters.values():
            marker = _resource_marker(hints.get(parameter.name, parameter.annotation))
            if marker is not None:
                type_annotation, descriptor = marker
                dependencies.append((parameter.name, descriptor, type_annotation))
        return dependencies


def _factory_hints(factory: Callable[..., Any], localns: dict[str, Any] | None) -> dict[str, Any]:
    """Type hints (with ``Annotated`` extras) describing the parameters of ``factory``."""
    hints: dict[str, Any] = {}
    for target in _annotated_targets(factory):
        hints.update(_hints_of(target, localns))
    return hints


def _annotated_targets(factory: Any) -> list[Any]:
    # get_type_hints() rejects partials and callable instances outright, and on a class it
    # reads class-level annotations (right for dataclasses and pydantic models) but not
    # those of a hand-written __init__; so point it at whatever carries the annotations.
    if isinstance(factory, functools.partial):
        return _annotated_targets(factory.func)
    if inspect.isclass(factory):
        init = factory.__init__
        return [factory, init] if inspect.isfunction(init) else [factory]
    if inspect.isfunction(factory) or inspect.ismethod(factory):
        return [factory]
    return [type(factory).__call__]


def _hints_of(target: Any, localns: dict[str, Any] | None) -> dict[str, Any]:
    # The step's local namespace only fills gaps: a name the factory's own module defines
    # must not be shadowed by an unrelated local of the same name where the step lives.
    if localns:
        module_globals = _module_namespace(target)
        localns = {k: v for k, v in localns.items() if k not in module_globals}
    try:
        return get_type_hints(target, localns=localns, include_extras=True)
    except (NameError, TypeError):
        # Unresolvable annotations simply declare no resource dependencies.
        return {}


def _module_namespace(target: Any) -> dict[str, Any]:
    namespace: dict[str, Any] | None = getattr(target, "__globals__", None)
    if namespace is not None:
        return namespace
    module = sys.modules.get(getattr(target, "__module__", None) or "")
    return vars(module) if module is not None else {}


@functools.lru_cache(maxsize=128)
def _read_config_section(config_file: str, path_selector: str | None) -> Any:
    # Cached per process: a config file is read once, however many steps or managers use it.
    with open(config_file) as handle:
        section: Any = json.load(handle)
    if path_selector is None:
        return section
    walked: list[str] = []
    for key in path_selector.split("."):
        walked.append(key)
        section = section.get(key) if isinstance(section, dict) else None
        if not isinstance(section, dict):
            raise ValueError(
                f"Expected dictionary for configuration from {config_file} "
                f"at path {'.'.join(walked)}, got: {type(section)}"
            )
    return section


class _ResourceConfig(Generic[B]):
    """Descriptor for a pydantic model loaded from a JSON file; see :func:`ResourceConfig`."""

    def __init__(
        self,
        config_file: str,
        path_selector: str | None,
        cls_factory: type[B] | None = None,
        label: str | None = None,
        description: str | None = None,
    ) -> None:
        if Path(config_file).suffix != ".json":
            raise ValueError("Only JSON files can be used to load Pydantic-based resources.")
        self._original_config_file = config_file
        # Resolved on first use, so a workflow can be defined before its config exists.
        self._resolved_config_file: str | None = None
        self.path_selector = path_selector
        self.cls_factory = cls_factory
        self.label = label
        self.description = description

    @property
    def config_file(self) -> str:
        """Absolute path of the JSON file; raises ``FileNotFoundError`` if it is missing."""
        if self._resolved_config_file is None:
            path = Path(self._original_config_file)
            if not path.is_file():
                raise FileNotFoundError(f"No such file: {self._original_config_file}")
            self._resolved_config_file = str(path.resolve())
        return self._resolved_config_file

    @property
    def name(self) -> str:
        """Cache key: the file as written, plus ``.path_selector`` when there is one."""
        if self.path_selector is None:
            return self._original_config_file
        return f"{self._original_config_file}.{self.path_selector}"

    @property
    def cache(self) -> bool:
        """Always ``True``: a config is read once per manager."""
        return True

    def call(self) -> B:
        """Load the selected JSON section and validate it into ``cls_factory``."""
        data = copy.deepcopy(_read_config_section(self.config_file, self.path_selector))
        if self.cls_factory is None:
            raise ValueError("Class factory should be set to a BaseModel subclass before calling")
        if not (isinstance(self.cls_factory, type) and issubclass(self.cls_factory, BaseModel)):
            raise TypeError(
                f"ResourceConfig({self._original_config_file!r}) must annotate a pydantic "
                f"BaseModel subclass, got {self.cls_factory!r}; "
                "use Annotated[YourModel, ResourceConfig(...)]"
            )
        # Validation errors propagate unchanged: they say which field is wrong.
        return self.cls_factory.model_validate(data)

    async def resolve(self, manager: ResourceManager) -> B:
        """Load the model; part of :class:`ResourceDescriptor`."""
        return self.call()

    def set_type_annotation(self, type_annotation: Any) -> None:
        """Use the annotated model class, unless one was already set."""
        if self.cls_factory is None:
            self.cls_factory = cast(type[B], type_annotation)

    def set_localns(self, localns: dict[str, Any] | None) -> None:
        """Ignore ``localns``: a config has no annotated dependencies."""

    def get_dependencies(self) -> list[tuple[str, ResourceDescriptor, type | None]]:
        """Return ``[]``: a config depends on nothing."""
        return []


def ResourceConfig(
    config_file: str,
    path_selector: str | None = None,
    label: str | None = None,
    description: str | None = None,
) -> _ResourceConfig[Any]:
    """Inject a pydantic model validated from a JSON file.

    Use it as ``Annotated[MyModel, ResourceConfig("settings.json")]``; the model class
    comes from the annotation. The file must end in ``.json`` and need not exist until
    the resource is first resolved.

    Args:
        config_file: Path of the JSON file, relative to the worker's working directory.
        path_selector: Dotted keys leading to the section to load, e.g. ``"llm.openai"``.
        label: Short display name.
        description: Longer explanation of what the config holds.
    """
    return _ResourceConfig(
        config_file=config_file,
        path_selector=path_selector,
        label=label,
        description=description,
    )


def Resource(factory: Callable[..., T | Awaitable[T]], cache: bool = True) -> _Resource[T]:
    """Inject the value that ``factory`` returns.

    Use it as ``Annotated[Client, Resource(make_client)]``. ``factory`` may be sync or
    async and may itself take ``Annotated[..., Resource(...)]`` parameters, which are
    resolved first.

    Args:
        factory: Callable building the value; called with resolved dependencies only.
        cache: Build once per :class:`ResourceManager` and share (``True``), or build
            for each step invocation that asks (``False``).
    """
    return _Resource(factory, cache)


class ResourceDefinition(BaseModel):
    """One resource parameter of a step.

    Attributes:
        name: The parameter's name.
        resource: The descriptor found in its annotation.
        type_annotation: ``T`` from ``Annotated[T, descriptor]``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    resource: ResourceDescriptor
    type_annotation: Any = None


class ResourceManager:
    """Builds resources on demand, caches them, and detects dependency cycles.

    One manager per worker process (or per workflow instance). The resolution chain and
    the per-scope values live in context variables rather than on the manager, so steps
    resolving resources concurrently neither see each other's chains as cycles nor share
    uncached values.
    """

    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}
        self._chain: ContextVar[tuple[str, ...]] = ContextVar("resource_chain", default=())
        self._scope: ContextVar[dict[str, Any] | None] = ContextVar("resource_scope", default=None)

    @contextmanager
    def resolution_scope(self) -> Iterator[None]:
        """Share uncached values among all resolutions inside the ``with`` block.

        Wrap the resolution of all of one step's parameters in a scope so that an uncached
        resource requested twice (directly, or as a dependency) is built once for that
        invocation. Nested scopes join the outer one. :meth:`get` opens a scope itself
        when none is active.
        """
        if self._scope.get() is not None:
            yield
            return
        token = self._scope.set({})
        try:
            yield
        finally:
            self._scope.reset(token)

    async def set(self, name: str, val: Any) -> None:
        """Store ``val`` as the cached value for ``name``, replacing any previous one."""
        self.resources[name] = val

    async def get(self, resource: ResourceDescriptor) -> Any:
        """Return the value for ``resource``, building it (and its dependencies) if needed.

        Raises:
            ValueError: If resolving ``resource`` leads back to itself.
        """
        with self.resolution_scope():
            return await self._get(resource)

    async def _get(self, resource: ResourceDescriptor) -> Any:
        name = resource.name
        chain = self._chain.get()
        if name in chain:
            cycle = " -> ".join((*chain, name))
            raise ValueError(f"Circular resource dependency detected: {cycle}")
        if resource.cache and name in self.resources:
            return self.resources[name]
        scope = cast(dict[str, Any], self._scope.get())
        if name in scope:
            return scope[name]
        token = self._chain.set((*chain, name))
        try:
            value = await resource.resolve(self)
        finally:
            self._chain.reset(token)
        if resource.cache:
            # If a concurrent task cached this name first, adopt its value so every
            # caller of a cached resource sees one instance.
            value = self.resources.setdefault(name, value)
        scope[name] = value
        return value

    def get_all(self) -> dict[str, Any]:
        """Return the cached values by name (the live mapping, not a copy)."""
        return self.resources


def resource_parameters(
    func: Callable[..., Any], localns: dict[str, Any] | None = None
) -> dict[str, ResourceDescriptor]:
    """Find the parameters of ``func`` annotated ``Annotated[T, <descriptor>]``.

    Each descriptor found is prepared the way the runtime needs before resolving it:
    it receives ``localns`` (for its factory's string annotations) and ``T`` (which a
    :func:`ResourceConfig` uses as its model class; a set class is never replaced).

    Args:
        func: The step function (or any callable) to inspect.
        localns: Namespace for evaluating string annotations, typically the locals of
            the scope where the step is defined.

    Returns:
        Parameter name to descriptor, in signature order; other parameters are skipped.

    Raises:
        NameError: If an annotation of ``func`` names something that cannot be found.
    """
    hints = get_type_hints(func, localns=localns, include_extras=True)
    found: dict[str, ResourceDescriptor] = {}
    for parameter in inspect.signature(func).parameters.values():
        marker = _resource_marker(hints.get(parameter.name, parameter.annotation))
        if marker is None:
            continue
        type_annotation, descriptor = marker
        descriptor.set_localns(localns)
        descriptor.set_type_annotation(type_annotation)
        found[parameter.name] = descriptor
    return found
