"""What a run checks before it writes anything or loads any model: every component the config names
is registered, every plugin's options pass its options model, and the task pack loads (a dataset
pack reads and checks every file, row and column here). A bad one is a ConfigError naming the
field path (`lionloop run` exits 2 with that one line), or a SeedError naming file, row and column."""

from __future__ import annotations

from typing import Any

from lionloop.config import RunConfig, TeacherConfig
from lionloop.errors import ConfigError
from lionloop.plugin.manager import PluginManager
from lionloop.plugin.plan import plan_generators
from lionloop.plugin.registry import Registry, Resolved
from lionloop.student.checks import check_student


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


def preflight(cfg: RunConfig, pm: PluginManager) -> Any:
    """Resolve the task pack, backends and trainer through the plugins' registry, validate every
    plugin's options (generators through the generator plan), build the task pack (its data is
    read and checked) and check that the teachers, judge mode and eval scoring fit it. Raises
    ConfigError naming the first bad field. Writes nothing and loads no model; returns the pack
    (the run uses it rather than loading its data twice)."""
    from lionloop.loop.scoring import check_scoring
    from lionloop.loop.seedfile import read_seed_file

    registry = pm.build_registry()
    pack_entry = resolve_task_pack(registry, cfg)
    backends = [(path, resolve_backend(registry, tcfg, path)) for path, tcfg in teacher_sections(cfg)]
    plan_generators(cfg.generate, pm.generator_specs())
    resolve_trainer(registry, cfg)
    check_student(cfg)
    pack = pack_entry.build(cfg.task, cfg.seed)
    if pack.oracle() is None:
        for path, resolved in backends:
            if resolved.entry.name == "oracle":
                raise ConfigError(f"{path}.backend: the task pack {cfg.task.pack!r} has no oracle (a programmatic "
                                  "teacher): use an LLM teacher (backend: openai, vllm or hf)")
    if cfg.task.seed_file is not None:
        read_seed_file(cfg.task.seed_file)
    check_scoring(cfg, pack, pack.eval_set())
    return pack
