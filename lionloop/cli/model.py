"""`lionloop export-model` and `lionloop evaluate`: the distilled model out of a run, and measured
again (read-only) on held-out instructions, alone or against another round or run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from lionloop.cli.common import RichReporter, console, err_console, fail, guard, quiet_libraries


def export_model(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the model to.")],
    round: Annotated[int | None, typer.Option("--round", help="Round to export (default: best held-out accuracy).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write a round's student as a standalone HF model folder with its model card."""
    quiet_libraries()
    from lionloop.inspect.model_card import card_facts, card_markdown
    from lionloop.rundir import RunDir
    from lionloop.student.export import export_model as do_export

    facts = guard(card_facts, run_dir, round)
    cfg, _ = guard(RunDir(run_dir).read)
    res = guard(do_export, RunDir(run_dir).student(facts["round"]), out, cfg.student,
                lambda fmt, eos: card_markdown(facts, fmt, eos),
                {"run_id": facts["run_id"], "round": facts["round"], "chosen_by": facts["chosen_by"],
                 "eval_accuracy": {r: a for r, a, _ in facts["curve"]}.get(facts["round"])},
                force)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    console.print(f"wrote {res['out']}: round {res['round']} ({res['chosen_by']}, eval {res['eval_accuracy']:.1%}), "
                  f"{res['parameters'] / 1e6:.1f}M parameters{', LoRA merged' if res['lora_merged'] else ''}, "
                  f"{res['prompt_format']} prompts, {res['bytes'] / 1e6:.0f} MB")


def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    round: Annotated[int | None, typer.Option("--round", min=0, help="Round whose student to evaluate (default: the "
                                              "last trained; 0: the base model the run started from).")] = None,
    per_skill: Annotated[int | None, typer.Option("--per-skill", min=1, help="Draw this many held-out instructions a task "
                                                  "from the task pack (those the run's pool holds left out) instead of "
                                                  "the run's eval split: a measurement with a smaller error.")] = None,
    eval_file: Annotated[str | None, typer.Option("--eval-file", help="Evaluate on the rows of this file or dataset, read "
                                                  "with the run's columns and verifiers (the dataset pack), those the "
                                                  "run's pool holds left out.")] = None,
    against_round: Annotated[int | None, typer.Option("--against-round", min=0, help="Compare, pair by pair on the same "
                                                      "instructions, with this round (0: the base model) of this "
                                                      "run, or of --against-run.")] = None,
    against_run: Annotated[Path | None, typer.Option("--against-run", help="Compare with another run's student (its "
                                                     "last trained round, or --against-round) on the same "
                                                     "instructions, scored by this run's verifier.")] = None,
    wrong: Annotated[int, typer.Option("--wrong", min=0, help="Show this many of the student's wrong answers, "
                                       "with instruction and reference (and what it thought first, where it "
                                       "learns thinking).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON (every answer and verdict "
                                          "by instruction id).")] = False,
    referee: Annotated[bool, typer.Option("--referee", help="Score by the run's referee instead of the verifier: "
                                          "each answer judged against the teacher's (rows without references; "
                                          "paid calls, kept in RUN_DIR/evaluate.sqlite, not repaid).")] = False,
    max_calls: Annotated[int | None, typer.Option("--max-calls", min=0, help="With --referee: pay at most this many "
                                                  "teacher calls (answers not judged within it are counted, "
                                                  "not scored).")] = None,
) -> None:
    """Measure a trained round's student again on held-out instructions (read-only: by the verifier, or
    by the referee against the teacher's answers), alone or against another round or run on the same
    instructions."""
    quiet_libraries()
    from lionloop.inspect.status import run_figures
    from lionloop.loop.held_out import evaluate_round

    if max_calls is not None and not referee:
        fail("--max-calls caps the referee's paid calls: give it with --referee", 2)
    res = guard(evaluate_round, run_dir, round, per_skill, RichReporter(err_console), eval_file, against_run,
                against_round, wrong, referee, max_calls)
    # What the run's evaluate stage recorded for the same round, in the same metric.
    recorded = {r["round"]: (r.get("eval_relative") or {}).get("overall") if referee else r["eval_accuracy"]
                for r in guard(run_figures, run_dir)["rounds"]}
    res["recorded"] = recorded.get(res["round"])
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    show_evaluation(res, against_run)


def show_evaluation(res: dict[str, Any], against_run: Path | None) -> None:
    """`lionloop evaluate`'s figures as tables: per task (beside the other student's), the overall
    accuracy with its interval, the wrong answers asked for, and the paired difference."""
    from lionloop.inspect.fmt import pct

    b = res.get("against")
    t = Table(title=f"{res['who']} on {res['source']}"
              + (f", against {b['who']}" + (f" of {against_run}" if against_run else "") if b else ""))
    t.add_column("task")
    t.add_column("as good as the teacher" if res["metric"] == "referee" else "accuracy", justify="right")
    if b:
        t.add_column("against", justify="right")
        t.add_column("Δ points", justify="right")
    for task, acc in res["per_skill"].items():
        if b:
            other = b["per_skill"].get(task)
            diff = f"{100 * (acc - other):+.1f}" if acc is not None and other is not None else "-"
            t.add_row(task, pct(acc), pct(other), diff)
        else:
            t.add_row(task, pct(acc))
    console.print(t)
    ci = res["interval_95"]
    judged = res["metric"] == "referee"
    rel = res.get("relative") or {}
    console.print((f"judged as good as the teacher's answer: {pct(res['overall'])} of {res['n']} instructions"
                   if judged else f"accuracy {pct(res['overall'])} on {res['n']} instructions")
                  + (f" (95% interval {pct(ci[0])} to {pct(ci[1])})" if ci is not None else "")
                  + (f"; relative score {pct(rel['overall'])}, W/T/L {rel['wins']}/{rel['ties']}/{rel['losses']}"
                     if judged and rel.get("overall") is not None else "")
                  + (f"; the run recorded {pct(res['recorded'])}" + (" (relative score)" if judged else "")
                     + " on its eval split" if res["recorded"] is not None else "")
                  + (f"; {res['in_pool']} of them left out: the run's pool holds them" if res["in_pool"] else "")
                  + (f"; {res['n']} of the {res['asked']} answers could be {'judged' if judged else 'checked'}"
                     if res["n"] != res["asked"] else "")
                  + (f"; {res['teacher_calls']} teacher calls paid" if judged else "")
                  + (f"; {res['truncated']} answers cut at student.max_new_tokens" if res["truncated"] else ""),
                  highlight=False)
    if judged and res["not_judged"]:
        from lionloop.loop.held_out_referee import why_not_judged

        console.print(f"not judged: {why_not_judged(res['not_judged'])}", highlight=False)
    if res["wrong"]:
        w = Table(title=f"{len(res['wrong'])} wrong answers")
        thinks = any("thinking" in x for x in res["wrong"])  # a student that learns thinking: what it thought
        for col in ("task", "instruction", "reference", *(("thinking",) if thinks else ()), "answer"):
            w.add_column(col, overflow="fold")
        for x in res["wrong"]:
            text = x["instruction"] + (f"\n{x['input']}" if x["input"] else "")
            thought = x.get("thinking") or "(none)"
            cells = (x["task"], text, str(x["reference"]) if x["reference"] is not None else "-",
                     *((thought,) if thinks else ()), x["answer"] or "(empty)")
            w.add_row(*(Text(c) for c in cells))  # the data's own brackets are not markup
        console.print(w)
    if b:
        p = res["paired"]
        if p["diff"] is None:
            console.print("no instruction both answers could be checked on")
            return
        lo, hi = p["interval_95"]
        console.print(f"against: {pct(b['overall'])}; difference {100 * p['diff']:+.1f} points on the {p['n']} "
                      f"instructions both were checked on (95% interval {100 * lo:+.1f} to {100 * hi:+.1f}); "
                      f"right only here {p['a_only']}, only there {p['b_only']} (exact McNemar p = {p['p_mcnemar']:.3g})",
                      highlight=False)
