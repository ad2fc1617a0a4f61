"""Effectiveness: does the loop pay for itself? Held-out accuracy at an equal number of paid teacher
calls (bootstrap, referee, generation and answers together).

Every arm gets the same budget (`stop.max_teacher_calls`) and the same rounds; the loop itself
enforces it (the teacher refuses calls past it) and paces it over the rounds (`generate.pace`), so
the last round trains on what the budget bought. Arms, same seeds, same everything else:
  loop      the default config: the referee's hard/easy cases, allocated by learning progress
  uniform   no referee: cases drawn uniformly from the pool, every answer the teacher's (uniform expansion)
  lion      the paper's loop: the referee's cases in its order, no allocation, every answer the teacher's,
            every case judged (with `--referee llm` too)
  loop@N    the default loop with the referee judging at most N cases a round (judge.max_cases)
  loop%P    the default loop given P% of the budget (any arm takes %P, after @N): a run of its own,
            paced over the same rounds, whose final accuracy against uniform's at the full budget
            is the budget-to-match figure (what share of uniform's calls buys uniform's accuracy)
  seeds     no new data at all: every round trains on the seed rows (what expansion adds to them)
and the levers measured on their own (`effect_arms.LEVERS`). The referee is the verifier (wrong = hard, no
teacher call) or, with `--referee llm`, the oracle's 1-10 judge with every judge call paid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lionloop.bench.arms import finished_figures, run_arms
from lionloop.bench.common import (
    benchmarks_md,
    mean_std,
    real_student_about,
    t_interval,
    write_section,
)
from lionloop.bench.effect_arms import (
    ARMS,
    EXTRA_SKILLS,
    REAL_STUDENT,
    arm_config,
    deep_merge,
    priced,
    student_overrides,
)


def per_round(figures: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
    """Per round 1..: held-out accuracy (overall, per skill), the paid calls spent before its
    training (what bought the data it trained on), training rows, and where its new data went."""
    out, spent, cost = [], 0, 0.0
    for r in figures["rounds"]:
        if r["round"] > 0:
            alloc = (r.get("allocation") or {}).get("groups", {})
            out.append({
                "round": r["round"], "calls": spent, "cost": round(cost, 6), "examples": r["train"].get("rows"),
                "acc": r["eval_accuracy"],
                "per_skill": r["eval_per_skill"], "round_calls": r["teacher_calls"],
                "by_stage": {k: int(v.get("calls", 0)) for k, v in r["teacher_by_stage"].items()},
                "accepted_by_group": r.get("accepted_by_group") or {},
                "share": {g: v.get("share") for g, v in alloc.items()},
                "progress": {g: v.get("progress") for g, v in alloc.items()},
                "cache_acc": {g: v.get("acc") for g, v in alloc.items()},
            })
        spent += r["teacher_calls"]
        cost += r.get("teacher_cost") or 0.0
    if out:
        out[-1]["total_calls"] = figures["calls"]["paid"]
        out[-1]["total_cost"] = figures["calls"].get("cost")
        out[-1]["seconds"] = round(seconds, 1)
        out[-1]["stop_reason"] = figures["rounds"][-1].get("stop_reason")
    return out


def run(arms: tuple[str, ...], seeds: list[int], rounds: int, budget: int, out_dir: Path, referee: str,
        skills: list[str] | None, overrides: dict | None = None) -> dict[str, Any]:
    """Every (arm, seed) run, resumable: finished runs are read back from OUT_DIR/effect.json."""
    return run_arms("effect", arms, seeds, out_dir,
                    lambda arm, seed, run_dir: arm_config(arm, seed, rounds, budget, run_dir, referee, skills, overrides),
                    per_round)


# -- arithmetic ---------------------------------------------------------------------------------------


def reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """First x at which an (x, accuracy) curve reaches target, linear between points; None if never."""
    prev = None
    for x, a in curve:
        if a is not None and a >= target:
            if prev is None or prev[1] >= target:
                return x
            x0, a0 = prev
            return x0 + (x - x0) * (target - a0) / (a - a0)
        prev = (x, a)
    return None


def at(curve: list[tuple[float, float]], x: float) -> float | None:
    """The curve's value at x (linear between points); None outside it."""
    for (x0, a0), (x1, a1) in zip(curve, curve[1:], strict=False):
        if x0 <= x <= x1:
            return a0 if x1 == x0 else a0 + (a1 - a0) * (x - x0) / (x1 - x0)
    return curve[-1][1] if curve and curve[-1][0] == x else None


def baseline(arms: Sequence[str]) -> str:
    """The arm the others are paired with: `uniform`, else the one uniform lever run (e.g.
    `uniform-pack4` beside `loop-pack4`), else `uniform` (no pairs)."""
    levers = [a for a in arms if a.startswith("uniform-") and "%" not in a]
    return "uniform" if "uniform" in arms or len(levers) != 1 else levers[0]


def summarise(results: dict[str, dict[int, list[dict[str, Any]]]], base: str = "uniform",
              unit: str = "calls") -> dict[str, Any]:
    """Final accuracy per arm, the paired difference to `base` per seed, and the calls (with `unit`
    "cost": the money) at which each arm first reaches `base`'s final accuracy (per seed, and on the
    mean curves). Under "cost" the `calls` figures hold money spent."""
    arms = [a for a, by_seed in results.items() if by_seed]
    skills = sorted({k for a in arms for runs in results[a].values() for k in runs[-1]["per_skill"]})
    out: dict[str, Any] = {"skills": skills, "arms": {}, "base": base, "unit": unit}
    total = f"total_{unit}"
    ref = results.get(base, {})
    for arm in arms:
        by_seed = results[arm]
        seeds = sorted(by_seed)
        finals = {s: by_seed[s][-1] for s in seeds}
        row: dict[str, Any] = {
            "seeds": seeds,
            "acc": {s: finals[s]["acc"] for s in seeds},
            "calls": {s: finals[s].get(total) for s in seeds},
            "examples": {s: finals[s]["examples"] for s in seeds},
            "per_skill": {k: mean_std([finals[s]["per_skill"].get(k) for s in seeds]) for k in skills},
            "rounds": {s: len(by_seed[s]) for s in seeds},
        }
        row["acc_ms"] = mean_std(list(row["acc"].values()))
        common = [s for s in seeds if s in ref]
        if arm != base and common:
            row["diff"] = {s: row["acc"][s] - ref[s][-1]["acc"] for s in common}
            row["diff_ms"] = mean_std(list(row["diff"].values()))
            row["diff_ci"] = t_interval(list(row["diff"].values()))
            row["ahead_every_seed"] = all(d > 0 for d in row["diff"].values())
            # Per seed: calls at which this arm first reaches base's final accuracy, and as a share
            # of the calls base spent to get there.
            row["reach"] = {s: reach([(p[unit], p["acc"]) for p in by_seed[s]], ref[s][-1]["acc"]) for s in common}
            row["reach_share"] = {s: (x / ref[s][-1][total] if x is not None and ref[s][-1].get(total)
                                      else None) for s, x in row["reach"].items()}
        out["arms"][arm] = row
    out["curves"] = {arm: mean_curve(results[arm], unit) for arm in arms}
    out["example_curves"] = {arm: mean_curve(results[arm], "examples") for arm in arms}
    if base in out["arms"]:
        target = out["arms"][base]["acc_ms"][0]
        base_calls = mean_std([c for c in out["arms"][base]["calls"].values() if c])[0]
        out["mean_reach"] = {a: reach(c, target) for a, c in out["curves"].items() if a != base}
        out["mean_reach_share"] = {a: (x / base_calls if x is not None else None) for a, x in out["mean_reach"].items()}
        # Equal examples: every arm's accuracy at the fewest examples any arm's mean curve ends at.
        ends = [c[-1][0] for c in out["example_curves"].values() if c]
        out["equal_examples"] = min(ends) if ends else None
        out["acc_at_equal_examples"] = {a: at(c, out["equal_examples"]) for a, c in out["example_curves"].items()}
    out["allocation"] = allocation(results)
    return out


def mean_curve(by_seed: dict[int, list[dict[str, Any]]], x: str) -> list[tuple[float, float]]:
    """The (mean x, mean accuracy) after each round, over the seeds (rounds all seeds reached)."""
    n = min(len(v) for v in by_seed.values())
    return [(mean_std([v[i][x] for v in by_seed.values()])[0], mean_std([v[i]["acc"] for v in by_seed.values()])[0])
            for i in range(n)]


def allocation(results: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per arm: new instructions accepted per group (mean over seeds), in total and per round; and
    for arms with an allocation, each group's share and progress estimate per round (means)."""
    out: dict[str, Any] = {}
    for arm, by_seed in results.items():
        if not by_seed:
            continue
        n = len(by_seed)
        groups = sorted({g for runs in by_seed.values() for p in runs for g in p["accepted_by_group"]})
        rounds = min(len(v) for v in by_seed.values())
        per_round = [{g: sum(v[i]["accepted_by_group"].get(g, 0) for v in by_seed.values()) / n for g in groups}
                     for i in range(rounds)]
        share = [{g: mean_std([v[i]["share"].get(g) for v in by_seed.values()])[0] for g in groups}
                 for i in range(rounds)]
        prog = [{g: mean_std([v[i]["progress"].get(g) for v in by_seed.values()])[0] for g in groups}
                for i in range(rounds)]
        out[arm] = {"groups": groups, "total": {g: sum(r[g] for r in per_round) for g in groups},
                    "per_round": per_round, "share": share, "progress": prog}
    return out


def main(seeds: int = 5, rounds: int = 5, budget: int = 2400, out_dir: Path | None = None, write: bool = True,
         referee: str = "verifier", extra_skills: bool = False, arms: tuple[str, ...] = ARMS, first_seed: int = 0,
         md: Path | None = None, overrides: dict | None = None,
         student: Path | None = None, cost: float | None = None,
         tokenizer: Path | None = None) -> tuple[dict[str, Any], str]:
    """Run (or resume) the benchmark; `write` puts its section and plot beside BENCHMARKS.md
    (`benchmarks_md(md)`: checked before any run starts). `student`: a pretrained HF model folder
    as the student (LoRA, `REAL_STUDENT` sizes); its figures go to a section of their own."""
    from lionloop.bench.effect_report import PLOT, TITLES, command_line, plot, report, section

    target = benchmarks_md(md) if write else None
    skills = EXTRA_SKILLS if extra_skills else None
    overrides = student_overrides(student, overrides)
    if cost is not None:  # the budget in money: `budget` then only caps a round's candidates
        if tokenizer is None:
            raise ValueError("a budget in money (cost) needs a tokenizer to price the calls")
        overrides = deep_merge(overrides or {}, priced(cost, tokenizer))
    if student is not None:
        skills = skills or REAL_STUDENT["task"]["skills"]
    name = section(referee, extra_skills) + ("-real" if student is not None else "") + ("-priced" if cost else "")
    out_dir = Path(out_dir) if out_dir else Path("runs") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    res = run(arms, list(range(first_seed, first_seed + seeds)), rounds, budget, out_dir, referee, skills, overrides)
    results = {a: v for a, v in res["results"].items() if a in arms}
    summary = summarise(results, baseline(arms), "cost" if cost else "calls")
    figures = finished_figures(out_dir, results)
    wall = sum(r[-1].get("seconds", 0) for v in results.values() for r in v.values())
    plot_path = None
    if target is not None:
        plot_path = Path(PLOT.format(name=name))
        plot(summary, results, target.parent / plot_path, title=name)
    cmd = command_line(seeds, rounds, budget, referee, extra_skills, arms, first_seed, ARMS)
    about = ""
    if student is not None:
        cmd += f" --student {Path(student).name}"
        about = real_student_about(student, REAL_STUDENT, skills or [])
    if cost is not None:
        cmd += f" --cost {cost:g} --tokenizer {Path(tokenizer).name}"
    text = report(summary, results, cmd, wall, plot_path, referee, cost or budget, figures, title=TITLES.get(name),
                  about=about)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if target is not None:
        write_section(name, text, target)
    return summary, text
