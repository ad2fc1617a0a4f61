"""What a run checks before it writes anything or loads any model: every component the config names
is registered, and every plugin's options pass its options model. A bad one is a ConfigError
naming the field path (`lionloop run` exits 2 with that one line)."""

from __future__ import annotations

from lionloop.config import RunConfig, TeacherConfig
from lionloop.plugin.manager import PluginManager
from lionloop.plugin.plan import plan_generators
from lionloop.plugin.registry import Registry, Resolved


def teacher_sections(cfg: RunConfig) -> list[tuple[str, TeacherConfig]]:
    """The config's teacher sections, by path: teacher, and referee / generator_teacher when set."""
    out = [("teacher", cfg.teacher)]
    out += [(path, sub) for path in ("referee", "generator_teacher") if (sub := getattr(cfg, path)) is not None]
    return out


def resolve_task_pack(registry: Registry, cfg: RunConfig) -> Resolved:
    return registry.resolve("task_pack", cfg.task.pack, "task.pack", cfg.task.options, "task.options")


def resolve_backend(registry: Registry, tcfg: TeacherConfig, path: str) -> Resolved:
    return registry.resolve("backend", tcfg.backend, f"{path}.backend", tcfg.options, f"{path}.options")


def resolve_trainer(registry: Registry, cfg: RunConfig) -> Resolved:
    return registry.resolve("trainer", cfg.train.trainer, "train.trainer", cfg.train.options, "train.options")


def preflight(cfg: RunConfig, pm: PluginManager) -> None:
    """Resolve the task pack, backends and trainer through the plugins' registry and validate
    every plugin's options (generators through the generator plan): raises ConfigError naming
    the first bad field. Writes nothing and builds nothing."""
    registry = pm.build_registry()
    resolve_task_pack(registry, cfg)
    for path, tcfg in teacher_sections(cfg):
        resolve_backend(registry, tcfg, path)
    plan_generators(cfg.generate, pm.generator_specs())
    resolve_trainer(registry, cfg)
    from lionloop.loop.launcher import check_launcher

    check_launcher(cfg)  # train.launcher: accelerate: its config file, the batch over its processes
