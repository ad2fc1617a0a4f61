"""What nodes and plugins work with: the run's runtime objects and a per-round context."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lionloop.config import RunConfig, TeacherConfig
from lionloop.plugin_manager import PluginManager, get_plugin_manager
from lionloop.registry import Registry
from lionloop.stores.cache import CallCache
from lionloop.stores.pool import Pool
from lionloop.taskpack import TaskPack
from lionloop.teacher import Accounting, Teacher

log = logging.getLogger(__name__)

POOL_FILE = "pool.sqlite"
CHECKPOINT_FILE = "checkpoints.sqlite"
CONFIG_FILE = "config.yaml"
EVENTS_FILE = "events.jsonl"


class Reporter:
    """Progress and round summaries; the CLI swaps in a Rich one. This one only logs."""

    def stage_start(self, round: int, stage: str) -> None:
        log.info("round %d: %s", round, stage)

    def stage_end(self, round: int, stage: str, seconds: float) -> None:
        log.info("round %d: %s done in %.1fs", round, stage, seconds)

    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        """Start a progress bar; the returned function advances it."""
        return lambda n: None

    def task_done(self) -> None:
        """Close the last progress bar."""

    def round_end(self, summary: dict[str, Any]) -> None:
        log.info("round %s finished: %s", summary.get("round"), summary.get("eval", {}))


@dataclass
class RoundContext:
    """What a plugin sees of the run: config, round, task pack, read access to the pool."""

    round: int
    config: RunConfig
    run_dir: Path
    task_pack: TaskPack
    pool: Pool
    plugin: str | None = None
    max_candidates: int | None = None

    def options(self) -> dict[str, Any]:
        """This generator's `generate.generators.<name>.options`."""
        gen = self.config.generate.generators.get(self.plugin or "")
        return dict(gen.options) if gen else {}

    def rng(self, *parts: Any) -> random.Random:
        """A deterministic random stream for (run seed, round, plugin, parts)."""
        key = json.dumps([self.config.seed, self.round, self.plugin, *map(str, parts)])
        return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


@dataclass
class Runtime:
    """The heavy objects of one run, built once per process from the config and run dir."""

    cfg: RunConfig
    run_dir: Path
    run_id: str
    reporter: Reporter = field(default_factory=Reporter)
    pm: PluginManager | None = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        if self.pm is None:
            self.pm = get_plugin_manager()
        self.registry: Registry = self.pm.build_registry()
        self.pool = Pool(self.run_dir / POOL_FILE)
        self.cache = CallCache(self.cfg.teacher.cache_path or self.run_dir / POOL_FILE)
        self.acct = Accounting()
        pack_factory = self.registry.get("task_pack", self.cfg.task.pack, "task.pack")
        self.task_pack: TaskPack = pack_factory(self.cfg.task, self.cfg.seed)
        self.teacher = self._teacher(self.cfg.teacher, "teacher")
        self.referee = self._teacher(self.cfg.referee, "referee") if self.cfg.referee else self.teacher
        self.generator_teacher = (
            self._teacher(self.cfg.generator_teacher, "generator_teacher")
            if self.cfg.generator_teacher else self.teacher
        )
        trainer_factory = self.registry.get("trainer", self.cfg.train.trainer, "train.trainer")
        self.trainer = trainer_factory(self.cfg.train, self.cfg.student)

    def _teacher(self, tcfg: TeacherConfig, path: str) -> Teacher:
        factory = self.registry.get("backend", tcfg.backend, f"{path}.backend")
        backend = factory(tcfg, self)
        return Teacher(
            backend, self.cache, self.run_id, parse_retries=tcfg.parse_retries,
            budget=self.budget_left, acct=self.acct,
        )

    def budget_left(self) -> int | None:
        limit = self.cfg.stop.max_teacher_calls
        if limit is None:
            return None
        return max(0, limit - self.cache.total_paid(self.run_id))

    @cached_property
    def embedder(self):  # noqa: ANN201
        from lionloop.dedup import Embedder

        return Embedder(self.cfg.dedup)

    @cached_property
    def index(self):  # noqa: ANN201
        from lionloop.stores.vectors import VectorIndex

        return VectorIndex(self.pool, self.run_dir, self.embedder.name, self.embedder.dim)

    def context(self, round: int, plugin: str | None = None, max_candidates: int | None = None) -> RoundContext:
        return RoundContext(
            round=round, config=self.cfg, run_dir=self.run_dir, task_pack=self.task_pack,
            pool=self.pool, plugin=plugin, max_candidates=max_candidates,
        )

    def student_dir(self, round: int, role: str = "") -> Path:
        """round 0 is the base model (shared by every role); `role` "" is the main student."""
        if round == 0:
            return Path(self.cfg.student.base) if self.cfg.student.base else self.run_dir / "student" / "base"
        return self.run_dir / "student" / (f"{role}/round-{round}" if role else f"round-{round}")

    def event(self, **fields: Any) -> None:
        """Append one line to events.jsonl: a tail-able log of what the run is doing."""
        fields = {"t": round(time.time(), 3), **fields}
        with open(self.run_dir / EVENTS_FILE, "a") as f:
            f.write(json.dumps(fields) + "\n")

    @contextmanager
    def stage(self, round: int, stage: str) -> Iterator[None]:
        """Time a stage, label its teacher calls, and record seconds and teacher figures."""
        for t in {id(x): x for x in (self.teacher, self.referee, self.generator_teacher)}.values():
            t.at(round, stage)
        self.event(event="stage_start", round=round, stage=stage)
        self.reporter.stage_start(round, stage)
        t0 = time.perf_counter()
        yield
        seconds = time.perf_counter() - t0
        self.reporter.stage_end(round, stage, seconds)
        self.pool.merge_metrics(round, {"seconds": {stage: round_to(seconds)}})
        self.flush_teacher_stats(round)
        self.event(event="stage_end", round=round, stage=stage, seconds=round_to(seconds))

    def flush_teacher_stats(self, round: int) -> dict[str, Any]:
        stats = self.teacher.stats() if self.teacher is not None else {}
        per_stage = {stage: v for (r, stage), v in stats.items() if r == round}
        if per_stage:
            self.pool.merge_metrics(round, {"teacher": per_stage})
        return per_stage

    def close(self) -> None:
        for t in {id(x): x for x in (self.teacher, self.referee, self.generator_teacher)}.values():
            getattr(t.backend, "close", lambda: None)()  # sessions, event-loop threads
        self.pool.close()
        self.cache.close()


def round_to(x: float, nd: int = 3) -> float:
    return float(f"{x:.{nd}f}")
