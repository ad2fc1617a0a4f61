"""`lionloop pool ...`: inspect a run's instruction pool (read-only, safe while the run writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.columns import Columns
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from lionloop.cli.common import console, guard
from lionloop.inspect.fmt import gap, pct

pool_app = typer.Typer(no_args_is_help=True, help="Inspect a run's instruction pool (read-only).")

RunDir = Annotated[Path, typer.Argument(help="Run directory.", show_default=False)]
Ident = Annotated[str, typer.Argument(help="Instruction id, or an unambiguous prefix of one.", show_default=False)]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _verdict(hard: bool | None, diff: float | None, judged: bool = True) -> Text:
    if not judged:
        return Text("-", style="dim")
    gap = " (same)" if diff is None and hard is False else "" if diff is None else f" {diff:+g}"
    if hard is None:
        return Text("unjudged", style="yellow")
    return Text(("hard" if hard else "easy") + gap, style="red" if hard else "green")


def _verdicts_line(verdicts: list[dict[str, Any]]) -> Text:
    t = Text()
    for v in verdicts:
        t.append(f" r{v['round']}:")
        t.append_text(_verdict(v["hard"], v["diff"]))
    return t or Text(" never judged", style="dim")


def _table(title: str | None = None) -> Table:
    """Compact tables: they stay readable in an 80-column terminal."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                 collapse_padding=True)


def _count_table(key: str, counts: dict[str, Any]) -> Table:
    t = _table()
    t.add_column(key)
    t.add_column("count", justify="right")
    for k, v in counts.items():
        t.add_row(str(k), str(v))
    return t




# -- stats --------------------------------------------------------------------------------------


@pool_app.command("stats")
def stats(run_dir: RunDir, as_json: AsJson = False) -> None:
    """Counts by round, split, origin and task; hard/easy per round; rejections; teacher calls."""
    from lionloop.inspect.views import pool_stats

    st = guard(pool_stats, run_dir)
    if as_json:
        _echo_json(st)
        return
    t = _table(f"pool of {run_dir}: {st['instructions']} instructions")
    metric = next((r["eval_metric"] for r in st["rounds"] if r.get("eval_metric")), "accuracy")
    for col in ("round", "new", "pool", "judged", "hard", "easy", "hard %",
                "eval acc" if metric == "accuracy" else "rel. score", "cand.", "acc.", "rej.", "calls"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in st["rounds"]:
        t.add_row(
            "boot" if r["round"] == 0 else str(r["round"]), str(r["born"]), str(r["pool_size"]),
            str(r["judged"]), str(r["hard"]), str(r["easy"]), pct(r["hard_ratio"]), pct(r["eval_score"]),
            str(r["candidates"]), str(r["accepted"]), str(sum(r["rejected"].values())), str(r["teacher_calls"]),
        )
    console.print(t)
    console.print(Columns([
        _count_table(title, st[key])
        for key, title in (("by_split", "split"), ("by_origin", "origin*"), ("by_task", "task*"),
                           ("examples_by_kind", "row kind"), ("rejections", "rejected because"))
        if st[key]
    ]))
    console.print(Text("new/pool: instructions born in the round / in the train+cache pool after it; eval: held-out "
                       f"{metric}; cand./acc./rej.: generated candidates, accepted, rejected; calls: paid teacher "
                       "calls; * train and cache only", style="dim"))
    tt = _table("teacher")
    tt.add_column("stage")
    keys = [k for k, v in st["teacher"].items() if v or k in ("calls", "hits", "failures")]
    for k in keys:
        tt.add_column({"prompt_tokens": "prompt tok.", "completion_tokens": "compl. tok."}.get(k, k), justify="right")

    def cell(k: str, v: float) -> str:
        return f"{v:.4g}" if k == "cost" else str(v)

    for stage, v in st["teacher_by_stage"].items():
        tt.add_row(stage, *[cell(k, v.get(k, 0)) for k in keys])
    tt.add_row(Text("total", style="bold"), *[cell(k, st["teacher"][k]) for k in keys])
    console.print(tt)


# -- list ---------------------------------------------------------------------------------------


@pool_app.command("list")
def list_(
    run_dir: RunDir,
    round: Annotated[int | None, typer.Option("--round", "-r", help="Only instructions born in this round (0 = seeds).")] = None,
    origin: Annotated[str | None, typer.Option(help="Only this origin: seed or a generator name.")] = None,
    split: Annotated[str | None, typer.Option(help="Only this split: train, cache or eval.")] = None,
    hard: Annotated[bool | None, typer.Option("--hard/--easy", help="Only those whose latest verdict is hard (or easy).", show_default=False)] = None,
    task: Annotated[str | None, typer.Option(help="Only this task / skill.")] = None,
    judged: Annotated[int | None, typer.Option(help="Use verdicts up to this round (default: all).")] = None,
    sort: Annotated[str, typer.Option(help="gap (largest teacher-student score gap first), round or id.")] = "gap",
    limit: Annotated[int, typer.Option("--limit", "-n", help="Rows to show (0 = all).")] = 50,
    as_json: AsJson = False,
) -> None:
    """Instructions with their latest verdict, filtered, sorted by score gap by default."""
    from lionloop.inspect.views import list_instructions

    res = guard(list_instructions, run_dir, round=round, origin=origin, split=split, hard=hard, task=task,
                 judged=judged, sort=sort, limit=limit or None)
    if as_json:
        _echo_json(res)
        return
    t = _table(f"{res['shown']} of {res['total']} instructions")
    for col, kw in (("id", {"no_wrap": True}), ("instruction", {"overflow": "fold", "min_width": 10}),
                    ("task", {}), ("origin", {}), ("born", {"justify": "right"}), ("split", {}),
                    ("verdict", {"no_wrap": True}), ("hard in", {"justify": "right", "no_wrap": True})):
        t.add_column(col, **kw)
    for r in res["rows"]:
        text = r["text"] + (f"\n{r['input']}" if r["input"] else "")
        t.add_row(
            r["id"][:12], Text(text), r["task"], r["origin"], str(r["round_born"]), r["split"],
            _verdict(r["hard"], r["diff"], r["verdict_round"] is not None)
            + Text(f" r{r['verdict_round']}" if r["verdict_round"] is not None else "", style="dim"),
            f"{r['times_hard']}/{r['times_judged']}",
        )
    console.print(t)


# -- show ---------------------------------------------------------------------------------------


@pool_app.command("show")
def show(run_dir: RunDir, ident: Ident, as_json: AsJson = False) -> None:
    """One instruction: its text, every teacher and student answer by round, every verdict."""
    from lionloop.inspect.views import show_instruction

    d = guard(show_instruction, run_dir, ident)
    if as_json:
        _echo_json(d)
        return
    ins = d["instruction"]
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("id", ins["id"])
    head.add_row("instruction", Text(ins["text"]))
    if ins["input"]:
        head.add_row("input", Text(ins["input"]))
    head.add_row("task", ins["task"])
    head.add_row("origin", f"{ins['origin']}, born in round {ins['round_born']}, split {ins['split']}")
    if d["parent"]:
        p = d["parent"]
        head.add_row("parent", Text(f"{p['id']}  {p.get('text', '(not in the pool)')}"))
    if d["children"]:
        head.add_row("children", Text("\n".join(f"{c['id']}  {c['text']} (r{c['round_born']})" for c in d["children"])))
    if ins["meta"]:
        head.add_row("meta", Text(json.dumps(ins["meta"], ensure_ascii=False)))
    for c in d["candidates"]:
        head.add_row("candidate", f"round {c['round']} by {c['generator']}: {c['status']}"
                     + (f" ({c['reason']})" if c["reason"] else ""))
    console.print(head)
    verdicts = {v["round"]: v for v in d["verdicts"]}
    t = _table("answers and verdicts by round")
    t.add_column("round", justify="right")
    t.add_column("teacher", overflow="fold")
    t.add_column("student", overflow="fold")
    t.add_column("scores t/s", justify="right")
    t.add_column("verdict", no_wrap=True)
    teacher = [r for r in d["responses"] if r["role"] == "teacher"]
    rounds = sorted({r["round"] for r in d["responses"]} | set(verdicts))
    def said(r: dict[str, Any] | None) -> Text:  # the answer, after the thinking (dim) where there was any
        if r is None:
            return Text("")
        out = Text(f"thinking: {r['thinking']}\n", style="dim") if r.get("thinking") else Text("")
        return out.append(r["text"])

    for rnd in rounds:
        te = next((r for r in teacher if r["round"] == rnd), None)
        st = next((r for r in d["responses"] if r["role"] == "student" and r["round"] == rnd), None)
        v = verdicts.get(rnd)
        scores = "-" if not v or v["teacher_score"] is None else f"{v['teacher_score']:g}/{v['student_score']:g}"
        t.add_row(str(rnd), said(te), said(st), scores, _verdict(v["hard"], v["diff"]) if v else Text("-", style="dim"))
    console.print(t)
    for f in d["failures"]:
        console.print(Text(f"failure in round {f['round']} ({f['stage']}): {f['reason']}", style="yellow"))
    if d["examples"]:
        def row(e: dict) -> str:
            role = f", student {e['student']}" if e.get("student") else ""
            return f"{e['kind']} (r{e['round']}, weight {e['weight']:g}{role})"

        console.print(f"{len(d['examples'])} training row(s): " + ", ".join(row(e) for e in d["examples"]))


# -- lineage ------------------------------------------------------------------------------------


def _node_label(n: dict[str, Any], focus: bool = False) -> Text:
    if n.get("missing"):
        return Text(f"{n['id']} (not in the pool)", style="dim")
    t = Text(n["id"][:12] + " ", style="bold cyan" if focus else "cyan")
    t.append(n["text"] + (f" | {n['input']}" if n["input"] else ""), style="bold" if focus else "")
    t.append(f"  {n['origin']}, r{n['round_born']}, {n['split']}", style="dim")
    t.append_text(_verdicts_line(n["verdicts"]))
    return t


@pool_app.command("lineage")
def lineage(run_dir: RunDir, ident: Ident, as_json: AsJson = False) -> None:
    """Ancestors and descendants of an instruction as a tree, each with its verdicts by round."""
    from lionloop.inspect.lineage import lineage as get_lineage

    d = guard(get_lineage, run_dir, ident)
    if as_json:
        _echo_json(d)
        return
    chain = [*d["ancestors"], d["node"]]
    root = Tree(_node_label(chain[0], focus=len(chain) == 1))
    branch = root
    for n in chain[1:]:
        branch = branch.add(_node_label(n, focus=n is d["node"]))

    def grow(tree: Tree, kids: list[dict[str, Any]]) -> None:
        for k in kids:
            grow(tree.add(_node_label(k)), k["children"])

    grow(branch, d["descendants"])
    console.print(root)
    console.print(Text(f"{len(d['ancestors'])} ancestor(s), {d['descendant_count']} descendant(s)"
                       + (" (truncated)" if d["truncated"] else ""), style="dim"))


# -- search -------------------------------------------------------------------------------------


@pool_app.command("search")
def search(
    run_dir: RunDir,
    text: Annotated[str, typer.Argument(help="Text to look for (embedded like the pool's instructions).")],
    k: Annotated[int, typer.Option("-k", help="Neighbours to return.")] = 10,
    as_json: AsJson = False,
) -> None:
    """Nearest instructions to a text, by embedding similarity through the run's FAISS index."""
    from lionloop.inspect.search import search as do_search

    res = guard(do_search, run_dir, text, k)
    if as_json:
        _echo_json(res)
        return
    t = _table(f"nearest to {text!r} ({res['indexed']} indexed, {res['index']})")
    for col, kw in (("#", {"justify": "right"}), ("sim", {"justify": "right"}), ("id", {"no_wrap": True}),
                    ("instruction", {"overflow": "fold", "min_width": 10}), ("task", {}), ("origin", {}),
                    ("born", {"justify": "right"}), ("split", {}), ("verdict", {"no_wrap": True})):
        t.add_column(col, **kw)
    for n in res["neighbours"]:
        t.add_row(str(n["rank"]), f"{n['similarity']:.3f}", n["id"][:12], Text(n.get("text", "")), n.get("task", ""),
                  n.get("origin", ""), str(n.get("round_born", "")), n.get("split", ""),
                  _verdict(n.get("hard"), n.get("diff"), n.get("verdict_round") is not None))
    console.print(t)


# -- diff ---------------------------------------------------------------------------------------


@pool_app.command("diff")
def diff(
    run_dir: RunDir,
    r_from: Annotated[int, typer.Option("--from", help="Earlier round.", show_default=False)],
    r_to: Annotated[int, typer.Option("--to", help="Later round.", show_default=False)],
    limit: Annotated[int, typer.Option("--limit", "-n", help="Rows per list (0 = all); counts are always complete.")] = 10,
    as_json: AsJson = False,
) -> None:
    """Between two rounds: what entered the pool, what became easy, what stayed hard."""
    from lionloop.inspect.diff import pool_diff

    d = guard(pool_diff, run_dir, r_from, r_to, limit or None)
    if as_json:
        _echo_json(d)
        return
    c = d["counts"]
    ev = d["eval"]
    console.print(Text.assemble(
        (f"round {d['from']} -> round {d['to']}", "bold"),
        f": {c['entered']} entered, {c['became_easy']} became easy, {c['stayed_hard']} stayed hard, "
        f"{c['became_hard']} became hard, {c['stayed_easy']} stayed easy; newly judged "
        f"{c['new_hard']} hard / {c['new_easy']} easy"
        + (f"; {c['unjudged']} unjudged" if c["unjudged"] else "")
        + (f"; {c['dropped']} not judged at round {d['to']}" if c["dropped"] else ""),
    ))
    if ev["from"] is not None or ev["to"] is not None:
        sk = _table(f"eval accuracy {pct(ev['from'])} -> {pct(ev['to'])}")
        sk.add_column("skill")
        sk.add_column(f"r{d['from']}", justify="right")
        sk.add_column(f"r{d['to']}", justify="right")
        for s, (a, b) in ev["per_skill"].items():
            sk.add_row(s, pct(a), pct(b))
        console.print(sk)
    if d["entered_by_origin"]:
        console.print(Text("entered by origin: " + ", ".join(f"{k} {v}" for k, v in d["entered_by_origin"].items())
                           + " · by task: " + ", ".join(f"{k} {v}" for k, v in d["entered_by_task"].items())))
    for key, title in (("became_easy", "became easy"), ("stayed_hard", "stayed hard"),
                       ("became_hard", "became hard"), ("new_hard", "new and hard")):
        rows = d[key]
        if not rows:
            continue
        t = _table(f"{title} ({c[key]}{', first ' + str(len(rows)) if len(rows) < c[key] else ''})")
        for col, kw in (("id", {"no_wrap": True}), ("instruction", {"overflow": "fold", "min_width": 10}), ("task", {}),
                        ("origin", {}), ("born", {"justify": "right"}), (f"gap r{d['from']}", {"justify": "right"}),
                        (f"gap r{d['to']}", {"justify": "right"})):
            t.add_column(col, **kw)
        for r in rows:
            t.add_row(r["id"][:12], Text(r["text"]), r["task"], r["origin"], str(r["round_born"]),
                      gap(r["diff_from"], r["hard_from"]), gap(r["diff_to"], r["hard_to"]))
        console.print(t)
    console.print(Text("gap = teacher - student score; same = identical answers (easy, not scored)", style="dim"))




# -- export -------------------------------------------------------------------------------------


@pool_app.command("export")
def export(
    run_dir: RunDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (jsonl, parquet) or directory (hf).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl, parquet or hf (a `datasets` dataset directory with a card).")] = "jsonl",
    what: Annotated[str, typer.Option(help="examples (the training rows) or instructions.")] = "examples",
    split: Annotated[str | None, typer.Option(help="Only this split (instructions: train, cache or eval).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output.")] = False,
    as_json: AsJson = False,
) -> None:
    """Export training rows or instructions with lineage columns (jsonl, parquet, or a HF dataset)."""
    from lionloop.inspect.export import export as do_export

    res = guard(do_export, run_dir, fmt, out, what, split, force)
    if as_json:
        _echo_json(res)
        return
    console.print(f"wrote {res['rows']} {res['what']} rows to {res['out']} ({res['format']})")
