"""The discriminate stage: the referee judges teacher vs student answers on 1-10, in both orders to
cancel position bias, and Lion's rule marks each case hard or easy.

`judge.mode` chooses who calls a case: `llm` (the referee model, Lion), `verifier` (the task pack's
verifier: wrong = hard, no teacher call, LLM2LLM's rule; the teacher's answer stands in for a
reference the instruction lacks) or `both` (the referee decides, the verifier audits every call:
agreement, precision and recall of "hard" in the round's referee figures)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from lionloop.config import RefereeConfig
from lionloop.loop.allocation import pool_groups
from lionloop.loop.budget import left_at_start, round_parts
from lionloop.loop.quorum import require_decided
from lionloop.loop.runtime import Runtime
from lionloop.loop.scoring import agreement, identical
from lionloop.loop.selection import referee_selects
from lionloop.plugin.taskpack import with_reference
from lionloop.records import Instruction, Verdict
from lionloop.teacher.client import Teacher
from lionloop.teacher.requests import Judge


def lion_rule(teacher_score: float, student_score: float, tau: float) -> bool:
    """Hard when the teacher's answer beats the student's by at least tau."""
    return teacher_score - student_score >= tau


def judge_cases(
    referee: Teacher,
    items: Sequence[Instruction],
    teacher_answers: dict[str, str],
    student_answers: dict[str, str],
    round: int,
    cfg: RefereeConfig,
    progress: Callable[[int], None] | None = None,
    orders: list[tuple[float, bool]] | None = None,
) -> list[Verdict]:
    """One verdict per instruction. A judge reply that cannot be used gives a verdict with no
    scores and hard=None (recorded, skipped by generators), never a made-up score.

    With both orders and an `orders` list, each case judged in both appends (the points the judge
    gave the answer in the first slot over the one in the second, averaged over the two orders;
    whether the two orders alone call it differently): the judge's position bias, measured."""
    verdicts: list[Verdict] = []
    to_judge: list[Instruction] = []
    for ins in items:
        t, s = teacher_answers[ins.id], student_answers[ins.id]
        if cfg.skip_identical and identical(t, s):
            verdicts.append(Verdict(ins.id, round, None, None, False, raw="identical answers: easy, not judged"))
            if progress:
                progress(1)
        else:
            to_judge.append(ins)
    requests: list[Judge] = []
    for ins in to_judge:
        t, s = teacher_answers[ins.id], student_answers[ins.id]
        requests.append(Judge(instruction=ins.text, input=ins.input, task=ins.task, answer_1=t, answer_2=s))
        if cfg.both_orders:
            requests.append(Judge(instruction=ins.text, input=ins.input, task=ins.task, answer_1=s, answer_2=t))
    per = 2 if cfg.both_orders else 1
    calls_in = [0]

    def step(n: int) -> None:  # in whole cases: one judged in both orders counts once its second call is in
        before = calls_in[0] // per
        calls_in[0] += n
        if progress and calls_in[0] // per > before:
            progress(calls_in[0] // per - before)

    results = referee.ask(requests, step if progress else None)
    for k, ins in enumerate(to_judge):
        first = results[k * per]
        if not first.ok:
            verdicts.append(Verdict(ins.id, round, None, None, None, raw=f"judge failed: {first.error}"))
            continue
        t_scores, s_scores = [first.output.score_1], [first.output.score_2]
        raw = [first.raw or first.output.explanation]
        if cfg.both_orders:
            second = results[k * per + 1]
            if not second.ok:
                verdicts.append(Verdict(ins.id, round, None, None, None, raw=f"judge failed (swapped order): {second.error}"))
                continue
            t_scores.append(second.output.score_2)
            s_scores.append(second.output.score_1)
            raw.append(second.raw or second.output.explanation)
            if orders is not None:
                first_slot = (t_scores[0] - s_scores[0] + s_scores[1] - t_scores[1]) / 2
                flips = lion_rule(t_scores[0], s_scores[0], cfg.tau) != lion_rule(t_scores[1], s_scores[1], cfg.tau)
                orders.append((first_slot, flips))
        ts, ss = sum(t_scores) / len(t_scores), sum(s_scores) / len(s_scores)
        verdicts.append(Verdict(ins.id, round, ts, ss, lion_rule(ts, ss, cfg.tau), raw="\n---\n".join(raw)))
    return verdicts


def position_bias(orders: Sequence[tuple[float, bool]]) -> dict[str, Any] | None:
    """The judge's position bias over a round's cases judged in both orders: the mean points the
    first slot gets over the second (0 for a judge without one), and the share of cases the two
    orders alone would call differently (what judging one order, `both_orders: false`, would risk)."""
    if not orders:
        return None
    return {"first_slot_points": round(sum(a for a, _ in orders) / len(orders), 3),
            "order_flips": round(sum(f for _, f in orders) / len(orders), 4), "n": len(orders)}


def verifier_calls(pack: Any, items: Sequence[Instruction], teacher_answers: dict[str, str],
                   student_answers: dict[str, str]) -> dict[str, bool | None]:
    """The verifier's call on each case: is the student's answer right? (None: cannot check.)"""
    return {ins.id: pack.verify(with_reference(ins, teacher_answers.get(ins.id)), student_answers[ins.id])
            for ins in items}


def _verifier_verdict(iid: str, round: int, right: bool | None) -> Verdict:
    if right is None:
        return Verdict(iid, round, None, None, None, raw="verifier: cannot check this answer")
    return Verdict(iid, round, None, None, not right, raw=f"verifier: {'right' if right else 'wrong'}")


# Fewest audited calls a round before the verifier's disagreement with the referee is reported.
MIN_AUDITED = 4


def referee_doubt(audit: dict[str, Any]) -> str | None:
    """With `judge.mode: both`, one line for the user when the verifier agrees with fewer than half
    of the referee's calls: its hard/easy choice is then no better than a coin here (a small real
    judge called every wrong answer of the student easy)."""
    n = audit.get("n") or 0
    if n < MIN_AUDITED or audit["agree"] * 2 >= n:
        return None
    return (f"the verifier agrees with {audit['agree']} of the referee's {n} calls ({audit['tp'] + audit['fp']} "
            f"called hard, {audit['tp'] + audit['fn']} wrong by the verifier): the referee is choosing the hard "
            "cases no better than chance; judge.mode: verifier lets the verifier decide")


def referee_cap(cfg: RefereeConfig, left: int | None, parts: float) -> int | None:
    """Cases the referee may judge with a call this round: `max_cases`, or with a budget and
    `budget_share` that share of the round's part of what is left (1 / `parts` of it: the
    rounds to generate, weighted by the pacing), in cases, at least one where
    the budget pays for it (0: only the free verdicts; None: every case)."""
    if cfg.max_cases or cfg.mode == "verifier":
        return cfg.max_cases
    if left is None or cfg.budget_share is None:
        return None
    per_case = 2 if cfg.both_orders else 1
    cases = int(cfg.budget_share * left / max(1, parts) // per_case)
    return min(max(1, cases), left // per_case)


def sample_for_referee(items: Sequence[Instruction], free: set[str], cap: int | None, rng: Any,
                       groups: dict[str, str] | None = None, first: set[str] | None = None) -> list[Instruction]:
    """The cases the referee judges this round: all of them, or with a `cap` a seeded sample of
    those that need a judge call, beside every case the judge is not asked about (`free`, from
    `free_cases`: identical answers are easy for free): the cap is on referee calls, not on free
    verdicts. With `groups` (instruction id -> group) the cap is split evenly over the groups,
    uniformly within each, and with `first` (ids, e.g. the cache probes) a group's part is drawn
    from those first."""
    if cap is None:
        return list(items)
    paid = sorted((i for i in items if i.id not in free), key=lambda i: i.id)
    if groups is None:
        paid = rng.sample(paid, cap) if len(paid) > cap else paid
    else:
        by_group: dict[str, list[Instruction]] = defaultdict(list)
        for ins in paid:
            by_group[groups.get(ins.id) or ins.task or ""].append(ins)
        take = even_split(cap, {g: len(v) for g, v in sorted(by_group.items())}, rng)
        paid = [ins for g, v in sorted(by_group.items()) for ins in _draw(v, take[g], first or set(), rng)]
    chosen = free | {i.id for i in paid}
    return [i for i in items if i.id in chosen]


def free_cases(items: Sequence[Instruction], teacher_answers: dict[str, str], student_answers: dict[str, str],
               skip_identical: bool) -> set[str]:
    """Ids of the cases the referee calls easy without a judge call (identical answers)."""
    return {i.id for i in items if skip_identical and identical(teacher_answers.get(i.id, ""), student_answers[i.id])}


def probes_lead(setting: bool | str, identical_now: int, needing_call: int, last: dict[str, Any] | None) -> bool:
    """Whether a group's part of the referee's sample comes from its cache probes first this round.

    `judge.probes_first: auto` says yes unless identical answers are how the student's right
    answers show: unless this round's identical answers (`identical_now`, easy for free) outnumber
    the right answers that differ from the teacher's, estimated from the last judged round (its
    share of paid verdicts that came out easy) over this round's cases that need a call. With exact
    answers the right ones are identical and the paid verdicts hard: no. With free-form answers none
    is identical, so the probes' accuracy rests on the sample: yes, from the first round on."""
    if setting != "auto":
        return bool(setting)
    judged = (last or {}).get("judged_paid") or 0
    rate = (last or {}).get("easy_paid", 0) / judged if judged else 0.0
    return rate * needing_call >= identical_now


def _draw(items: list[Instruction], k: int, first: set[str], rng: Any) -> list[Instruction]:
    """k of `items` drawn uniformly, those in `first` before the rest."""
    lead = [i for i in items if i.id in first]
    rest = [i for i in items if i.id not in first]
    if k <= len(lead):
        return rng.sample(lead, k)
    return lead + rng.sample(rest, k - len(lead))


def even_split(cap: int, sizes: dict[str, int], rng: Any) -> dict[str, int]:
    """`cap` split as evenly as it goes over groups of these sizes (none takes more than it has; what
    a small group cannot take goes to the others; a remainder to groups drawn at random)."""
    take = dict.fromkeys(sizes, 0)
    left = min(cap, sum(sizes.values()))
    while left:
        open_ = [g for g in sizes if take[g] < sizes[g]]
        each = left // len(open_)
        if each == 0:
            for g in rng.sample(open_, left):
                take[g] += 1
            break
        for g in open_:
            add = min(each, sizes[g] - take[g])
            take[g] += add
            left -= add
    return take


def discriminate_stage(rt: Runtime, r: int) -> dict[str, Any]:
    if not referee_selects(rt.cfg):
        # Baseline mode: no referee, so no verdicts and no "no hard cases" stop.
        result = {"hard": None, "easy": None, "unjudged": 0, "judged": 0, "hard_ratio": None, "mean_diff": None}
        with rt.pool.transaction():
            rt.finish_stage(r, "discriminate", result, {"referee": result})
        return result
    pool = rt.pool.instructions(["train", "cache"])
    teacher = rt.pool.teacher_answers()
    student = rt.pool.student_answers(r)
    mode = rt.cfg.judge.mode
    cap = referee_cap(rt.cfg.judge, left_at_start(rt, r, "discriminate"), round_parts(rt, r))
    # The verifier judges cache probes the teacher never answered (bootstrap: `unpaid_probes`).
    groups = pool_groups(rt, rt.cfg.generate.allocation)[1] if cap is not None and rt.cfg.judge.sample_by == "group" else None
    cases = [i for i in pool if i.id in student and (i.id in teacher or mode == "verifier")]
    free = free_cases(cases, teacher, student, rt.cfg.judge.skip_identical)
    lead = None if groups is None else probes_lead(rt.cfg.judge.probes_first, len(free), len(cases) - len(free),
                                                   rt.pool.stage_result(r - 1, "discriminate"))
    probes = {i.id for i in pool if i.split == "cache"} if lead else None
    items = sample_for_referee(cases, free, cap, rt.context(r).rng("judge-sample"), groups, probes)
    right = verifier_calls(rt.task_pack, items, teacher, student) if mode != "llm" else {}
    orders: list[tuple[float, bool]] = []
    if mode == "verifier":
        verdicts = [_verifier_verdict(i.id, r, right[i.id]) for i in items]
    else:
        advance = rt.reporter.task(f"referee judging {len(items)} cases", len(items))
        verdicts = judge_cases(rt.referee, items, teacher, student, r, rt.cfg.judge, advance, orders)
        rt.reporter.task_done()
        require_decided(verdicts, rt.cfg.judge.min_decided, r, rt.run_dir)  # an outage is no verdict
    hard = sum(1 for v in verdicts if v.hard is True)
    easy = sum(1 for v in verdicts if v.hard is False)
    unjudged = sum(1 for v in verdicts if v.hard is None)
    diffs = [v.diff for v in verdicts if v.diff is not None]
    result: dict[str, Any] = {
        # judged: cases the referee decided (a failed call is no judgment); cases: all it was given
        "hard": hard, "easy": easy, "unjudged": unjudged, "judged": hard + easy, "cases": len(verdicts),
        "hard_ratio": round(hard / max(1, hard + easy), 4),
        "mean_diff": round(sum(diffs) / len(diffs), 4) if diffs else None,
        "mode": mode, "sample": cap,
        # Verdicts the referee was paid for, and how many of them came out easy (probes_first: auto).
        "judged_paid": sum(1 for v in verdicts if v.diff is not None),
        "easy_paid": sum(1 for v in verdicts if v.diff is not None and v.hard is False),
    }
    if lead is not None:
        result["probes_first"] = lead
    if bias := position_bias(orders):
        result["position"] = bias
    if mode == "both":
        result["agreement"] = agreement(verdicts, right)
        if doubt := referee_doubt(result["agreement"]):
            rt.reporter.notice(f"round {r}: {doubt}")
        # Each verdict keeps the verifier's call beside the referee's reasons (`pool show`).
        verdicts = [replace(v, raw=f"{v.raw}\n---\n{_verifier_verdict(v.instruction_id, r, right.get(v.instruction_id)).raw}")
                    for v in verdicts]
    with rt.pool.transaction():
        rt.pool.add_verdicts(verdicts)
        rt.pool.add_failures(r, "discriminate", {v.instruction_id: v.raw for v in verdicts if v.hard is None})
        rt.finish_stage(r, "discriminate", result, {"referee": result})
    return result
