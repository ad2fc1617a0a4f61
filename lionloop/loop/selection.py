"""Which cases the generators get: the referee's hard and easy calls (Lion), or pool instructions
drawn uniformly (the uniform-expansion baseline). Decided here, for both the discriminate stage
(judge or not) and the generate stage (which cases)."""

from __future__ import annotations

from typing import Any

from lionloop.loop.runtime import Runtime
from lionloop.records import Case, Cases, Verdict


def referee_selects(cfg: Any) -> bool:
    """True when the referee's verdicts choose the cases (and so the referee judges every round)."""
    return cfg.generate.case_selection == "referee"


def referee_pays(cfg: Any) -> bool:
    """True when the discriminate stage pays teacher calls for its verdicts."""
    return referee_selects(cfg)


def warming_up(cfg: Any, r: int) -> bool:
    """True in the rounds that expand uniformly although the referee judges (`generate.warmup_rounds`)."""
    return referee_selects(cfg) and r <= cfg.generate.warmup_rounds


def select_cases(rt: Runtime, r: int) -> Cases:
    """The round's judged cases, split by the referee's call (unjudged ones are left out).

    With `generate.case_selection: uniform` every pool instruction is a "hard" case, in a
    seeded random order, and nothing is judged: the uniform-expansion baseline. The same in the
    `generate.warmup_rounds`, where the cases carry the referee's verdicts but every one is expanded.
    """
    instructions = {i.id: i for i in rt.pool.instructions(["train", "cache"])}
    teacher = rt.pool.teacher_answers()
    student = rt.pool.student_answers(r)
    cases = Cases(round=r)
    if not referee_selects(rt.cfg) or warming_up(rt.cfg, r):
        judged = {v.instruction_id: v for v in rt.pool.verdicts(r)} if referee_selects(rt.cfg) else {}
        cases.hard = _uniform(rt, r, instructions, teacher, student, judged)
        return cases
    for v in rt.pool.verdicts(r):
        ins = instructions.get(v.instruction_id)
        if ins is None or v.hard is None:
            continue
        case = Case(ins, teacher.get(ins.id, ""), student.get(ins.id, ""), v)
        (cases.hard if v.hard else cases.easy).append(case)
    cases.hard.sort(key=lambda c: (-(c.verdict.diff or 0), c.instruction.id))
    return cases


def uniform_cases(rt: Runtime, r: int, exclude: set[str]) -> Cases:
    """Pool instructions not in `exclude`, in the uniform baseline's seeded order, as "hard" cases:
    what fills a round's quota that its judged cases cannot (`generate.fill`; the round's
    judged instructions are excluded: the referee's verdict on them stands)."""
    instructions = {i.id: i for i in rt.pool.instructions(["train", "cache"]) if i.id not in exclude}
    return Cases(round=r, hard=_uniform(rt, r, instructions, rt.pool.teacher_answers(), rt.pool.student_answers(r), {}))


def _uniform(rt: Runtime, r: int, instructions: dict[str, Any], teacher: dict[str, str], student: dict[str, str],
             judged: dict[str, Verdict]) -> list[Case]:
    order = sorted(instructions)
    rt.context(r).rng("uniform-cases").shuffle(order)
    return [Case(instructions[i], teacher.get(i, ""), student.get(i, ""),
                 judged.get(i) or Verdict(i, r, None, None, None, raw="uniform selection: not judged"))
            for i in order]
