"""Named components that plugins register: task packs, backends, trainers, request types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lionloop.errors import ConfigError, PluginError

KINDS = ("task_pack", "backend", "trainer", "request_type")


@dataclass
class Entry:
    name: str
    factory: Any
    plugin: str


@dataclass
class Registry:
    """Filled by `lionloop_register` hooks; looked up by name from the config."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    current_plugin: str = "?"

    def _add(self, kind: str, name: str, factory: Any) -> None:
        have = self.entries[kind].get(name)
        if have is not None and have.factory is not factory:
            raise PluginError(
                f"{kind} {name!r} registered twice: by plugin {have.plugin!r} and {self.current_plugin!r}"
            )
        self.entries[kind][name] = Entry(name, factory, self.current_plugin)

    def add_task_pack(self, name: str, factory: Callable[..., Any]) -> None:
        """factory(task_config, seed) -> TaskPack"""
        self._add("task_pack", name, factory)

    def add_backend(self, name: str, factory: Callable[..., Any]) -> None:
        """factory(teacher_config, runtime) -> Backend"""
        self._add("backend", name, factory)

    def add_trainer(self, name: str, factory: Callable[..., Any]) -> None:
        """factory(train_config, student_config) -> Trainer"""
        self._add("trainer", name, factory)

    def add_request_type(self, request_type: type) -> None:
        """A TeacherRequest subclass, looked up by its `kind`."""
        self._add("request_type", request_type.kind, request_type)

    def get(self, kind: str, name: str, field_path: str) -> Any:
        """The factory registered under `name`, or a ConfigError naming the field and choices."""
        entry = self.entries[kind].get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries[kind])) or "none"
            raise ConfigError(f"{field_path}: unknown {kind.replace('_', ' ')} {name!r} (known: {known})")
        return entry.factory

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])
