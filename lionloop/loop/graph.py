"""The loop as a LangGraph StateGraph: bootstrap -> imitate -> evaluate -> discriminate ->
generate -> curate -> decide, and back to imitate until a stop condition holds.

The run's heavy objects (`lionloop.loop.runtime.Runtime`) reach the nodes as LangGraph's run
context (`context_schema`), so the graph compiles without them: `langgraph.json` points
`langgraph dev` at `graph` below.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime as GraphRuntime

from lionloop.loop import nodes
from lionloop.loop.runtime import Runtime
from lionloop.loop.selection import referee_pays
from lionloop.loop.state import LoopState, budget_spent, stop_reason


def route_after_evaluate(state: LoopState, runtime: GraphRuntime[Runtime]) -> Literal["discriminate", "decide"]:
    """With `judge.last_round: false`, the round that ends the loop anyway is not judged; nor is a
    round that starts with the teacher budget spent (it trains on what the budget bought, and the
    referee's calls could not be paid)."""
    rt = runtime.context
    cfg = rt.cfg
    if not cfg.judge.last_round and stop_reason(state, cfg.stop) == "max_rounds":
        return "decide"
    if referee_pays(cfg) and budget_spent({**state, **rt.budget_now()}, cfg.stop):
        return "decide"
    return "discriminate"


def route_after_discriminate(state: LoopState, runtime: GraphRuntime[Runtime]) -> Literal["generate", "decide"]:
    """Skip generate/curate when the loop ends this round anyway: no data nobody trains on.

    The teacher budget is read as spent now (the call cache), not as of the last decide.
    """
    rt = runtime.context
    now = {**state, **rt.budget_now()}
    return "decide" if stop_reason(now, rt.cfg.stop) else "generate"


def route_after_decide(state: LoopState) -> Literal["imitate", "__end__"]:
    return END if state.get("stop_reason") else "imitate"


def build_graph(checkpointer: Any = None) -> Any:
    """Compile the loop; invoke it with `context=Runtime(...)`. With a checkpointer it resumes
    where it stopped."""
    g = StateGraph(LoopState, context_schema=Runtime)
    g.add_node("bootstrap", nodes.bootstrap)
    g.add_node("imitate", nodes.imitate)
    g.add_node("evaluate", nodes.evaluate)
    g.add_node("discriminate", nodes.discriminate)
    g.add_node("generate", nodes.generate)
    g.add_node("curate", nodes.curate)
    g.add_node("decide", nodes.decide)
    g.add_edge(START, "bootstrap")
    g.add_edge("bootstrap", "imitate")
    g.add_edge("imitate", "evaluate")
    g.add_conditional_edges("evaluate", route_after_evaluate, ["discriminate", "decide"])
    g.add_conditional_edges("discriminate", route_after_discriminate, ["generate", "decide"])
    g.add_edge("generate", "curate")
    g.add_edge("curate", "decide")
    g.add_conditional_edges("decide", route_after_decide, ["imitate", END])
    return g.compile(checkpointer=checkpointer)


# For `langgraph dev` (langgraph.json): the compiled loop, without a runtime until invoked.
graph = build_graph()
