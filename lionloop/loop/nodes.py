"""The graph's nodes. Each is idempotent per round: a stage marker, written in the same transaction
as the stage's rows and metrics, makes a re-run after a crash return the stored result. The work
of each stage lives in its own module; a node checks the marker, runs the work once, and returns
the state update."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from langgraph.runtime import Runtime as GraphRuntime

from lionloop.loop.curation import curate_stage
from lionloop.loop.evaluation import evaluate_stage
from lionloop.loop.generation import generate_stage
from lionloop.loop.referee import discriminate_stage
from lionloop.loop.runtime import Runtime
from lionloop.loop.seeds import bootstrap_stage
from lionloop.loop.state import LoopState, stop_reason
from lionloop.loop.training import imitate_stage

log = logging.getLogger(__name__)


def _done(rt: Runtime, round: int, stage: str) -> dict[str, Any] | None:
    result = rt.pool.stage_result(round, stage)
    if result is not None:
        log.info("round %d: %s already done; skipping", round, stage)
        rt.event(event="stage_skip", round=round, stage=stage)
    return result


def _once(rt: Runtime, r: int, stage: str, work: Callable[[Runtime, int], dict[str, Any]]) -> dict[str, Any]:
    """Run a stage's work unless its marker says it is done; either way return its result."""
    result = _done(rt, r, stage)
    if result is None:
        with rt.stage(r, stage):
            result = work(rt, r)
    return result


def bootstrap(state: LoopState, runtime: GraphRuntime[Runtime]) -> dict[str, Any]:
    rt = runtime.context
    if _done(rt, 0, "bootstrap") is None:
        with rt.stage(0, "bootstrap"):
            result = bootstrap_stage(rt, 0)
        rt.event(event="bootstrap", **result)
    return {"round": max(1, state.get("round") or 1), "run_id": rt.run_id}


def imitate(state: LoopState, runtime: GraphRuntime[Runtime]) -> dict[str, Any]:
    rt = runtime.context
    rt.pool.start_round(state["round"])
    _once(rt, state["round"], "imitate", imitate_stage)
    return {"untrained": 0}


def evaluate(state: LoopState, runtime: GraphRuntime[Runtime]) -> dict[str, Any]:
    rt = runtime.context
    result = _once(rt, state["round"], "evaluate", evaluate_stage)
    return {"last_eval": result["eval"]["overall"]}


def discriminate(state: LoopState, runtime: GraphRuntime[Runtime]) -> dict[str, Any]:
    rt = runtime.context
    result = _once(rt, state["round"], "discriminate", discriminate_stage)
    decided = None if result["hard"] is None else result["hard"] + result["easy"]
    return {"hard": result["hard"], "decided": decided}


def generate(state: LoopState, runtime: GraphRuntime[Runtime]) -> dict[str, Any]:
    rt = runtime.context
    _once(rt, state["round"], "generate", generate_stage)
    return {}


def curate(state: LoopState, runtime: GraphRuntime[Runtime]) -> dict[str, Any]:
    rt = runtime.context
    _once(rt, state["round"], "curate", curate_stage)
    return {}


def decide(state: LoopState, runtime: GraphRuntime[Runtime]) -> dict[str, Any]:
    rt = runtime.context
    r = state["round"]
    last = state.get("last_eval")
    best = state.get("best_eval")
    stale = state.get("stale_rounds", 0)
    if last is not None:
        improved = best is None or (last > best and last - best >= rt.cfg.stop.min_delta)
        if improved:
            best, stale = last, 0
        else:
            stale += 1
    curated = rt.pool.stage_result(r, "curate") or {}
    update = {"best_eval": best, "stale_rounds": stale, **rt.budget_now(),
              "untrained": int(curated.get("accepted") or 0)}
    reason = stop_reason({**state, **update}, rt.cfg.stop)
    _once(rt, r, "decide", partial(_close_round, reason=reason))
    if reason:
        rt.event(event="stop", round=r, reason=reason)
        return {**update, "stop_reason": reason}
    return {**update, "round": r + 1}


def _close_round(rt: Runtime, r: int, reason: str | None) -> dict[str, Any]:
    """The round's summary to the reporter and the `lionloop_round_end` hooks (a failing hook is
    recorded in the round by plugin name), then the round closed in one transaction."""
    metrics: dict[str, Any] = {"stop_reason": reason, "pool": rt.pool.count_instructions()}
    summary = {"round": r, **rt.pool.metrics(r), **metrics}
    rt.reporter.round_end(summary)
    errors: dict[str, str] = {}
    for impl in rt.pm.hook.lionloop_round_end.get_hookimpls():
        try:
            impl.function(summary=summary, ctx=rt.context(r, plugin=impl.plugin_name))
        except Exception as err:  # noqa: BLE001 - reported by name, never fatal
            errors[impl.plugin_name] = f"{type(err).__name__}: {err}"
            log.error("plugin %r failed in lionloop_round_end: %s", impl.plugin_name, errors[impl.plugin_name])
    if errors:
        metrics["round_end_errors"] = errors
    result = {"stop_reason": reason}
    with rt.pool.transaction():
        rt.pool.finish_round(r)
        rt.finish_stage(r, "decide", result, metrics)
    return result
