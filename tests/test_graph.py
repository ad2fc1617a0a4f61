from __future__ import annotations

from types import SimpleNamespace

from langgraph.graph import END

from lionloop.config import StopConfig
from lionloop.loop.graph import route_after_decide, route_after_discriminate, route_after_evaluate
from lionloop.loop.state import stop_reason


def test_stop_reasons_in_priority_order() -> None:
    cfg = StopConfig(max_rounds=3, max_teacher_calls=100, patience=2)
    assert stop_reason({"round": 1, "teacher_calls": 10, "hard": 5, "stale_rounds": 0}, cfg) is None
    assert stop_reason({"round": 3, "hard": 5}, cfg) == "max_rounds"
    assert stop_reason({"round": 1, "teacher_calls": 100, "hard": 5}, cfg) == "teacher_budget"
    assert stop_reason({"round": 1, "teacher_calls": 0, "hard": 0}, cfg) == "no_hard_cases"
    assert stop_reason({"round": 1, "hard": 3, "stale_rounds": 2}, cfg) == "plateau"
    assert stop_reason({"round": 1, "hard": 0}, StopConfig(max_rounds=3, stop_when_no_hard=False)) is None
    # Before discriminate has run, "hard" is unknown: that is not "no hard cases".
    assert stop_reason({"round": 1}, cfg) is None


def _runtime(cfg: object, spent: int = 0, left: int | None = None) -> SimpleNamespace:
    """What a router receives: LangGraph's runtime whose context is the run's Runtime (its config,
    the paid calls so far and the calls the budget still allows are read)."""
    return SimpleNamespace(context=SimpleNamespace(
        cfg=cfg, budget_now=lambda: {"teacher_calls": spent, "budget_left": left}))


def test_routing() -> None:
    cfg = StopConfig(max_rounds=2)
    assert route_after_discriminate({"round": 1, "hard": 4}, _runtime(SimpleNamespace(stop=cfg))) == "generate"
    # Last round: skip generate/curate, no teacher calls on data nobody trains on.
    assert route_after_discriminate({"round": 2, "hard": 4}, _runtime(SimpleNamespace(stop=cfg))) == "decide"
    assert route_after_discriminate({"round": 1, "hard": 0}, _runtime(SimpleNamespace(stop=cfg))) == "decide"
    # The budget as spent now, from the call cache, not a figure carried in the state.
    budget = StopConfig(max_rounds=5, max_teacher_calls=100)
    assert route_after_discriminate({"round": 1, "hard": 4}, _runtime(SimpleNamespace(stop=budget), 99)) == "generate"
    assert route_after_discriminate({"round": 1, "hard": 4}, _runtime(SimpleNamespace(stop=budget), 100)) == "decide"
    # A cost budget is spent when what is left of it pays for no more call.
    money = StopConfig(max_rounds=5, max_teacher_cost=2.5)
    assert route_after_discriminate({"round": 1, "hard": 4}, _runtime(SimpleNamespace(stop=money), 90, 3)) == "generate"
    assert route_after_discriminate({"round": 1, "hard": 4}, _runtime(SimpleNamespace(stop=money), 90, 0)) == "decide"
    assert route_after_decide({"round": 2}) == "imitate"
    assert route_after_decide({"round": 2, "stop_reason": "max_rounds"}) == END


def test_graph_shape() -> None:
    from lionloop.loop.graph import build_graph, graph

    # Compiles with no runtime at all (the runtime arrives as LangGraph's context at invoke).
    assert graph.get_graph().nodes.keys() == build_graph().get_graph().nodes.keys()
    g = build_graph().get_graph()
    edges = {(e.source, e.target) for e in g.edges}
    for a, b in [("__start__", "bootstrap"), ("bootstrap", "imitate"), ("imitate", "evaluate"),
                 ("evaluate", "discriminate"), ("discriminate", "generate"), ("discriminate", "decide"),
                 ("generate", "curate"), ("curate", "decide"), ("decide", "imitate"), ("decide", "__end__"),
                 ("evaluate", "decide")]:
        assert (a, b) in edges, (a, b)


def test_last_round_is_judged_unless_switched_off(tmp_path) -> None:
    from conftest import micro_config

    on = micro_config(tmp_path)
    off = micro_config(tmp_path, judge={"last_round": False})
    assert route_after_evaluate({"round": 2}, _runtime(on)) == "discriminate"
    assert route_after_evaluate({"round": 1}, _runtime(off)) == "discriminate"
    assert route_after_evaluate({"round": 2}, _runtime(off)) == "decide"


def test_unjudged_last_round_pays_no_referee_calls(tmp_path, micro_run) -> None:
    """Same seed and config as the shared micro run, last round not judged: rounds 1 match,
    round 2 has no verdicts and no teacher calls, and the loop ends as usual."""
    from conftest import micro_config

    from lionloop.inspect.status import run_status as status
    from lionloop.loop.runner import start

    start(micro_config(tmp_path / "off", judge={"last_round": False}))
    off, ref = status(tmp_path / "off"), status(micro_run)
    assert [r["eval_accuracy"] for r in off["rounds"]] == [r["eval_accuracy"] for r in ref["rounds"]]
    assert off["rounds"][0]["teacher_calls"] == ref["rounds"][0]["teacher_calls"] > 0
    assert ref["rounds"][1]["teacher_calls"] > 0 and off["rounds"][1]["teacher_calls"] == 0
    assert off["rounds"][1]["hard"] is None and off["rounds"][1]["stop_reason"] == "max_rounds"
