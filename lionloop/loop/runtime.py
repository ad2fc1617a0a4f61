"""The heavy objects of one run (pool, cache, teachers, trainer, task pack), built once per process,
and the reporter that shows progress."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lionloop.config import RunConfig, TeacherConfig
from lionloop.loop.preflight import resolve_backend, resolve_task_pack, resolve_trainer
from lionloop.plugin.context import BackendEnv, RoundContext
from lionloop.plugin.manager import PluginManager, get_plugin_manager
from lionloop.plugin.plan import plan_generators
from lionloop.plugin.registry import Registry
from lionloop.plugin.taskpack import TaskPack
from lionloop.rundir import RunDir
from lionloop.stores.cache import CallCache
from lionloop.stores.pool import Pool
from lionloop.teacher.client import Accounting, Teacher

log = logging.getLogger(__name__)


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
class Runtime:
    """The heavy objects of one run, built once per process from the config and run dir."""

    cfg: RunConfig
    run_dir: Path
    run_id: str
    reporter: Reporter = field(default_factory=Reporter)
    pm: PluginManager | None = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.files = RunDir(self.run_dir)
        if self.pm is None:
            self.pm = get_plugin_manager()
        self.registry: Registry = self.pm.build_registry()
        self.pool = Pool(self.files.pool)
        self.cache = CallCache(self.files.cache_path(self.cfg))
        self.acct = Accounting()
        self._stage_t0: dict[tuple[int, str], float] = {}
        # Components as `preflight` checked them: the registry's entries, options validated.
        self.task_pack: TaskPack = resolve_task_pack(self.registry, self.cfg).build(self.cfg.task, self.cfg.seed)
        self.teacher = self._teacher(self.cfg.teacher, "teacher")
        self.referee = self._teacher(self.cfg.referee, "referee") if self.cfg.referee else self.teacher
        self.generator_teacher = (
            self._teacher(self.cfg.generator_teacher, "generator_teacher")
            if self.cfg.generator_teacher else self.teacher
        )
        self.plan = plan_generators(self.cfg.generate, self.pm.generator_specs())
        self.trainer = resolve_trainer(self.registry, self.cfg).build(self.cfg.train, self.cfg.student)

    def _teacher(self, tcfg: TeacherConfig, path: str) -> Teacher:
        resolved = resolve_backend(self.registry, tcfg, path)
        env = BackendEnv(section=path, task_pack=self.task_pack, run_dir=self.run_dir, options=resolved.options)
        backend = resolved.entry.factory(tcfg, env)
        return Teacher(
            backend, self.cache, self.run_id, parse_retries=tcfg.parse_retries,
            budget=self.budget_left, acct=self.acct,
        )

    def spent(self) -> int:
        """Paid teacher calls of this run so far (read from the call cache: survives crashes)."""
        return self.cache.total_paid(self.run_id)

    def budget_left(self) -> int | None:
        limit = self.cfg.stop.max_teacher_calls
        if limit is None:
            return None
        return max(0, limit - self.spent())

    @cached_property
    def embedder(self):  # noqa: ANN201
        from lionloop.embedding import Embedder

        return Embedder(self.cfg.dedup)

    @cached_property
    def index(self):  # noqa: ANN201
        from lionloop.stores.vectors import VectorIndex

        return VectorIndex(self.pool, self.files, self.embedder.name, self.embedder.dim, self.cfg.dedup.index)

    def context(self, round: int, plugin: str | None = None, max_candidates: int | None = None) -> RoundContext:
        return RoundContext(
            round=round, config=self.cfg, run_dir=self.run_dir, task_pack=self.task_pack,
            pool=self.pool, plugin=plugin, max_candidates=max_candidates,
            generators={g.name: g for g in self.plan},
        )

    def student_dir(self, round: int, role: str = "") -> Path:
        """round 0 is the base model (shared by every role); `role` "" is the main student."""
        if round == 0:
            return Path(self.cfg.student.base) if self.cfg.student.base else self.files.students / "base"
        return self.files.student(round, role)

    def event(self, **fields: Any) -> None:
        """Append one line to events.jsonl: a tail-able log of what the run is doing."""
        fields = {"t": round(time.time(), 3), **fields}
        with open(self.files.events, "a") as f:
            f.write(json.dumps(fields) + "\n")

    @contextmanager
    def stage(self, round: int, stage: str) -> Iterator[None]:
        """Label the stage's teacher calls, start its clock, and report its start and end.

        The stage's work ends with `finish_stage` inside the transaction that writes its rows, so
        rows, metrics (seconds and teacher figures included) and the marker commit together.
        """
        for t in self._teachers():
            t.at(round, stage)
        self.event(event="stage_start", round=round, stage=stage)
        self.reporter.stage_start(round, stage)
        t0 = time.perf_counter()
        self._stage_t0[(round, stage)] = t0
        yield
        seconds = time.perf_counter() - t0
        self.reporter.stage_end(round, stage, seconds)
        self.event(event="stage_end", round=round, stage=stage, seconds=round_to(seconds))

    def finish_stage(self, round: int, stage: str, result: dict[str, Any], metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record a stage as done: its metrics, its seconds so far, the round's teacher figures and
        its marker. Call it inside the pool transaction that writes the stage's rows."""
        t0 = self._stage_t0.get((round, stage))
        timing = {"seconds": {stage: round_to(time.perf_counter() - t0)}} if t0 is not None else {}
        with self.pool.transaction():
            merged = self.pool.merge_metrics(round, {**(metrics or {}), **timing})
            per_stage = self.teacher_stats(round)
            if per_stage:
                merged = self.pool.merge_metrics(round, {"teacher": per_stage})
            self.pool.mark_stage(round, stage, result)
        return merged

    def teacher_stats(self, round: int) -> dict[str, Any]:
        """This round's teacher figures per stage (paid calls from the cache, the rest in memory)."""
        stats = self.teacher.stats(round) if self.teacher is not None else {}
        return {stage: v for (r, stage), v in stats.items() if r == round}

    def _teachers(self) -> list[Teacher]:
        return list({id(x): x for x in (self.teacher, self.referee, self.generator_teacher)}.values())

    def close(self) -> None:
        if "index" in self.__dict__:  # built in this process: save what a large index left unsaved
            self.index.flush()
        for t in self._teachers():
            getattr(t.backend, "close", lambda: None)()  # sessions, event-loop threads
        self.pool.close()
        self.cache.close()


def round_to(x: float, nd: int = 3) -> float:
    return float(f"{x:.{nd}f}")
