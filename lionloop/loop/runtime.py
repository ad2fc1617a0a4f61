"""The heavy objects of one run (pool, cache, teachers, trainer, task pack), built once per process,
and the reporter that shows progress (`lionloop.loop.reporting`)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lionloop.config import RunConfig, TeacherConfig
from lionloop.errors import ConfigError
from lionloop.loop.preflight import resolve_backend, resolve_task_pack, resolve_trainer
from lionloop.loop.reporting import Reporter, Watched
from lionloop.plugin.context import BackendEnv, RoundContext
from lionloop.plugin.manager import PluginManager, get_plugin_manager
from lionloop.plugin.plan import plan_generators
from lionloop.plugin.registry import Registry
from lionloop.plugin.taskpack import TaskPack
from lionloop.rundir import RunDir
from lionloop.stores.cache import CallCache
from lionloop.stores.pool import Pool
from lionloop.teacher.accounting import Accounting
from lionloop.teacher.client import Teacher
from lionloop.teacher.secrets import register_env

log = logging.getLogger(__name__)


# Under a cost budget the first call is paid before any price is known: it goes alone and prices
# the rest (with 8, a real run whose budget paid for less than one call overspent it 18 times).
PRICING_CALLS = 1


def cost_calls_left(limit: float, paid: int, cost: float) -> int:
    """Calls a cost budget still allows: what is left of it at the mean price of the calls paid so
    far (PRICING_CALLS until a call has a price). Raises ConfigError when that many calls came
    with no price at all (a server that reports no token counts): the cost cannot be counted."""
    if cost > 0:
        return math.floor((limit - cost) / (cost / paid))
    if paid < PRICING_CALLS:
        return PRICING_CALLS - paid
    raise ConfigError(f"stop.max_teacher_cost: {paid} paid teacher calls came with no price (the server "
                      "reported no token counts), so their cost cannot be counted; set stop.max_teacher_calls "
                      "instead")


@dataclass
class Runtime:
    """The heavy objects of one run, built once per process from the config and run dir."""

    cfg: RunConfig
    run_dir: Path
    run_id: str
    reporter: Reporter = field(default_factory=Reporter)
    pm: PluginManager | None = None
    task_pack: TaskPack | None = None  # as preflight built it (its data read once); None: built here

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.files = RunDir(self.run_dir)
        self.current: dict[str, Any] = {}  # the stage under way: {"round": r, "stage": name}
        self.memo: dict[str, Any] = {}  # what several stages derive from the same pool (its clusters)
        # What the run is doing goes to events.jsonl too, for `lionloop status` in another process.
        self.reporter = Watched(self.reporter, self.event, lambda: dict(self.current))
        if self.pm is None:
            self.pm = get_plugin_manager()
        self.registry: Registry = self.pm.build_registry()
        self.pool = Pool(self.files.pool)
        self.cache = CallCache(self.files.cache_path(self.cfg))
        self.acct = Accounting()
        self._stage_t0: dict[tuple[int, str], float] = {}
        # Components as `preflight` checked them: the registry's entries, options validated.
        if self.task_pack is None:
            self.task_pack = resolve_task_pack(self.registry, self.cfg).build(self.cfg.task, self.cfg.seed)
        self.teacher = self._teacher(self.cfg.teacher, "teacher")
        self.referee = self._teacher(self.cfg.referee, "referee") if self.cfg.referee else self.teacher
        self.generator_teacher = (
            self._teacher(self.cfg.generator_teacher, "generator_teacher")
            if self.cfg.generator_teacher else self.teacher
        )
        self.plan = plan_generators(self.cfg.generate, self.pm.generator_specs())
        self.trainer = resolve_trainer(self.registry, self.cfg).build(self.cfg.train, self.cfg.student)

    def _teacher(self, tcfg: TeacherConfig, path: str) -> Teacher:
        return build_teacher(self.registry, tcfg, path, self.task_pack, self.run_dir, self.cache, self.run_id,
                             budget=self.budget_left, money_left=self.money_left, acct=self.acct)

    def spent(self) -> int:
        """Paid teacher calls of this run so far (read from the call cache: survives crashes)."""
        return self.cache.total_paid(self.run_id)

    def budget_now(self) -> dict[str, int | None]:
        """The loop state's view of the budget: calls paid so far and calls it still allows."""
        paid = self.spent()
        return {"teacher_calls": paid, "budget_left": self.budget_left(paid)}

    def budget_left(self, paid: int | None = None) -> int | None:
        """Paid calls the budget still allows (None: no budget): what is left of
        stop.max_teacher_calls, and of stop.max_teacher_cost in calls at this run's mean price per
        call so far, whichever is less. `paid`: the calls paid so far, where already read."""
        stop = self.cfg.stop
        if stop.max_teacher_calls is None and stop.max_teacher_cost is None:
            return None
        paid = self.spent() if paid is None else paid
        left = [stop.max_teacher_calls - paid] if stop.max_teacher_calls is not None else []
        if stop.max_teacher_cost is not None:
            left.append(cost_calls_left(stop.max_teacher_cost, paid, self.cache.total_cost(self.run_id)))
        return max(0, min(left))

    def money_left(self) -> float | None:
        """What is left of stop.max_teacher_cost (None: no cost budget)."""
        limit = self.cfg.stop.max_teacher_cost
        return None if limit is None else limit - self.cache.total_cost(self.run_id)

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
        return self.files.student_at(round, self.cfg.student.base, role)

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
        self.current = {"round": round, "stage": stage}
        self.reporter.stage_start(round, stage)
        t0 = time.perf_counter()
        self._stage_t0[(round, stage)] = t0
        yield
        seconds = time.perf_counter() - t0
        self.reporter.stage_end(round, stage, seconds)
        self.event(event="stage_end", round=round, stage=stage, seconds=round_to(seconds))
        self.current = {}

    def finish_stage(self, round: int, stage: str, result: dict[str, Any], metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record a stage as done: its metrics, its seconds so far, the round's teacher figures and
        its marker. Call it inside the pool transaction that writes the stage's rows."""
        t0 = self._stage_t0.get((round, stage))
        timing = {"seconds": {stage: round_to(time.perf_counter() - t0)}} if t0 is not None else {}
        with self.pool.transaction():
            merged = self.pool.merge_metrics(round, {**(metrics or {}), **timing})
            # This stage's figures only: a resumed process holds no counts for the stages done
            # before the crash, and writing its zeros over theirs made status lie (98/98 -> 0/0).
            figures = self.teacher_stats(round).get(stage)
            if figures:
                merged = self.pool.merge_metrics(round, {"teacher": {stage: figures}})
            self.pool.mark_stage(round, stage, result)
        return merged

    def teacher_stats(self, round: int) -> dict[str, Any]:
        """This round's teacher figures per stage (paid calls from the cache, the rest counted by
        this process: complete for a stage that ran in it)."""
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


def build_teacher(registry: Registry, tcfg: TeacherConfig, path: str, task_pack: TaskPack | None, run_dir: Path,
                  cache: CallCache, run_id: str, jobs: Path | None = None, **limits: Any) -> Teacher:
    """The teacher (or referee) config section `path` as a client on the run's cache; `limits`: the
    budget and accounting a running loop shares between its teachers; `jobs`: where a batch backend
    records its jobs (None: the run's pool)."""
    resolved = resolve_backend(registry, tcfg, path)
    env = BackendEnv(section=path, task_pack=task_pack, run_dir=run_dir, options=resolved.options, jobs=jobs)
    register_env(tcfg.api_key_env)  # masked in every error text, reply and log line from here on
    backend = resolved.entry.factory(tcfg, env)
    return Teacher(backend, cache, run_id, parse_retries=tcfg.parse_retries, max_reply_chars=tcfg.reply_char_limit(),
                   rewrites_per_call=tcfg.rewrites_per_call, **limits)


def round_to(x: float, nd: int = 3) -> float:
    return float(f"{x:.{nd}f}")
