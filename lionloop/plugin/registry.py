"""Named components that plugins register: task packs, backends, trainers, request types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from lionloop.errors import ConfigError, PluginError
from lionloop.plugin.options import validate_options

KINDS = ("task_pack", "backend", "trainer", "request_type")


@dataclass
class Entry:
    """One registered component: its kind and name, its factory (a request type: the class), the plugin that
    registered it, and the pydantic model of its config `options` block (None: an unchecked dict)."""

    kind: str  # one of KINDS
    name: str
    factory: Any
    plugin: str
    options: type[BaseModel] | None = None


@dataclass(frozen=True)
class Resolved:
    """A component named in the config, with its options validated (`Registry.resolve`)."""

    entry: Entry
    options: Any  # an instance of entry.options, or the dict as given when it declares none

    def build(self, *args: Any) -> Any:
        """`factory(*args)`, plus `options=` the validated model when the component declares one
        (a factory that declares none is called exactly as before options existed)."""
        if self.entry.options is None:
            return self.entry.factory(*args)
        return self.entry.factory(*args, options=self.options)


@dataclass
class Registry:
    """Filled by `lionloop_register` hooks; looked up by name from the config."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    current_plugin: str = "?"

    def _add(self, kind: str, name: str, factory: Any, options: type[BaseModel] | None = None) -> None:
        have = self.entries[kind].get(name)
        if have is not None and have.factory is not factory:
            raise PluginError(
                f"{kind} {name!r} registered twice: by plugin {have.plugin!r} and {self.current_plugin!r}"
            )
        if options is not None and not (isinstance(options, type) and issubclass(options, BaseModel)):
            raise PluginError(f"{kind} {name!r}: options must be a pydantic model class, not {options!r}")
        self.entries[kind][name] = Entry(kind, name, factory, self.current_plugin, options)

    def add_task_pack(self, name: str, factory: Callable[..., Any], options: type[BaseModel] | None = None) -> None:
        """factory(task_config, seed) -> TaskPack; with `options` (a pydantic model of
        `task.options`): factory(task_config, seed, options=<validated model>)."""
        self._add("task_pack", name, factory, options)

    def add_backend(self, name: str, factory: Callable[..., Any], options: type[BaseModel] | None = None) -> None:
        """factory(teacher_config, env: BackendEnv) -> Backend; with `options` (a pydantic model of
        `teacher.options`), `env.options` holds the validated model."""
        self._add("backend", name, factory, options)

    def add_trainer(self, name: str, factory: Callable[..., Any], options: type[BaseModel] | None = None) -> None:
        """factory(train_config, student_config) -> Trainer; with `options` (a pydantic model of
        `train.options`): factory(train_config, student_config, options=<validated model>)."""
        self._add("trainer", name, factory, options)

    def add_request_type(self, request_type: type) -> None:
        """A TeacherRequest subclass, looked up by its `kind`."""
        self._add("request_type", request_type.kind, request_type)

    def entry(self, kind: str, name: str, field_path: str) -> Entry:
        """The entry registered under `name`, or a ConfigError naming the field and choices."""
        entry = self.entries[kind].get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries[kind])) or "none"
            raise ConfigError(f"{field_path}: unknown {kind.replace('_', ' ')} {name!r} (known: {known})")
        return entry

    def get(self, kind: str, name: str, field_path: str) -> Any:
        """The factory registered under `name`, or a ConfigError naming the field and choices."""
        return self.entry(kind, name, field_path).factory

    def resolve(self, kind: str, name: str, field_path: str, options: dict[str, Any], options_path: str) -> Resolved:
        """The component named at `field_path` with its `options` (from `options_path`) validated
        against its options model: a ConfigError names the bad field."""
        entry = self.entry(kind, name, field_path)
        return Resolved(entry, validate_options(entry.options, options, options_path))

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])
