"""The pluggy plugin manager: entry-point loading, an allow-list, introspection."""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from lionloop.errors import PluginError
from lionloop.plugin import hookspecs
from lionloop.plugin.plan import GeneratorSpec
from lionloop.plugin.registry import Registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lionloop"
ALLOW_ENV = "LIONLOOP_PLUGINS"  # comma-separated plugin names; unset = load all


@dataclass
class PluginInfo:
    name: str
    module: str
    origin: str
    dist: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    spec: GeneratorSpec | None = None  # its GeneratorSpec, for generator plugins

    @property
    def generator(self) -> dict[str, Any] | None:
        """The generator spec as plain data (options: the names of its typed options; the cost at
        the default options, without the function that gives it under others)."""
        if self.spec is None:
            return None
        out = {k: v for k, v in asdict(self.spec).items() if k not in ("options", "calls_for")}
        out["options"] = sorted(self.spec.options.model_fields) if self.spec.options else None
        return out

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "spec"}
        out["generator"] = self.generator
        return out


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus where each plugin came from and a registry built from them."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    def add(self, plugin: ModuleType | object, name: str, origin: str, dist: md.Distribution | None = None) -> None:
        self.register(plugin, name=name)
        self.infos[name] = PluginInfo(
            name=name,
            module=getattr(plugin, "__name__", type(plugin).__name__),
            origin=origin,
            dist=dist.metadata["Name"] if dist else None,
            version=dist.version if dist else None,
            hooks=sorted(h.name for h in self.get_hookcallers(plugin) or []),
        )
        info = self.infos[name]
        if "lionloop_generate" in info.hooks:
            info.spec = _generator_spec(plugin, info)

    def load_entry_points(self, allow: set[str] | None = None) -> None:
        """Load every plugin in the `lionloop` entry-point group (optionally allow-listed).

        A plugin that fails to import is recorded with its error and skipped: one broken
        third-party package must not take the others down.
        """
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if allow is not None and ep.name not in allow:
                continue
            if self.get_plugin(ep.name) is not None:
                continue
            dist = getattr(ep, "dist", None)
            origin = f"entry point {ENTRY_POINT_GROUP}:{ep.name} = {ep.value}"
            try:
                plugin = ep.load()
            except Exception as err:  # noqa: BLE001 - reported by name, never fatal
                log.error("plugin %s failed to load: %s", ep.name, err)
                self.infos[ep.name] = PluginInfo(
                    name=ep.name, module=ep.value, origin=origin,
                    dist=dist.metadata["Name"] if dist else None,
                    version=dist.version if dist else None, error=f"{type(err).__name__}: {err}",
                )
                continue
            self.add(plugin, ep.name, origin, dist)

    def build_registry(self) -> Registry:
        """Call every plugin's `lionloop_register`, naming the plugin when one raises."""
        registry = Registry()
        for impl in self.hook.lionloop_register.get_hookimpls():
            registry.current_plugin = impl.plugin_name
            try:
                impl.function(registry=registry)
            except PluginError:
                raise
            except Exception as err:
                raise PluginError(f"plugin {impl.plugin_name!r} failed in lionloop_register: {err}") from err
        registry.current_plugin = "?"
        return registry

    def plugin_list(self) -> list[PluginInfo]:
        return [self.infos[k] for k in sorted(self.infos)]

    def generator_specs(self) -> dict[str, GeneratorSpec]:
        """Each loaded generator plugin's spec, asked once when the plugin was added."""
        return {name: info.spec for name, info in self.infos.items() if info.spec is not None}


def _generator_spec(plugin: object, info: PluginInfo) -> GeneratorSpec | None:
    fn = getattr(plugin, "lionloop_generator_spec", None)
    try:
        spec = (fn() if fn is not None else None) or GeneratorSpec()
    except Exception as err:  # noqa: BLE001 - reported by `lionloop plugins`; the run refuses it
        info.error = f"lionloop_generator_spec raised {type(err).__name__}: {err}"
        return None
    if not isinstance(spec, GeneratorSpec):
        info.error = f"lionloop_generator_spec returned {type(spec).__name__}, not a GeneratorSpec"
        return None
    return spec


def allow_list() -> set[str] | None:
    raw = os.environ.get(ALLOW_ENV)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def get_plugin_manager(load_entry_points: bool = True, extra: list[tuple[str, object]] | None = None) -> PluginManager:
    """A fresh manager: entry-point plugins (unless switched off) plus `extra` (name, plugin) pairs."""
    pm = PluginManager()
    if load_entry_points:
        pm.load_entry_points(allow_list())
    for name, plugin in extra or []:
        pm.add(plugin, name, origin="registered in code")
    return pm
