"""The loop's graph state: small on purpose; everything heavy lives in the pool."""

from __future__ import annotations

from typing import TypedDict

from lionloop.config import StopConfig


class LoopState(TypedDict, total=False):
    run_id: str
    round: int  # the round being worked on (1-based)
    teacher_calls: int  # paid teacher calls so far (read from the cache)
    budget_left: int | None  # paid calls the budget still allows (None: no budget)
    hard: int  # hard cases the referee found this round
    decided: int  # cases the referee decided (hard or easy) this round
    untrained: int  # instructions accepted this round: the student has not trained on them yet
    last_eval: float | None  # held-out accuracy after this round's imitate
    best_eval: float | None
    stale_rounds: int  # rounds since best_eval last improved
    stop_reason: str | None


def budget_spent(state: LoopState, cfg: StopConfig) -> bool:
    """True when the paid teacher calls have reached stop.max_teacher_calls, or what is left of
    stop.max_teacher_cost pays for no more call."""
    if cfg.max_teacher_calls is not None and state.get("teacher_calls", 0) >= cfg.max_teacher_calls:
        return True
    return cfg.max_teacher_cost is not None and state.get("budget_left") == 0


def stop_reason(state: LoopState, cfg: StopConfig) -> str | None:
    """Why the loop should stop after the current round, or None to go on.

    Pure: used both to skip generate/curate in a final round (no teacher calls wasted on data
    nobody will train on) and to end the loop in `decide`.
    """
    if state.get("round", 0) >= cfg.max_rounds:
        return "max_rounds"
    if budget_spent(state, cfg) and not state.get("untrained"):
        # Data the budget bought this round is trained on first: one more imitate and evaluate.
        return "teacher_budget"
    # No hard case among cases the referee decided; none decided (every call failed) is no news.
    if cfg.stop_when_no_hard and state.get("hard") == 0 and state.get("decided", 1) > 0:
        return "no_hard_cases"
    if cfg.patience is not None and state.get("stale_rounds", 0) >= cfg.patience:
        return "plateau"
    return None
