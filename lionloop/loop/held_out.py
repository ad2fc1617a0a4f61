"""`lionloop evaluate`: a trained round's student measured again on held-out instructions, without
writing to the run: the run's own eval split (what the evaluate stage scored), a larger sample
where the task pack can draw one (`per_skill`), or a file of the user's the pack can read
(`eval_file`), less every instruction the run's pool holds; round 0 is the base model. With a
second student (another round, or another run's) both answer the same instructions and the
difference is read pair by pair (`scoring.paired_difference`): distilled against base, loop
against uniform expansion, with the interval a paired comparison earns.

Why: a run's eval split is sized for a round's time budget (the benchmarks' pretrained student is
scored on 50 instructions, one is 2 points); the model a user takes away deserves a measurement
with a known error. Scored by the task pack's verifier; or, with `referee` (data without reference
answers), by the run's referee against the teacher's answers, in paid calls kept out of the run
(`held_out_referee`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionloop.config import RunConfig
from lionloop.errors import RunError
from lionloop.loop.answers import prompts_for
from lionloop.loop.preflight import resolve_task_pack
from lionloop.loop.reporting import Reporter
from lionloop.loop.scoring import accuracy, paired_difference, wilson_interval, wrong_answer
from lionloop.plugin.context import RoundContext
from lionloop.plugin.manager import get_plugin_manager
from lionloop.plugin.plan import plan_generators
from lionloop.plugin.taskpack import pack_has_verifier, pack_reference
from lionloop.records import Instruction
from lionloop.rundir import RunDir
from lionloop.stores.pool import Pool


def trained_rounds(run_dir: Path) -> list[int]:
    """Rounds whose main student checkpoint is on disk (round-N folders), in order."""
    folder = RunDir(run_dir).students
    names = [p.name.removeprefix("round-") for p in folder.glob("round-*")] if folder.is_dir() else []
    return sorted(int(n) for n in names if n.isdigit())


def held_in(pool: Pool, items: list[Instruction]) -> set[str]:
    """Ids of `items` the pool holds in a split other than eval (trained on, probed, generated)."""
    stored = pool.instructions_by_id(i.id for i in items)  # by primary key: no scan of a large pool
    return {k for k, i in stored.items() if i.split != "eval"}


def held_out_items(pack: Any, pool: Pool, pack_name: str, per_skill: int | None = None,
                   eval_file: str | None = None) -> tuple[list[Instruction], str, int]:
    """(instructions, where they come from, how many were left out as the pool's): the run's eval
    split; or `per_skill` a task drawn by the pack; or the rows of a file the pack reads
    (`eval_file`). Drawn or read instructions the pool holds in another split (trained on, probed,
    generated) are left out: they are not held out."""
    if per_skill is not None and eval_file is not None:
        raise RunError("--per-skill and --eval-file: give one (a sample the pack draws, or a file of yours)")
    if per_skill is None and eval_file is None:
        return pool.instructions(["eval"]), "the run's eval split", 0
    draws = "per_skill" in inspect.signature(pack.eval_set).parameters
    reads = callable(getattr(pack, "read_eval", None))
    if eval_file is not None:
        if not reads:
            raise RunError(f"task pack {pack_name!r} cannot read an eval file"
                           + (" (it draws held-out instructions of its own: use --per-skill)" if draws else ""))
        drawn = pack.read_eval(eval_file)
        source = f"the {len(drawn)} rows of {eval_file}"
    else:
        if not draws:
            raise RunError(f"task pack {pack_name!r} cannot draw a larger eval sample (its eval_set takes no "
                           "per_skill); evaluate on the run's eval split (leave out --per-skill)"
                           + (", or on a file of yours (--eval-file)" if reads else ""))
        drawn = pack.eval_set(per_skill=per_skill)
        source = f"{per_skill} held-out instructions a task drawn by the {pack_name!r} pack"
    held = held_in(pool, drawn)
    items = [i for i in drawn if i.id not in held]
    return items, source, len(drawn) - len(items)


@dataclass(frozen=True)
class Subject:
    """One student to ask: a run's round (0: the base model the run started from)."""

    rd: RunDir
    cfg: RunConfig
    run_id: str
    round: int
    student: Path

    @property
    def who(self) -> str:
        return "the base model" if self.round == 0 else f"round {self.round}'s student"


def subject(run_dir: Path, round: int | None = None) -> Subject:
    """Round `round` of a run (default: its last trained round), refused where it has no student."""
    rd = RunDir(run_dir)
    cfg, run_id = rd.read()
    rounds = trained_rounds(run_dir)
    chosen = rounds[-1] if round is None and rounds else round
    student = None if chosen is None else rd.student_at(chosen, cfg.student.base)
    if student is None or chosen < 0 or not (chosen in rounds or (chosen == 0 and student.exists())):
        raise RunError(f"{run_dir}: round {chosen} has no trained student (trained rounds: {rounds or 'none'}; "
                       "round 0 is the base model)")
    return Subject(rd, cfg, run_id, chosen, student)


def answers_of(subj: Subject, pack: Any, items: list[Instruction],
               reporter: Reporter) -> tuple[list[str], int, list[str | None] | None]:
    """The subject's greedy answers to `items`, how many were cut at max_new_tokens, and the thinking
    cut from each (None: a student that does not learn thinking). Prompts go through the subject
    run's own prompt hooks, as its evaluate stage renders them."""
    from lionloop.student.model import generate  # torch: only once the run is known to be readable

    pm = get_plugin_manager()
    cfg = subj.cfg
    with Pool(subj.rd.pool, readonly=True) as pool:
        ctx = RoundContext(round=subj.round, config=cfg, run_dir=subj.rd.path, task_pack=pack, pool=pool,
                           generators={g.name: g for g in plan_generators(cfg.generate, pm.generator_specs())})
        prompts = prompts_for(pm, ctx, items)
    advance = reporter.task(f"{subj.who} answers {len(items)} held-out instructions", len(items))
    stats: dict[str, Any] = {}
    answers = generate(subj.student, prompts, cfg.student, advance, stats=stats)
    reporter.task_done()
    return answers, stats.get("truncated", 0), stats.get("thinking")


def scored(subj: Subject, pack: Any, items: list[Instruction], answers: list[str], truncated: int,
           thinking: list[str | None] | None = None, show_wrong: int = 0) -> dict[str, Any]:
    """The answers checked by `pack`'s verifier: accuracy overall and per task with its interval, the
    verdict and answer by instruction id, and the first `show_wrong` wrong answers in full (with
    their thinking, where there is any: `answers_of`)."""
    right = {i.id: pack.verify(i, a) for i, a in zip(items, answers, strict=True)}
    acc = accuracy((i.task, right[i.id]) for i in items)
    overall = acc["overall"]
    wrong = [wrong_answer(i, pack_reference(pack, i), a, thinking, k)
             for k, (i, a) in enumerate(zip(items, answers, strict=True)) if right[i.id] is False][:show_wrong]
    return {
        "run_id": subj.run_id, "round": subj.round, "who": subj.who, "student": str(subj.student),
        "overall": overall, "per_skill": acc["per_skill"], "n": acc["n"], "asked": len(items),
        "interval_95": None if overall is None else list(wilson_interval(overall, acc["n"])),
        "truncated": truncated,
        "right": right,  # by instruction id (None: not checkable): to compare two runs on the instructions both were asked
        "answers": {i.id: a for i, a in zip(items, answers, strict=True)},
        "wrong": wrong,
    }


def evaluate_round(run_dir: Path, round: int | None = None, per_skill: int | None = None,
                   reporter: Reporter | None = None, eval_file: str | None = None,
                   against_run: Path | None = None, against_round: int | None = None,
                   show_wrong: int = 0, referee: bool = False, max_calls: int | None = None) -> dict[str, Any]:
    """Accuracy (overall, per task, n) of round `round`'s student (default: the last trained; 0: the
    base model the run started from) on the run's eval split, or with `per_skill` on that many
    held-out instructions a task drawn by the task pack, or on the rows of `eval_file` read by the
    pack; those the pool holds in any other split left out (counted in `in_pool`).

    With `against_run` and/or `against_round`, a second student (that run's round, default its last
    trained; or this run's round `against_round`) answers the same instructions, less any its own
    pool holds, scored by this run's verifier; `paired` is the difference pair by pair. `show_wrong`:
    that many of the first student's wrong answers, with instruction and reference (`wrong`).

    `referee`: judged by the run's referee against the teacher's answers instead (`metric` says
    which; `held_out_referee`), paying at most `max_calls` teacher calls (`teacher_calls`)."""
    a = subject(run_dir, round)
    b = None
    if against_run is not None or against_round is not None:
        b = subject(against_run if against_run is not None else run_dir, against_round)
    pm = get_plugin_manager()
    cfg = a.cfg
    pack = resolve_task_pack(pm.build_registry(), cfg).build(cfg.task, cfg.seed)
    judge_hint = ("; --referee has the run's referee judge the answers against the teacher's (paid calls, "
                  "--max-calls caps them)")
    if not referee and not pack_has_verifier(pack):
        raise RunError(f"task pack {cfg.task.pack!r} has no verifier to score by{judge_hint}")
    with Pool(a.rd.pool, readonly=True) as pool:
        items, source, in_pool = held_out_items(pack, pool, cfg.task.pack, per_skill, eval_file)
    if b is not None and b.rd.path.resolve() != a.rd.path.resolve():
        with Pool(b.rd.pool, readonly=True) as other:
            held = held_in(other, items)
        items, in_pool = [i for i in items if i.id not in held], in_pool + len(held)
    if not items:
        raise RunError(f"{run_dir}: no held-out instructions to evaluate on ({source}"
                       + (f": the runs' pools hold all {in_pool}" if in_pool else "") + ")")
    if not referee and all(pack.verify(i, "") is None for i in items):
        raise RunError(f"{source}: the verifier can check none of them (no reference answers?){judge_hint}")
    reporter = reporter or Reporter()
    where = {"source": source, "per_skill_drawn": per_skill, "eval_file": eval_file, "in_pool": in_pool}
    if not referee:
        out = {**scored(a, pack, items, *answers_of(a, pack, items, reporter), show_wrong=show_wrong),
               **where, "metric": "accuracy"}
        if b is not None:
            out["against"] = scored(b, pack, items, *answers_of(b, pack, items, reporter))
    else:
        from lionloop.loop.held_out_referee import Judging, why_not_judged

        judging = Judging(a.rd, cfg, pack, max_calls)
        try:
            cases, answered = judging.start(items, 1 if b is None else 2, reporter)
            if not answered:  # before any student is asked
                raise RunError(f"{source}: the teacher gave none of the {cases} answers to judge by: "
                               f"{why_not_judged(judging.failures)}")
            runs = [(subj, *answers_of(subj, pack, items, reporter)) for subj in ([a] if b is None else [a, b])]
            judged = judging.judge(runs, items, reporter, show_wrong)
            out = {**judged[0], **where, "metric": "referee"}
            if b is not None:
                out["against"] = judged[1]
            out["teacher_calls"] = judging.paid()
        finally:
            judging.close()
        if out["n"] == 0:
            raise RunError(f"{source}: none of {out['who']}'s {out['asked']} answers could be judged (paid "
                           f"{out['teacher_calls']} teacher calls): {why_not_judged(out['not_judged'])}")
    if b is not None:
        out["paired"] = paired_difference(out["right"], out["against"]["right"])
    return out
