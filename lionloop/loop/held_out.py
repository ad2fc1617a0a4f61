"""`lionloop evaluate`: a trained round's student measured again on held-out instructions, without
writing to the run: the run's own eval split (what the evaluate stage scored), or a larger sample
where the task pack can draw one (`per_skill`), less every instruction the run's pool holds.

Why: a run's eval split is sized for a round's time budget (the benchmarks' pretrained student is
scored on 50 instructions, one is 2 points); the model a user takes away deserves a measurement
with a known error. Scored by the task pack's verifier; the referee's relative score costs teacher
calls and is what the evaluate stage recorded (`lionloop status`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from lionloop.errors import RunError
from lionloop.loop.answers import prompts_for
from lionloop.loop.preflight import resolve_task_pack
from lionloop.loop.reporting import Reporter
from lionloop.loop.scoring import accuracy, wilson_interval
from lionloop.plugin.context import RoundContext
from lionloop.plugin.manager import get_plugin_manager
from lionloop.plugin.plan import plan_generators
from lionloop.plugin.taskpack import pack_has_verifier
from lionloop.rundir import RunDir
from lionloop.stores.pool import Pool


def trained_rounds(run_dir: Path) -> list[int]:
    """Rounds whose main student checkpoint is on disk (round-N folders), in order."""
    folder = RunDir(run_dir).students
    names = [p.name.removeprefix("round-") for p in folder.glob("round-*")] if folder.is_dir() else []
    return sorted(int(n) for n in names if n.isdigit())


def evaluate_round(run_dir: Path, round: int | None = None, per_skill: int | None = None,
                   reporter: Reporter | None = None) -> dict[str, Any]:
    """Accuracy (overall, per task, n) of round `round`'s student (default: the last trained) on the
    run's eval split, or with `per_skill` on that many held-out instructions a task drawn by the
    task pack, those the pool holds in any other split left out (counted in `in_pool`)."""
    from lionloop.student.model import generate  # torch: only once the run is known to be readable

    rd = RunDir(run_dir)
    cfg, run_id = rd.read()
    rounds = trained_rounds(run_dir)
    chosen = rounds[-1] if round is None and rounds else round
    if chosen is None or chosen not in rounds:
        raise RunError(f"{run_dir}: round {chosen} has no trained student (trained rounds: {rounds or 'none'})")
    pm = get_plugin_manager()
    pack = resolve_task_pack(pm.build_registry(), cfg).build(cfg.task, cfg.seed)
    if not pack_has_verifier(pack):
        raise RunError(f"task pack {cfg.task.pack!r} has no verifier: `lionloop evaluate` scores by the verifier "
                       "only (the referee's relative score costs teacher calls; `lionloop status` shows the one "
                       "the run recorded)")
    pool = Pool(rd.pool, readonly=True)
    try:
        in_pool = 0
        if per_skill is None:
            items = pool.instructions(["eval"])
            source = "the run's eval split"
        else:
            if "per_skill" not in inspect.signature(pack.eval_set).parameters:
                raise RunError(f"task pack {cfg.task.pack!r} cannot draw a larger eval sample (its eval_set takes no "
                               "per_skill); evaluate on the run's eval split (leave out --per-skill)")
            drawn = pack.eval_set(per_skill=per_skill)
            stored = pool.instructions_by_id(i.id for i in drawn)  # by primary key: no scan of a large pool
            held = {k for k, i in stored.items() if i.split != "eval"}
            items = [i for i in drawn if i.id not in held]
            in_pool = len(drawn) - len(items)
            source = f"{per_skill} held-out instructions a task drawn by the {cfg.task.pack!r} pack"
        if not items:
            raise RunError(f"{run_dir}: no held-out instructions to evaluate on ({source})")
        ctx = RoundContext(round=chosen, config=cfg, run_dir=rd.path, task_pack=pack, pool=pool,
                           generators={g.name: g for g in plan_generators(cfg.generate, pm.generator_specs())})
        prompts = prompts_for(pm, ctx, items)
    finally:
        pool.close()
    reporter = reporter or Reporter()
    advance = reporter.task(f"round {chosen}'s student answers {len(items)} held-out instructions", len(items))
    stats: dict[str, Any] = {}
    answers = generate(rd.student(chosen), prompts, cfg.student, advance, stats=stats)
    reporter.task_done()
    right = {i.id: pack.verify(i, a) for i, a in zip(items, answers, strict=True)}
    scored = accuracy((i.task, right[i.id]) for i in items)
    overall = scored["overall"]
    return {
        "run_id": run_id, "round": chosen, "source": source, "per_skill_drawn": per_skill, "in_pool": in_pool,
        "overall": overall, "per_skill": scored["per_skill"], "n": scored["n"], "asked": len(items),
        "interval_95": None if overall is None else list(wilson_interval(overall, scored["n"])),
        "truncated": stats.get("truncated", 0),
        "right": right,  # by instruction id (None: not checkable): to compare two runs on the instructions both were asked
    }
