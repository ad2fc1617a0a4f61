"""Budget pacing: with `stop.max_teacher_calls` (or `max_teacher_cost`, then in money), what a
round's generators may propose and spend.

Without pacing a loop spends `max_new_per_round` candidates a round until the budget runs out
mid-round; the last data it buys may then never be trained on, and a run with a smaller budget
does fewer rounds. Pacing spreads what is left of the budget over the rounds still to generate
(evenly, or with `generate.pace_ratio` weighted toward the early or the late rounds), after
setting aside the referee calls those rounds will need (estimated from this round's), so the
budget lasts to the last generating round and is spent there.
"""

from __future__ import annotations

from typing import Any

from lionloop.loop.runtime import Runtime
from lionloop.loop.selection import referee_pays


def stage_calls(rt: Runtime, r: int, stages: tuple[str, ...], unit: str = "calls",
                paid: dict[tuple[int, str], dict[str, float]] | None = None) -> float:
    """What round r's `stages` paid (from the call cache, or `paid` where already read from it):
    calls, or with `unit` "cost" their cost."""
    paid = rt.cache.paid(rt.run_id) if paid is None else paid
    return sum(v.get(unit, 0) for (rnd, st), v in paid.items() if rnd == r and st in stages)


def left_at_start(rt: Runtime, r: int, stage: str) -> int | None:
    """The budget left when round r's `stage` started, in calls (None: no budget). A stage resumed
    after a crash has paid some of its calls already; counting them back makes its sample and
    quotas the ones the first attempt computed, so the resumed run buys what the uninterrupted one
    would."""
    left = rt.budget_left()
    if left is None:
        return None
    limit = rt.cfg.stop.max_teacher_calls
    back = left + int(stage_calls(rt, r, (stage,)))
    return back if limit is None else min(limit, back)


def cost_left_at_start(rt: Runtime, r: int, stage: str) -> float | None:
    """Under a cost budget, what was left of it when round r's `stage` started (a call budget too:
    the less of the two, its calls at the run's mean price); None before any call has a price."""
    stop = rt.cfg.stop
    if stop.max_teacher_cost is None:
        return None
    by_stage = rt.cache.paid(rt.run_id)  # one read for the run's totals and the stage's own
    calls, cost = (sum(v[k] for v in by_stage.values()) for k in ("calls", "cost"))
    if cost <= 0:
        return None
    left = stop.max_teacher_cost - cost + stage_calls(rt, r, (stage,), "cost", by_stage)
    if stop.max_teacher_calls is not None:
        left = min(left, (stop.max_teacher_calls - calls + stage_calls(rt, r, (stage,), paid=by_stage)) * cost / calls)
    return max(0.0, left)


def rounds_to_generate(rt: Runtime, r: int) -> int:
    """Generating rounds from round r on (r .. max_rounds - 1; the last round trains and stops),
    at least 1: the part of what is left that round r may spend is 1 / this."""
    return max(1, rt.cfg.stop.max_rounds - r)


def round_parts(rt: Runtime, r: int) -> float:
    """What is left of the budget, in parts of round r's: the generating rounds from r on weighted
    ratio^0, ratio^1, ... (`generate.pace_ratio`); round r may spend 1 / this of it. With the ratio 1,
    the number of rounds to generate."""
    ratio = rt.cfg.generate.pace_ratio
    return sum(ratio ** k for k in range(rounds_to_generate(rt, r)))


def per_candidate(rt: Runtime, r: int, unit: str = "calls") -> float:
    """Paid calls (or with `unit` "cost", their cost) one candidate costs through generate and
    curate (its answer included).

    Measured over this run's earlier rounds where there are any (all of them, or with
    `generate.pace_price: last` the latest that made candidates); else the plan's own figure (the
    generators' `calls_per_candidate` under the run's options, weighted by quota, with each candidate's rewrite at 1/k of a
    call where `rewrites_per_call` packs k; in cost, at the run's mean price)."""
    by_stage = rt.cache.paid(rt.run_id)  # read once, not once per earlier round
    made_in = {k: int((rt.pool.stage_result(k, "generate") or {}).get("candidates", 0)) for k in range(1, r)}
    rounds = list(made_in)
    if rt.cfg.generate.pace_price == "last":
        rounds = [k for k in rounds if made_in[k]][-1:]
    spent = sum(stage_calls(rt, k, ("generate", "curate"), unit, by_stage) for k in rounds)
    made = sum(made_in[k] for k in rounds)
    if made and spent > 0:
        # Not floored at one call: packed rewrites (1/k of a call) and answers the student gave
        # itself make a candidate cheaper than that; a floor left a packed loop's last round 7% of
        # the budget unspent.
        return spent / made
    quota = sum(g.quota for g in rt.plan) or 1
    calls = sum(g.quota * g.calls_per_candidate for g in rt.plan) / quota
    # A candidate starts from one rewrite; packed k to a call, it costs 1/k of one.
    k = (rt.cfg.generator_teacher or rt.cfg.teacher).rewrites_per_call
    calls = max(1.0, calls - (1 - 1 / k))
    if unit == "calls":
        return calls
    paid, cost = (sum(v[k] for v in by_stage.values()) for k in ("calls", "cost"))
    return calls * cost / max(1, paid)


def paced_quotas(rt: Runtime, r: int) -> tuple[dict[str, tuple[int, int]] | None, dict[str, Any] | None]:
    """Per generator (candidates, paid calls) for round r, and the pacing figures; (None, None)
    without a budget or with `generate.pace: false` (the plan's quotas stand). Under a cost budget
    the round's part and a candidate's price are measured in cost: a judge call, a rewrite and an
    answer differ in price, and calls at one mean price would misjudge what a candidate costs."""
    cfg = rt.cfg
    left: float | None = left_at_start(rt, r, "generate")
    if left is None or not cfg.generate.pace:
        return None, None
    unit = "calls"
    if (money := cost_left_at_start(rt, r, "generate")) is not None:
        left, unit = money, "cost"
    generating, parts = rounds_to_generate(rt, r), round_parts(rt, r)
    # The referee judges again in each later generating round; the last round finds the budget
    # spent, and is not judged (or judged with what is left).
    judged_later = max(0, cfg.stop.max_rounds - 1 - r)
    reserve = stage_calls(rt, r, ("discriminate",), unit) * judged_later if referee_pays(cfg) else 0
    round_budget = int(max(0, left - reserve) // parts) if unit == "calls" else max(0.0, left - reserve) / parts
    per = per_candidate(rt, r, unit)
    planned = sum(g.quota for g in rt.plan)
    scale = min(1.0, round_budget / per / planned) if planned and per > 0 else 0.0
    quotas = {g.name: (int(g.quota * scale), int(round(g.max_calls * scale))) for g in rt.plan}
    digits = 3 if unit == "calls" else 6
    figures = {"unit": unit, "left": round(left, digits), "referee_reserve": round(reserve, digits),
               "rounds_to_generate": generating, "round_parts": round(parts, 3), "round_budget": round(round_budget, digits),
               f"{unit}_per_candidate": round(per, digits),
               "candidates": sum(q for q, _ in quotas.values())}
    return quotas, figures
