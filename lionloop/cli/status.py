"""`lionloop status` as people read it: where the run is (running, stopped, crashed, failed,
finished), then tables: rounds, held-out score per task, bootstrap, pool. Everything comes from the
one status builder (`lionloop.inspect.status`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich import box
from rich.columns import Columns
from rich.console import Console
from rich.table import Table

from lionloop.inspect.fmt import pct
from lionloop.loop.scoring import wilson_interval


def _clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "?"


def _ago(t: float | None) -> str:
    if not t:
        return ""
    s = max(0, time.time() - t)
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def where(state: dict[str, Any]) -> str:
    """'round 2 · generate' (bootstrap for round 0), or '' when no stage is open."""
    if state.get("stage") is None:
        return ""
    return f"{'bootstrap' if state.get('round') == 0 else 'round ' + str(state.get('round'))} · {state['stage']}"


def state_line(state: dict[str, Any] | None) -> str:
    """One line: what the run is doing, or how it ended and what to do next."""
    if not state:
        return ""
    status, at = state["status"], where(state)
    if status == "running":
        line = f"[bold green]running[/] (pid {state.get('pid', '?')})"
        if at:
            line += f": {at} since {_clock(state.get('since'))} ({_ago(state.get('since'))})"
        p = state.get("progress")
        if p:
            of = f"/{p['total']}" if p.get("total") is not None else ""
            line += f" · {p['task']} {p['done']}{of}" + (f", {p['note']}" if p.get("note") else "")
            line += f" (as of {_ago(p.get('t'))})"
        return line
    if status == "finished":
        return f"[bold]finished[/]: stop {state.get('stop_reason')} after round {state.get('round')}"
    if status == "new":
        return f"not started · start it with: {state['resume']}"
    cont = f" · continue with: {state['resume']}"
    inside = "" if not at else f" after {at} (its work saved)" if state.get("done") else (
        f" in {at} (started {_clock(state.get('since'))})")
    if status == "stopped":
        return f"[bold yellow]stopped[/]{inside}, interrupted at {_clock(state.get('at'))}{cont}"
    if status == "failed":
        return f"[bold red]failed[/]{inside}: {state.get('message', '')}{cont}"
    return f"[bold red]crashed[/]{inside}: no process holds the run (killed?){cont}"


def _table(title: str | None = None) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)


def interval(acc: float | None, n: int | None) -> str:
    if acc is None or not n:
        return "-"
    lo, hi = wilson_interval(acc, n)
    return f"{100 * lo:.0f}-{100 * hi:.0f}"


def round_table(st: dict[str, Any]) -> Table:
    """Per round: the headline held-out figure, referee calls, data, teacher calls, seconds."""
    metric = metric_of(st)
    head = "eval acc" if metric == "accuracy" else "rel. score"
    # Accuracy on n held-out instructions: its 95% interval beside it, so a move between rounds
    # smaller than the interval is not over-read (50 instructions: 34% is 22-48%).
    ns = sorted({r["eval_n"] for r in st["rounds"] if r.get("eval_n")})
    ci = metric == "accuracy" and bool(ns)
    t = Table(title=f"run {st['run_id']}" + (f" · eval acc on {'/'.join(map(str, ns))} held-out instructions" if ci else ""))
    for col in ["round", head, *(["95% int."] if ci else []), "hard", "easy", "cand.", "new", "dedup rej.", "calls", "hits", "s"]:
        t.add_column(col, justify="right")
    for r in st["rounds"]:
        t.add_row(
            str(r["round"]),
            pct(r.get("eval_score")),
            *([interval(r.get("eval_accuracy"), r.get("eval_n"))] if ci else []),
            str(r["hard"] if r["hard"] is not None else "-"),
            str(r["easy"] if r["easy"] is not None else "-"),
            str(r["candidates"]),
            str(r["accepted"]),
            str(sum(v for k, v in r["dedup_rejected"].items() if k.startswith("dup_"))),
            str(r["teacher_calls"]),
            str(r["cache_hits"]),
            f"{sum(r['seconds'].values()):.0f}",
        )
    return t


def scores_table(st: dict[str, Any]) -> Table | None:
    """Per round, when the run measured them: accuracy by verifier, Lion's relative score and
    win/tie/loss by referee, and how the referee's hard/easy calls agree with the verifier."""
    rounds = st["rounds"]
    rel = any(r.get("eval_relative") for r in rounds)
    agree = any(r.get("agreement") for r in rounds)
    if not rel and not agree:
        return None
    t = Table(title="held-out scores and the referee audited by the verifier")
    # Eval answers the referee left unjudged (its calls failed): a '-' score says why only with them.
    unjudged = rel and any((r.get("eval_relative") or {}).get("unjudged") for r in rounds)
    cols = ["round", "eval acc"] + (["rel. score", "W/T/L"] if rel else []) + (["unjudged"] if unjudged else [])
    cols += ["agree", "prec. hard", "recall hard", "calls audited"] if agree else []
    for col in cols:
        t.add_column(col, justify="right")
    for r in rounds:
        cells = [str(r["round"]), pct(r.get("eval_accuracy"))]
        if rel:
            ref = r.get("eval_relative") or {}
            cells += [pct(ref.get("overall")), f"{ref['wins']}/{ref['ties']}/{ref['losses']}" if ref else "-"]
            cells += [str(ref.get("unjudged", "-"))] if unjudged else []
        if agree:
            a = r.get("agreement") or {}
            cells += [pct(a.get("agreement")), pct(a.get("precision")), pct(a.get("recall")), str(a.get("n", "-"))]
        t.add_row(*cells)
    return t


def metric_of(st: dict[str, Any]) -> str:
    """The run's headline metric ('accuracy' for runs that do not name theirs)."""
    return next((r["eval_metric"] for r in st["rounds"] if r.get("eval_metric")), "accuracy")


def task_table(st: dict[str, Any]) -> Table:
    """The headline held-out figure per skill/task (rows) by round (columns)."""
    metric = metric_of(st)
    skills = sorted({k for r in st["rounds"] for k in r["eval_per_skill"]})
    t = Table(title=f"eval {metric} per skill" if metric == "accuracy" else f"eval {metric} per task")
    t.add_column("skill" if metric == "accuracy" else "task")
    for r in st["rounds"]:
        t.add_column(f"r{r['round']}", justify="right")
    for sk in skills:
        t.add_row(sk or "-", *[f"{r['eval_per_skill'][sk]:.0%}" if r["eval_per_skill"].get(sk) is not None else "-"
                               for r in st["rounds"]])
    return t


def bootstrap_lines(st: dict[str, Any]) -> list[str]:
    """What bootstrap loaded and what it had to leave out (named)."""
    b = st.get("bootstrap") or {}
    if "seeds" not in b:
        return []
    lines = [f"bootstrap: {b['seeds']} seeds, {b['cache']} cache, {b['eval']} eval rows"]
    data = b.get("data") or {}
    if data:
        dup = sum((data.get("duplicates") or {}).values())
        bits = [f"{dup} duplicate rows dropped" if dup else "",
                f"{data['overlap_removed']} seed rows also in the eval set removed" if data.get("overlap_removed") else "",
                f"{data['held_out']} rows held out for eval" if data.get("held_out") else "",
                f"{data['multi_turn']} chat rows cut to their first exchange" if data.get("multi_turn") else ""]
        bits = [x for x in bits if x]
        lines.append(f"data: {data.get('train')}" + (f" · eval: {data.get('eval')}" if data.get("eval") else "")
                     + (f" · {'; '.join(bits)}" if bits else ""))
    dropped = b.get("dropped") or []
    for split, what in (("seed", "seed"), ("eval", "eval")):
        mine = [d for d in dropped if (d["split"] == "eval") == (split == "eval")]
        n = b.get("eval_failures" if split == "eval" else "seed_failures") or len(mine)
        if n:
            names = "; ".join(f"{d['text'][:40]!r} ({d['reason'][:40]})" for d in mine[:3])
            lines.append(f"[yellow]{n} {what} rows got no teacher answer and are not in the pool[/]: {names}"
                         + (" ..." if n > 3 else ""))
    return lines


def pool_tables(st: dict[str, Any]) -> Columns:
    pool = st["pool"]
    out = []
    for key, title in (("by_split", "split"), ("by_origin", "origin")):
        t = _table()
        t.add_column(title)
        t.add_column("instructions", justify="right")
        for k, v in pool[key].items():
            t.add_row(str(k), str(v))
        out.append(t)
    t = _table()
    t.add_column("training rows", justify="right")
    t.add_row(str(pool["examples"]))
    out.append(t)
    return Columns(out)


def allocation_table(st: dict[str, Any]) -> Table | None:
    """Where each round's new data went, per task or cluster: accepted instructions, the
    allocation's share and the group's learning progress (None for a run without an allocation)."""
    rounds = [r for r in st["rounds"] if r.get("allocation") or r.get("accepted_by_group")]
    if not any(r.get("allocation") for r in rounds):
        return None
    by = next(r["allocation"]["group_by"] for r in rounds if r.get("allocation"))
    groups = sorted({g for r in rounds for g in (r.get("allocation") or {}).get("groups", {})}
                    | {g for r in rounds for g in r.get("accepted_by_group") or {}})
    t = _table(f"new data per {by}: accepted (share · progress, points per 100 examples)")
    t.add_column(by)
    for r in rounds:
        t.add_column(f"r{r['round']}", justify="right")
    for g in groups:
        cells = []
        for r in rounds:
            a = ((r.get("allocation") or {}).get("groups") or {}).get(g, {})
            n = (r.get("accepted_by_group") or {}).get(g, 0)
            lp = a.get("progress")
            why = f" ({a['share']:.0%}" + (f" · {lp:.1f}" if lp is not None else "") + ")" if "share" in a else ""
            cells.append(f"{n}{why}")
        t.add_row(g, *cells)
    return t


def teacher_lines(st: dict[str, Any]) -> list[str]:
    """What the teacher calls cost the run so far, against the budget where there is one."""
    paid, budget = st.get("teacher_calls") or {}, st.get("budget") or {}
    if not paid.get("paid"):
        return []
    calls, cost = budget.get("calls"), budget.get("cost")
    line = f"teacher: {paid['paid']:,}{f' of {calls:,}' if calls is not None else ''} paid calls"
    if paid.get("prompt_tokens") or paid.get("completion_tokens"):  # the oracle counts none
        line += f", {paid['prompt_tokens']:,} + {paid['completion_tokens']:,} tokens"
    if paid.get("cost") or cost is not None:
        line += f", cost {paid['cost']:,.2f}{f' of {cost:,.2f}' if cost is not None else ''}"
    return [line]


def print_status(console: Console, st: dict[str, Any], run_dir: Path, with_state: bool = True) -> None:
    """Everything `lionloop status` shows (and the summary after run, resume and demo)."""
    if with_state and st.get("state"):
        console.print(state_line(st["state"]))
    console.print(round_table(st))
    scores = scores_table(st)
    if scores is not None:
        console.print(scores)
    if any(r["eval_per_skill"] for r in st["rounds"]):
        console.print(task_table(st))
    alloc = allocation_table(st)
    if alloc is not None:
        console.print(alloc)
    metric = metric_of(st)
    rounds = [r for r in st["rounds"] if r.get("eval_score") is not None]
    if len(rounds) >= 2:
        console.print(f"eval {metric}: round {rounds[0]['round']} {rounds[0]['eval_score']:.1%} -> "
                      f"round {rounds[-1]['round']} {rounds[-1]['eval_score']:.1%}")
    for line in bootstrap_lines(st) + teacher_lines(st):
        console.print(line, highlight=False)
    console.print("pool:")
    console.print(pool_tables(st))
    console.print(f"run directory: {run_dir}  (lionloop status {run_dir})")
