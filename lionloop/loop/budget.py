"""Budget pacing: with `stop.max_teacher_calls`, what a round's generators may propose and spend.

Without pacing a loop spends `max_new_per_round` candidates a round until the budget runs out
mid-round; the last data it buys may then never be trained on, and a run with a smaller budget
does fewer rounds. Pacing spreads what is left of the budget evenly over the rounds still to
generate, after setting aside the referee calls those rounds will need (estimated from this
round's), so the budget lasts to the last generating round and is spent there.
"""

from __future__ import annotations

from typing import Any

from lionloop.loop.runtime import Runtime
from lionloop.loop.selection import referee_pays


def stage_calls(rt: Runtime, r: int, stages: tuple[str, ...]) -> int:
    """Paid calls of round r's `stages` (from the call cache)."""
    return int(sum(v.get("calls", 0) for (rnd, st), v in rt.cache.paid(rt.run_id).items()
                   if rnd == r and st in stages))


def left_at_start(rt: Runtime, r: int, stage: str) -> int | None:
    """The budget left when round r's `stage` started (None: no budget). A stage resumed after a
    crash has paid some of its calls already; counting them back makes its sample and quotas the
    ones the first attempt computed, so the resumed run buys what the uninterrupted one would."""
    left = rt.budget_left()
    if left is None:
        return None
    return min(rt.cfg.stop.max_teacher_calls, left + stage_calls(rt, r, (stage,)))


def rounds_to_generate(rt: Runtime, r: int) -> int:
    """Generating rounds from round r on (r .. max_rounds - 1; the last round trains and stops),
    at least 1: the part of what is left that round r may spend is 1 / this."""
    return max(1, rt.cfg.stop.max_rounds - r)


def calls_per_candidate(rt: Runtime, r: int) -> float:
    """Paid calls one candidate costs through generate and curate (its answer included).

    Measured over this run's earlier rounds where there are any; else the plan's own figure (the
    generators' `calls_per_candidate`, weighted by quota)."""
    calls = sum(stage_calls(rt, k, ("generate", "curate")) for k in range(1, r))
    made = sum(int((rt.pool.stage_result(k, "generate") or {}).get("candidates", 0)) for k in range(1, r))
    if made:
        return max(1.0, calls / made)
    quota = sum(g.quota for g in rt.plan) or 1
    return max(1.0, sum(g.quota * g.spec.calls_per_candidate for g in rt.plan) / quota)


def paced_quotas(rt: Runtime, r: int) -> tuple[dict[str, tuple[int, int]] | None, dict[str, Any] | None]:
    """Per generator (candidates, paid calls) for round r, and the pacing figures; (None, None)
    without a budget or with `generate.pace: false` (the plan's quotas stand)."""
    cfg = rt.cfg
    left = left_at_start(rt, r, "generate")
    if left is None or not cfg.generate.pace:
        return None, None
    generating = rounds_to_generate(rt, r)
    # The referee judges again in each later generating round; the last round finds the budget
    # spent, and is not judged (or judged with what is left).
    judged_later = max(0, cfg.stop.max_rounds - 1 - r)
    reserve = stage_calls(rt, r, ("discriminate",)) * judged_later if referee_pays(cfg) else 0
    round_budget = max(0, left - reserve) // generating
    per = calls_per_candidate(rt, r)
    planned = sum(g.quota for g in rt.plan)
    scale = min(1.0, round_budget / per / planned) if planned else 0.0
    quotas = {g.name: (int(g.quota * scale), int(round(g.max_calls * scale))) for g in rt.plan}
    figures = {"left": left, "referee_reserve": reserve, "rounds_to_generate": generating,
               "round_budget": round_budget, "calls_per_candidate": round(per, 3),
               "candidates": sum(q for q, _ in quotas.values())}
    return quotas, figures
