"""The imitate stage: train the main student, and each student role, on its rows of the train pool."""

from __future__ import annotations

import inspect
import math
import re
import time
from collections import defaultdict
from typing import Any

from lionloop.config import TrainConfig
from lionloop.errors import PluginError
from lionloop.loop.allocation import training_mix
from lionloop.loop.preflight import resolve_trainer
from lionloop.loop.runtime import Runtime
from lionloop.records import Example
from lionloop.student.checkpoints import drop

# A student role names a directory under RUN_DIR/student: a plain word, and not the base model's.
ROLE = re.compile(r"(?!base$)[a-z][a-z0-9_]*")


def imitate_stage(rt: Runtime, r: int) -> dict[str, Any]:
    by_role: dict[str, list[Example]] = defaultdict(list)
    for row in rt.pool.examples():
        by_role[row.student].append(row)
    for role in by_role:
        if role and not ROLE.fullmatch(role):
            raise PluginError(f"training rows name student role {role!r}: a role is lower-case letters, "
                              "digits and '_' (not 'base'); '' is the main student")
    t0 = time.perf_counter()
    main, mix = training_mix(rt, r, by_role.pop("", []))
    figures = _train(rt, r, "", main)
    if mix is not None:  # rows: the distinct rows trained on; the repeats are samples, not data
        figures = {**figures, "rows": sum(g["rows"] for g in mix.values()), "mixed_rows": len(main), "mix": mix}
    roles = {role: _train(rt, r, role, rows) for role, rows in sorted(by_role.items())}
    train_seconds = time.perf_counter() - t0  # load, tokenise, train, save: all the trainer's work
    metrics: dict[str, Any] = {"train": figures, "work_seconds": {"train": round(train_seconds, 3)}}
    if roles:
        metrics["train_roles"] = roles
    with rt.pool.transaction():
        rt.finish_stage(r, "imitate", figures, metrics)
    # Recorded as done: the checkpoints inside the stage (and any an earlier crash left) go.
    drop(rt.files.students / "checkpoints")
    return figures


def round_steps(train: TrainConfig, rows: int) -> int:
    """The imitate stage's optimizer steps: train.steps_per_round, or with train.epochs_per_round
    that many passes over the stage's rows (at least train.min_steps_per_round)."""
    if train.epochs_per_round is None:
        return train.steps_per_round
    return max(1, train.min_steps_per_round, math.ceil(train.epochs_per_round * rows / train.batch_size))


def _train(rt: Runtime, r: int, role: str, rows: list[Example]) -> dict[str, Any]:
    """Train one student (the main one, or a role's) on its rows, from its last round or the base."""
    prev = rt.student_dir(r - 1, role) if rt.cfg.train.policy != "retrain" and r > 1 else None
    start = prev if prev is not None and prev.exists() else rt.student_dir(0)
    total = round_steps(rt.cfg.train, len(rows))
    cfg, trainer = rt.cfg, rt.trainer
    if total != cfg.train.steps_per_round:  # steps that scale with the rows: this stage's own trainer
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps_per_round": total})})
        trainer = resolve_trainer(rt.registry, cfg).build(cfg.train, cfg.student)
    label = f" ({role})" if role else ""
    bar = rt.reporter.task(f"training{label} on {len(rows)} rows", total)
    seen = [0]

    def progress(step: int, _total: int, loss: float | None = None) -> None:
        # A trainer may pass the latest logged loss: the bar shows it.
        bar(step - seen[0], None if loss is None else f"loss {loss:.4g}")
        seen[0] = step

    if rt.cfg.train.launcher == "accelerate":  # the same trainer call, in the processes of `accelerate launch`
        from lionloop.loop.launcher import launch_training

        figures = launch_training(cfg, rt.run_dir, r, role, start, rt.student_dir(r, role), rows,
                                  seed=rt.cfg.seed + r, progress=progress)
    else:
        # A kill or Ctrl-C inside training resumes from the trainer's last checkpoint, kept here
        # (trainers whose `train` takes no checkpoint_dir restart the stage from step 0).
        resumable = "checkpoint_dir" in inspect.signature(trainer.train).parameters
        extra = {"checkpoint_dir": rt.files.train_checkpoints(r, role)} if resumable else {}
        figures = trainer.train(start, rt.student_dir(r, role), rows, seed=rt.cfg.seed + r, progress=progress,
                                **extra)
    rt.reporter.task_done()
    return figures
