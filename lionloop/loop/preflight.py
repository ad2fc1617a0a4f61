"""What a run checks before it writes anything or loads any model, in a few seconds: every path the
config names exists and is the right kind, the student's shape fits this machine, the device
exists, API keys are in the environment, the seed file reads, every component the config names is
registered, every plugin's options pass its options model, the task pack loads (a dataset pack
reads and checks every file, row and column here), and a teacher server that lists its models
serves the configured one with room for its replies (no call is paid). A bad one is a ConfigError
naming the field path (`lionloop run` exits 2 with that one line), a bad seed or data row a
SeedError naming file and line.

Before this, each of these failed after bootstrap had loaded models and paid the teacher, with a
traceback, and left a run directory that refused the corrected config.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lionloop.config import RunConfig, StudentConfig, TeacherConfig
from lionloop.errors import ConfigError
from lionloop.plugin.manager import PluginManager
from lionloop.plugin.plan import plan_generators
from lionloop.plugin.registry import Registry, Resolved
from lionloop.rundir import RunDir
from lionloop.stores.integrity import check_store
from lionloop.student.checks import check_student, check_white_box_teacher

log = logging.getLogger(__name__)

# The tiny student's vocabulary: 256 byte tokens and 3 special ones (lionloop.student.model).
TINY_VOCAB = 259
# Bytes per parameter to train in fp32 with Adam: weights, gradients and two moments.
TRAIN_BYTES_PER_PARAM = 16


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


def preflight(cfg: RunConfig, pm: PluginManager, new_run: bool = True) -> Any:
    """Check everything that can be checked before the first teacher call: paths, the student's
    shape and device, API keys, the seed file, then resolve the task pack, backends and trainer
    through the plugins' registry, validate every plugin's options (generators through the
    generator plan), build the task pack (its data is read and checked) and check that the
    teachers, judge mode and eval scoring fit it. Raises ConfigError naming the first bad field
    (SeedError for a bad seed-file row). `new_run`: the run directory is about to be created
    (`lionloop run`), so it must be creatable. Writes nothing and loads no model; returns the pack
    (the run uses it rather than loading its data twice)."""
    from lionloop.loop.scoring import check_scoring
    from lionloop.loop.seedfile import read_seed_file

    if new_run:
        check_run_dir(cfg.resolved_run_dir())
    check_paths(cfg)
    check_student_fits(cfg.student)
    check_thinking(cfg.student)
    for path, tcfg in teacher_sections(cfg):
        check_teacher(tcfg, path)
    if cfg.task.seed_file is not None:
        read_seed_file(cfg.task.seed_file)
    registry = pm.build_registry()
    pack_entry = resolve_task_pack(registry, cfg)
    backends = [(path, resolve_backend(registry, tcfg, path)) for path, tcfg in teacher_sections(cfg)]
    plan_generators(cfg.generate, pm.generator_specs())
    trainer = resolve_trainer(registry, cfg)
    from lionloop.loop.launcher import check_launcher

    check_launcher(cfg)  # train.launcher: accelerate: its config file, the batch over its processes
    check_student(cfg)
    factory = trainer.entry.factory
    check_white_box_teacher(cfg, trainer.entry.name, bool(getattr(factory, "white_box", False)),
                            getattr(factory, "check_teacher", None))
    pack = pack_entry.build(cfg.task, cfg.seed)
    if pack.oracle() is None:
        for path, resolved in backends:
            if resolved.entry.name == "oracle":
                raise ConfigError(f"{path}.backend: the task pack {cfg.task.pack!r} has no oracle (a programmatic "
                                  "teacher): use an LLM teacher (backend: openai, vllm or hf)")
    scoring = check_scoring(cfg, pack, pack.eval_set())
    check_weights(cfg, pack)
    check_priced(cfg, [(path, resolved.entry.name) for path, resolved in backends])
    check_servers(cfg, backends, judges=cfg.judge.mode != "verifier" or scoring.referee)
    return pack


def check_servers(cfg: RunConfig, backends: list[tuple[str, Resolved]], judges: bool) -> None:
    """Each teacher section's servers, where its backend can ask them (`check_server`: the openai
    backend reads `/models`): a model they do not serve or a reply limit their context cannot hold
    is a ConfigError here rather than a refused call per request; a context too short for judge
    prompts on long answers is a warning. `judges`: the run sends judge prompts (to the referee
    section, else the teacher)."""
    sections = dict(teacher_sections(cfg))
    referee = "referee" if "referee" in sections else "teacher"
    # A judge prompt holds the teacher's answer and the student's, each up to its limit.
    room = cfg.teacher.max_tokens + cfg.student.generate_max_new_tokens() if judges else 0
    for path, resolved in backends:
        check = getattr(resolved.entry.factory, "check_server", None)
        if check is not None:
            for warning in check(sections[path], path, room if path == referee else 0):
                log.warning("%s", warning)


def check_priced(cfg: RunConfig, backends: list[tuple[str, str]]) -> None:
    """A cost budget (stop.max_teacher_cost) needs a price on every teacher section, and backends
    that report token counts (the oracle only with a tokenizer to count them)."""
    if cfg.stop.max_teacher_cost is None:
        return
    sections = dict(teacher_sections(cfg))
    for path, backend in backends:
        tcfg = sections[path]
        if backend == "oracle" and not tcfg.options.get("tokenizer"):
            raise ConfigError(f"stop.max_teacher_cost: {path}.backend oracle reports no token counts, so its calls "
                              f"have no price; set stop.max_teacher_calls instead, or {path}.options.tokenizer "
                              "(a model folder whose tokenizer counts them)")
        if not (tcfg.cost_per_1k_input or tcfg.cost_per_1k_output):
            raise ConfigError(f"stop.max_teacher_cost: {path} has no price; set {path}.cost_per_1k_input and "
                              f"{path}.cost_per_1k_output (per 1k tokens)")


def check_weights(cfg: RunConfig, pack: Any) -> None:
    """`generate.allocation.weights` must name groups the run will have: the pack's tasks, or
    clusters c0 .. c<clusters - 1> (a misspelt task would silently get nothing)."""
    acfg = cfg.generate.allocation
    if acfg.mode != "fixed":
        return
    tasks = list(pack.skills())
    clusters = [f"c{k}" for k in range(acfg.clusters)]
    by_task = acfg.group_by == "task" or (acfg.group_by == "auto" and tasks)
    known = tasks if by_task else clusters
    for g in acfg.weights:
        if g not in known:
            kind = f"task of the pack {cfg.task.pack!r}" if by_task else "cluster (group_by: cluster)"
            raise ConfigError(f"generate.allocation.weights.{g}: no such {kind}; one of {', '.join(known) or 'none'}")


def preflight_resume(run_dir: Path, pm: PluginManager) -> tuple[RunConfig, str, Any]:
    """What `lionloop resume` checks before it writes anything: the run directory reads, its
    SQLite files pass SQLite's integrity check, and its config passes `preflight` with the plugins
    and files there now. Returns the run's config, id and task pack."""
    files = RunDir(run_dir)
    cfg, run_id = files.read()
    pack = preflight(cfg, pm, new_run=False)
    cache = files.cache_path(cfg)
    check_store(files.pool, ("pool", "cache") if cache == files.pool else ("pool",), "pool")
    if cache != files.pool and cache.exists():
        check_store(cache, ("cache",), "call cache")
    if files.checkpoints.exists():
        check_store(files.checkpoints, (), "graph checkpoints")
    return cfg, run_id, pack


def check_run_dir(run_dir: Path) -> None:
    """The run directory is a directory, or can be made as one."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir: {run_dir} is a file, not a directory")
    ancestor = run_dir
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"run_dir: {run_dir} cannot be created: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"run_dir: {run_dir} cannot be written: no write permission on {ancestor}")


def check_paths(cfg: RunConfig) -> None:
    """Every file and folder the config names exists and is the right kind."""
    if cfg.student.base is not None:
        check_model_dir(cfg.student.base, "student.base")
    if cfg.dedup.model is not None:
        check_model_dir(cfg.dedup.model, "dedup.model")
    if cfg.train.teacher_model is not None:
        check_model_dir(cfg.train.teacher_model.path, "train.teacher_model.path")
    seed_file = cfg.task.seed_file
    if seed_file is not None:
        if not Path(seed_file).exists():
            raise ConfigError(f"task.seed_file: {seed_file} does not exist")
        if not Path(seed_file).is_file():
            raise ConfigError(f"task.seed_file: {seed_file} is not a file")
    cache = cfg.teacher.cache_path
    if cache is not None and Path(cache).exists() and not Path(cache).is_file():
        raise ConfigError(f"teacher.cache_path: {cache} is not a file")
    if cache is not None and not Path(cache).exists():
        check_run_dir_like(Path(cache).parent, "teacher.cache_path")


def check_run_dir_like(folder: Path, field: str) -> None:
    """A folder that is or can be made (the parent of a file lionloop creates)."""
    try:
        check_run_dir(folder)
    except ConfigError as err:
        raise ConfigError(f"{field}: {str(err).removeprefix('run_dir: ')}") from None


def check_model_dir(value: str | Path, field: str) -> None:
    """A Hugging Face model directory, or a model id already in the local Hugging Face cache
    (nothing is downloaded at run time)."""
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{field}: {value} is a file, not a model directory")
        if not any((path / f).is_file() for f in ("config.json", "modules.json")):
            raise ConfigError(f"{field}: {value} holds no config.json (not a Hugging Face model directory)")
        return
    if _in_hf_cache(str(value)):
        return
    raise ConfigError(f"{field}: {value} does not exist (and is no model in the local Hugging Face cache)")


def _in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id=repo_id, filename="config.json")
    except Exception:  # noqa: BLE001 - not a valid repo id, or no hub library: not cached
        return False
    return isinstance(hit, str)


def tiny_student_params(s: StudentConfig) -> int:
    """Parameters of the tiny Llama student built from `s` (tied embeddings, MLP 4x wide)."""
    h = s.hidden_size
    per_layer = 4 * h * h + 3 * h * 4 * h + 2 * h  # attention, gated MLP, two norms
    return TINY_VOCAB * h + s.num_layers * per_layer + h


def available_memory() -> int | None:
    """Bytes of memory available to a new process (Linux MemAvailable), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_student_fits(s: StudentConfig) -> None:
    """The tiny student fits in memory to train; the device exists."""
    if s.base is None:
        params = tiny_student_params(s)
        need = params * TRAIN_BYTES_PER_PARAM
        have = available_memory()
        if have is not None and need > have:
            raise ConfigError(
                f"student.hidden_size: a {s.hidden_size}-wide, {s.num_layers}-layer student has {params:,} "
                f"parameters and needs about {need / 2**30:,.1f} GiB to train; {have / 2**30:,.1f} GiB are available"
            )
    if s.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"student.device: cuda, but torch {torch.__version__} sees no CUDA GPU here (use auto or cpu)"
            )


def check_thinking(s: StudentConfig) -> None:
    """student.thinking: learn lengthens rows and answers by the thinking; the default lengths are
    sized for answers alone and would cut it off (a warning: a short-thinking teacher may fit)."""
    if s.thinking != "learn":
        return
    defaults = {"max_new_tokens": s.generate_max_new_tokens(), "max_length": s.train_max_length()}
    unset = [f"student.{name} ({tokens} tokens)" for name, tokens in defaults.items() if getattr(s, name) is None]
    if unset:
        log.warning("student.thinking: learn, with %s left at the default sized for answers alone: the thinking "
                    "will be cut off (a training row loses its answer; an answer cut off while thinking is empty, "
                    "so wrong). Set it to hold thinking and answer.", " and ".join(unset))


def check_teacher(tcfg: TeacherConfig, path: str) -> None:
    """An API key named in the config is set in the environment; a prompts folder exists."""
    if tcfg.api_key_env and not os.environ.get(tcfg.api_key_env):
        raise ConfigError(f"{path}.api_key_env: environment variable {tcfg.api_key_env} is not set")
    if tcfg.prompts_dir is not None and not Path(tcfg.prompts_dir).is_dir():
        what = "is not a directory" if Path(tcfg.prompts_dir).exists() else "does not exist"
        raise ConfigError(f"{path}.prompts_dir: {tcfg.prompts_dir} {what}")
