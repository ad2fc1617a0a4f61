"""What a plugin sees of a run: the round's context, the environment a backend is built in, and the
student and teacher as the hooks receive them. Nothing here imports the loop."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lionloop.config import RunConfig
from lionloop.plugin.plan import PlannedGenerator
from lionloop.plugin.taskpack import TaskPack
from lionloop.stores.pool import Pool
from lionloop.teacher.client import Result
from lionloop.teacher.requests import TeacherRequest


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
    generators: dict[str, PlannedGenerator] = field(default_factory=dict)  # the run's generator plan

    def options(self) -> Any:
        """This plugin's `generate.generators.<name>.options`, validated against its options model
        (a dict when the plugin declares none; {} when it is not an enabled generator)."""
        got = self.options_of(self.plugin or "")
        return {} if got is None else got

    def options_of(self, name: str) -> Any | None:
        """Generator `name`'s options when it is enabled in this run, else None: for hooks other than
        `lionloop_generate` (formatting, prompts, evaluation), which are called for every plugin and
        must stay silent when their generator is off."""
        planned = self.generators.get(name)
        return None if planned is None else planned.options

    def calls_per_candidate(self) -> float | None:
        """Paid calls one of this plugin's candidates costs under the run's options (its spec's
        `calls_for`, else `calls_per_candidate`); None when it is not an enabled generator."""
        planned = self.generators.get(self.plugin or "")
        return None if planned is None else planned.calls_per_candidate

    def rng(self, *parts: Any) -> random.Random:
        """A deterministic random stream for (run seed, round, plugin, parts)."""
        key = json.dumps([self.config.seed, self.round, self.plugin, *map(str, parts)])
        return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))



@dataclass(frozen=True)
class BackendEnv:
    """What a teacher backend factory gets beside its config section: `factory(cfg, env)`.

    `section` is the config path the backend was built from (`teacher`, `referee` or
    `generator_teacher`), for error messages; `task_pack` gives the oracle backend its expert;
    `run_dir` is the run's directory. `options` is `<section>.options` validated against the
    options model the backend registered (`registry.add_backend(name, factory, options=Model)`),
    the dict as given when it registered none, None when the env was built by hand (then read
    the config's dict yourself). `jobs` is the SQLite file where a backend that creates paid jobs
    (the batch backend) records them: None for the run's pool; `lionloop evaluate --referee` gives
    its own file, so an evaluation leaves the run's pool as it was.
    """

    section: str
    task_pack: TaskPack
    run_dir: Path
    options: Any = None
    jobs: Path | None = None


class Student(Protocol):
    """The student of the round as a function: greedy first-line answers to prompts, batched.

    `role` asks the separate model trained on rows with `Example.student == role` instead of the
    main student (which stands in while that role has no model yet).
    """

    def __call__(self, prompts: Sequence[str], max_new_tokens: int | None = None, role: str = "") -> list[str]: ...


class GeneratorTeacher(Protocol):
    """The teacher a generator gets: `ask` like `Teacher.ask`, capped at the generator's budget.

    `left` is the number of paid calls still allowed; requests past it come back as failed
    results with the reason "teacher budget exhausted". Failed requests are recorded for the
    failures table by the loop.
    """

    left: int

    def ask(
        self, requests: Sequence[TeacherRequest], progress: Callable[[int], None] | None = None,
        limit: int | None = None,
    ) -> list[Result]: ...
