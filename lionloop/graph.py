"""The loop as a LangGraph StateGraph: bootstrap -> imitate -> evaluate -> discriminate ->
generate -> curate -> decide, and back to imitate until a stop condition holds."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph

from lionloop import nodes
from lionloop.context import Runtime
from lionloop.state import LoopState, stop_reason

STAGES = ("bootstrap", "imitate", "evaluate", "discriminate", "generate", "curate", "decide")


def route_after_evaluate(state: LoopState, *, cfg: Any) -> Literal["discriminate", "decide"]:
    """With `judge.last_round: false`, the round that ends the loop anyway is not judged."""
    if not cfg.judge.last_round and stop_reason(state, cfg.stop) == "max_rounds":
        return "decide"
    return "discriminate"


def route_after_discriminate(state: LoopState, *, stop: Any) -> Literal["generate", "decide"]:
    """Skip generate/curate when the loop ends this round anyway: no data nobody trains on."""
    return "decide" if stop_reason(state, stop) else "generate"


def route_after_decide(state: LoopState) -> Literal["imitate", "__end__"]:
    return END if state.get("stop_reason") else "imitate"


def build_graph(rt: Runtime, checkpointer: Any = None) -> Any:
    """Compile the loop for one runtime; with a checkpointer it resumes where it stopped."""
    g = StateGraph(LoopState)
    g.add_node("bootstrap", partial(nodes.bootstrap, rt=rt))
    g.add_node("imitate", partial(nodes.imitate, rt=rt))
    g.add_node("evaluate", partial(nodes.evaluate, rt=rt))
    g.add_node("discriminate", partial(nodes.discriminate, rt=rt))
    g.add_node("generate", partial(nodes.generate_node, rt=rt))
    g.add_node("curate", partial(nodes.curate, rt=rt))
    g.add_node("decide", partial(nodes.decide, rt=rt))
    g.add_edge(START, "bootstrap")
    g.add_edge("bootstrap", "imitate")
    g.add_edge("imitate", "evaluate")
    g.add_conditional_edges("evaluate", partial(route_after_evaluate, cfg=rt.cfg), ["discriminate", "decide"])
    g.add_conditional_edges(
        "discriminate", partial(route_after_discriminate, stop=rt.cfg.stop), ["generate", "decide"]
    )
    g.add_edge("generate", "curate")
    g.add_edge("curate", "decide")
    g.add_conditional_edges("decide", route_after_decide, ["imitate", END])
    return g.compile(checkpointer=checkpointer)


def make_graph(config: dict[str, Any] | None = None) -> Any:
    """Graph factory for `langgraph dev` (see langgraph.json): the offline demo's loop."""
    import tempfile

    from lionloop.runner import demo_config

    cfg = demo_config()
    rt = Runtime(cfg=cfg, run_dir=tempfile.mkdtemp(prefix="lionloop-studio-"), run_id="studio")
    return build_graph(rt)
