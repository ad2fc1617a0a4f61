"""The report's Plotly figures, one function per chart, each taking `report.collect()`'s data.

A function returns None when the run has nothing to plot yet (the page then says so).
"""

from __future__ import annotations

from typing import Any

HARD, EASY, GREY, AMBER = "#d62728", "#2ca02c", "#9e9e9e", "#ff9f1c"
STATUS_COLOURS = {"hard": HARD, "easy": EASY, "not judged yet": AMBER, "eval (held out)": GREY}
HEIGHT = 340


def _layout(fig: Any, **kw: Any) -> Any:
    fig.update_layout(
        template="plotly_white", height=kw.pop("height", HEIGHT), margin={"l": 55, "r": 20, "t": 20, "b": 45},
        legend={"orientation": "h", "y": -0.2, "x": 0}, hovermode=kw.pop("hovermode", "x unified"),
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}, **kw,
    )
    return fig


def _round_axis(fig: Any, rounds: list[int], **kw: Any) -> None:
    fig.update_xaxes(title_text="round", tickmode="array", tickvals=rounds,
                     ticktext=[("0 (boot)" if r == 0 else str(r)) for r in rounds], **kw)


def metric_name(data: dict[str, Any]) -> str:
    """The run's headline held-out metric ('accuracy' for runs that do not name theirs)."""
    return next((r["eval_metric"] for r in data["stats"]["rounds"] if r.get("eval_metric")), "accuracy")


def accuracy_figure(data: dict[str, Any]) -> Any:
    """The headline held-out figure by round, overall and per task; with both scorings, the
    referee's relative score as a dashed line beside the verifier's accuracy."""
    import plotly.graph_objects as go

    rounds = [r for r in data["rounds"] if data["metrics"][r].get("eval", {}).get("overall") is not None]
    if not rounds:
        return None
    ev = [data["metrics"][r]["eval"] for r in rounds]
    metric = metric_name(data)
    fig = go.Figure()
    skills = sorted({s for e in ev for s in e.get("per_skill", {})})
    for s in skills:
        fig.add_trace(go.Scatter(x=rounds, y=[e.get("per_skill", {}).get(s) for e in ev], name=s,
                                 mode="lines+markers", line={"width": 1.5}, marker={"size": 5}, opacity=0.8))
    fig.add_trace(go.Scatter(x=rounds, y=[e["overall"] for e in ev], name="overall", mode="lines+markers",
                             line={"width": 4, "color": "#222"}, marker={"size": 8}))
    top = max([1.0] + [e["overall"] for e in ev])
    if metric == "accuracy" and any(e.get("referee") for e in ev):
        rel = [(e.get("referee") or {}).get("overall") for e in ev]
        fig.add_trace(go.Scatter(x=rounds, y=rel, name="relative score (referee)", mode="lines+markers",
                                 line={"width": 3, "color": "#7f3fbf", "dash": "dash"}, marker={"size": 7}))
        top = max([top] + [x for x in rel if x is not None])
    _round_axis(fig, rounds)
    fig.update_yaxes(title_text=metric, tickformat=".0%", range=[0, top * 1.04])
    return _layout(fig)


def agreement_figure(data: dict[str, Any]) -> Any:
    """judge.mode both: how the referee's hard/easy calls agree with the verifier, by round."""
    import plotly.graph_objects as go

    rows = [r for r in data["stats"]["rounds"] if r.get("agreement") and r["agreement"].get("n")]
    if not rows:
        return None
    x = [r["round"] for r in rows]
    fig = go.Figure()
    for key, name, colour in (("agreement", "agreement", "#222"), ("precision", "precision of 'hard'", HARD),
                              ("recall", "recall of 'hard'", "#1f77b4")):
        fig.add_trace(go.Scatter(x=x, y=[r["agreement"].get(key) for r in rows], name=name, mode="lines+markers",
                                 line={"width": 3 if key == "agreement" else 2, "color": colour},
                                 customdata=[[r["agreement"]["n"]] for r in rows],
                                 hovertemplate="%{y:.1%} of %{customdata[0]} calls"))
    _round_axis(fig, x)
    fig.update_yaxes(title_text="share", tickformat=".0%", range=[0, 1.04])
    return _layout(fig)


def referee_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = [r for r in data["stats"]["rounds"] if r["judged"] or r["unjudged"]]
    if not rows:
        return None
    x = [r["round"] for r in rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=x, y=[r["hard"] for r in rows], name="hard", marker_color=HARD))
    fig.add_trace(go.Bar(x=x, y=[r["easy"] for r in rows], name="easy", marker_color=EASY, opacity=0.75))
    if any(r["unjudged"] for r in rows):
        fig.add_trace(go.Bar(x=x, y=[r["unjudged"] for r in rows], name="unjudged", marker_color=GREY))
    fig.add_trace(go.Scatter(x=x, y=[r["hard_ratio"] for r in rows], name="hard ratio", mode="lines+markers",
                             line={"color": "#222", "width": 3}), secondary_y=True)
    fig.update_layout(barmode="stack")
    _round_axis(fig, x)
    fig.update_yaxes(title_text="cases judged", secondary_y=False)
    top = max((r["hard_ratio"] or 0) for r in rows)
    fig.update_yaxes(title_text="hard ratio", tickformat=".0%", range=[0, top * 1.12 + 0.02], tickmode="linear",
                     tick0=0, dtick=0.05 if top <= 0.25 else 0.1 if top <= 0.5 else 0.2,
                     secondary_y=True, showgrid=False)
    return _layout(fig, legend_traceorder="normal")


def pool_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    if not data["pool_by_origin"]:
        return None
    fig = go.Figure()
    origins = sorted(data["pool_by_origin"], key=lambda o: (o != "seed", o))  # seeds at the bottom
    for origin, colour in zip(origins, _origin_colours(origins), strict=True):
        fig.add_trace(go.Bar(x=data["rounds"], y=data["pool_by_origin"][origin], name=origin, marker_color=colour))
    fig.update_layout(barmode="stack")
    _round_axis(fig, data["rounds"])
    fig.update_yaxes(title_text="instructions (train + cache)")
    return _layout(fig, legend_traceorder="normal")


def _origin_colours(origins: list[str]) -> list[str]:
    from plotly.colors import qualitative

    palette = iter(qualitative.Plotly)
    return ["#98a2b3" if o == "seed" else next(palette) for o in origins]


def curate_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    rows = [r for r in data["stats"]["rounds"] if r["candidates"]]
    if not rows:
        return None
    x = [r["round"] for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=[r["accepted"] for r in rows], name="accepted", marker_color=EASY))
    reasons = sorted({k for r in rows for k in r["rejected"]})
    palette = ["#f79009", "#d62728", "#7a5af8", "#667085", "#ee46bc", "#0ba5ec"]
    for k, reason in enumerate(reasons):
        fig.add_trace(go.Bar(x=x, y=[r["rejected"].get(reason, 0) for r in rows], name=f"rejected: {reason}",
                             marker_color=palette[k % len(palette)]))
    fig.update_layout(barmode="stack")
    _round_axis(fig, x)
    fig.update_yaxes(title_text="candidates")
    return _layout(fig, legend_traceorder="normal")


def teacher_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rounds = [r for r in data["rounds"] if data["metrics"][r].get("teacher")]
    if not rounds:
        return None
    per = {r: data["metrics"][r]["teacher"] for r in rounds}
    stages = list(dict.fromkeys(s for r in rounds for s in per[r]))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for s in stages:
        fig.add_trace(go.Bar(x=rounds, y=[per[r].get(s, {}).get("calls", 0) for r in rounds], name=f"calls: {s}"))
    fig.add_trace(go.Scatter(x=rounds, y=[sum(v.get("hits", 0) for v in per[r].values()) for r in rounds],
                             name="cache hits", mode="lines+markers", line={"color": "#222", "dash": "dot"}))
    tokens = [sum(v.get("prompt_tokens", 0) + v.get("completion_tokens", 0) for v in per[r].values()) for r in rounds]
    if any(tokens):
        fig.add_trace(go.Scatter(x=rounds, y=tokens, name="tokens (prompt + completion)", mode="lines+markers",
                                 line={"color": "#7b3294", "width": 3}), secondary_y=True)
        fig.update_yaxes(title_text="tokens", rangemode="tozero", secondary_y=True, showgrid=False)
    else:
        fig.update_yaxes(showticklabels=False, showgrid=False, secondary_y=True)
        fig.add_annotation(text="no token usage reported by this teacher", xref="paper", yref="paper",
                           x=1, y=1.02, xanchor="right", yanchor="bottom", showarrow=False,
                           font={"size": 11, "color": "#667085"})
    fig.update_layout(barmode="stack")
    _round_axis(fig, rounds)
    fig.update_yaxes(title_text="calls", secondary_y=False)
    return _layout(fig, legend_traceorder="normal")


def training_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    rounds = [r for r in data["rounds"] if data["metrics"][r].get("train", {}).get("train_loss") is not None]
    if not rounds:
        return None
    train = [data["metrics"][r]["train"] for r in rounds]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=rounds, y=[t["train_loss"] for t in train], name="mean loss of the round",
                             mode="lines+markers", line={"width": 3, "color": "#222"}))
    fig.add_trace(go.Scatter(x=rounds, y=[t.get("last_loss") for t in train], name="last logged loss",
                             mode="lines+markers", line={"dash": "dot", "color": "#7b3294"}))
    _round_axis(fig, rounds)
    fig.update_yaxes(title_text="training loss", rangemode="tozero")
    return _layout(fig)


def replies_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    replies = data["stats"].get("teacher_replies") or {}
    if not replies:
        return None
    kinds = sorted(replies)
    fig = go.Figure()
    for key, name, colour in (("parsed", "parsed", EASY), ("rejected", "read, but rejected by its check", AMBER),
                              ("parse_failures", "unreadable (after re-asks)", HARD),
                              ("failures", "other failures (transport, budget)", GREY)):
        fig.add_trace(go.Bar(x=kinds, y=[replies[k].get(key, 0) for k in kinds], name=name, marker_color=colour))
    labels = [f"{replies[k]['parse_failure_rate']:.0%} unreadable" if replies[k].get("parse_failure_rate") is not None
              else "" for k in kinds]
    fig.add_trace(go.Scatter(x=kinds, y=[replies[k].get("requests", 0) for k in kinds], text=labels,
                             mode="text", textposition="top center", showlegend=False, hoverinfo="skip"))
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text="requests")
    return _layout(fig, hovermode="closest")


def gap_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    gaps = data["gaps"]
    if not gaps:
        return None
    rounds = list(gaps)
    colours = sample_colorscale("Viridis", [i / max(1, len(rounds) - 1) * 0.85 for i in range(len(rounds))])
    fig = go.Figure()
    for r, c in zip(rounds, colours, strict=True):
        same = data["identical"].get(r, 0)
        fig.add_trace(go.Histogram(
            x=gaps[r], name=f"round {r}: {len(gaps[r])} scored" + (f", {same} identical" if same else ""),
            xbins={"start": -10.5, "end": 10.5, "size": 1}, marker_color=c,
        ))
    fig.update_layout(barmode="group", bargap=0.15)
    fig.update_xaxes(title_text="score gap (teacher - student)", dtick=1)
    fig.update_yaxes(title_text="cases")
    return _layout(fig)


def map_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale
    from plotly.subplots import make_subplots

    pts = data["map"]["points"]
    if not pts:
        return None
    method = {"tsne": "t-SNE", "pca": "PCA"}[data["map"]["method"]]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.04,
                        subplot_titles=(f"by round entered ({method})", f"by latest verdict ({method})"))
    hover = "%{customdata[0]}<br>%{customdata[1]}<br>task %{customdata[2]} · %{customdata[3]} · %{customdata[4]}<extra></extra>"

    def trace(sel: list[dict[str, Any]], name: str, colour: str, legend: str, size: int = 5) -> Any:
        return go.Scatter(
            x=[p["x"] for p in sel], y=[p["y"] for p in sel], mode="markers", name=name, legend=legend,
            marker={"size": size, "color": colour, "opacity": 0.75, "line": {"width": 0}},
            customdata=[[p["id"], p["text"][:120], p["task"], p["origin"], p["status"]] for p in sel],
            hovertemplate=hover,
        )

    train = [p for p in pts if p["split"] != "eval"]
    held = [p for p in pts if p["split"] == "eval"]
    rounds = sorted({p["round"] for p in train})
    colours = sample_colorscale("Viridis", [i / max(1, len(rounds) - 1) * 0.9 for i in range(len(rounds))])
    if held:
        fig.add_trace(trace(held, "eval (held out)", GREY, "legend", 4), row=1, col=1)
    for r, c in zip(rounds, colours, strict=True):
        fig.add_trace(trace([p for p in train if p["round"] == r], "seeds" if r == 0 else f"round {r}", c, "legend"),
                      row=1, col=1)
    for status, c in STATUS_COLOURS.items():
        sel = [p for p in pts if p["status"] == status]
        if sel:
            fig.add_trace(trace(sel, status, c, "legend2", 4 if status.startswith("eval") else 5), row=1, col=2)
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False)
    _layout(fig, height=540, hovermode="closest")
    fig.update_layout(
        legend={"orientation": "h", "x": 0, "y": -0.04, "xanchor": "left", "yanchor": "top"},
        legend2={"orientation": "h", "x": 0.52, "y": -0.04, "xanchor": "left", "yanchor": "top"},
        margin={"l": 10, "r": 10, "t": 30, "b": 40},
    )
    return fig


def allocation_figure(data: dict[str, Any]) -> Any:
    """New data per group (task or cluster) and round as stacked bars; each group's learning
    progress, the signal the allocation followed, as lines (None for a run without allocation)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    rounds = [r for r in data["rounds"] if data["metrics"][r].get("allocation")]
    if not rounds:
        return None
    alloc = {r: data["metrics"][r]["allocation"] for r in rounds}
    bought = {r: data["metrics"][r].get("curate", {}).get("by_group", {}) for r in rounds}
    groups = sorted({g for r in rounds for g in alloc[r].get("groups", {})} | {g for r in rounds for g in bought[r]})
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for k, g in enumerate(groups):
        colour = qualitative.Plotly[k % len(qualitative.Plotly)]
        figs = [alloc[r].get("groups", {}).get(g, {}) for r in rounds]
        fig.add_trace(go.Bar(
            x=rounds, y=[bought[r].get(g, 0) for r in rounds], name=g, marker_color=colour, legendgroup=g,
            customdata=[[f"{100 * (f.get('share') or 0):.0f}%", "-" if f.get("acc") is None else f"{100 * f['acc']:.0f}%"]
                        for f in figs],
            hovertemplate=f"{g}: %{{y}} new (share %{{customdata[0]}}, cache acc %{{customdata[1]}})<extra></extra>"))
        lp = [f.get("progress") for f in figs]
        if any(x is not None for x in lp):
            fig.add_trace(go.Scatter(x=rounds, y=lp, name=f"{g} progress", mode="lines+markers", legendgroup=g,
                                     showlegend=False, line={"color": colour, "dash": "dot"}), secondary_y=True)
    fig.update_layout(barmode="stack")
    _round_axis(fig, rounds)
    fig.update_yaxes(title_text="new instructions accepted", secondary_y=False)
    fig.update_yaxes(title_text="progress (points / 100 examples)", rangemode="tozero", showgrid=False, secondary_y=True)
    return _layout(fig, legend_traceorder="normal")
