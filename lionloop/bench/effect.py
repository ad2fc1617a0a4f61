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
and the levers measured on their own (see LEVERS). The referee is the verifier (wrong = hard, no
teacher call) or, with `--referee llm`, the oracle's 1-10 judge with every judge call paid.
"""

from __future__ import annotations

import json
import re
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
from lionloop.config import RunConfig, parse_config

ARMS = ("loop", "uniform", "lion")
BASELINES = ("seeds",)  # run when asked for (`--arm seeds`), not by default
# Levers measured against the default, one at a time (dev seeds; see BENCHMARKS.md).
# Uniform expansion as the baseline: no referee, every answer the teacher's.
PLAIN: dict[str, Any] = {"case_selection": "uniform", "self_answers": False}
LEVERS: dict[str, dict[str, Any]] = {
    "loop-prior-uniform": {"generate": {"allocation": {"prior": "uniform"}}},
    "loop-no-explore": {"generate": {"allocation": {"exploration": 0.0}}},
    "loop-window1": {"generate": {"allocation": {"window": 1}}},
    "loop-cluster": {"generate": {"allocation": {"group_by": "cluster"}}},
    "loop-frontier": {"generate": {"allocation": {"within": "frontier"}}},
    "loop-slope": {"generate": {"allocation": {"estimate": "slope"}}},
    "loop-ahead": {"generate": {"allocation": {"estimate": "ahead"}}},
    "loop-mix": {"generate": {"allocation": {"train_mix": 0.5}}},
    "loop-mix-uniform": {"generate": {"allocation": {"train_mix": 0.5, "prior": "uniform"}}},
    "loop-mix-frontier": {"generate": {"allocation": {"train_mix": 0.5, "within": "frontier"}}},
    "loop-uniform-frontier": {"generate": {"allocation": {"prior": "uniform", "within": "frontier"}}},
    "loop-warmup": {"generate": {"warmup_rounds": 1}},
    "loop-warmup-frontier": {"generate": {"warmup_rounds": 1, "allocation": {"within": "frontier"}}},
    # With an LLM referee every cache probe costs a teacher answer (30 a skill: 210 calls on the
    # default pack); fewer probes leave more of the budget for data and make progress noisier.
    "loop-probes10": {"task": {"cache_per_skill": 10}},
    # With the verifier a probe costs no call: more of them give the allocation steadier progress
    # estimates (30 probes: a logit's noise ~0.37 at 50%) and the generator more distinct failures.
    "loop-probes60": {"task": {"cache_per_skill": 60}},
    "loop-probes100": {"task": {"cache_per_skill": 100}},
    # The referee judging every case although it pays per call (Lion; judge.budget_share null).
    "loop-judge-all": {"judge": {"budget_share": None}},
    # How a paid referee's small sample steers the round (defaults: judge.sample_by group, generate.fill
    # group). The sample drawn over the cases, where the tasks failing most (add) fill it; the rest of a
    # round filled uniformly over the pool, not group by group as the allocation shares it; both (the
    # default before 2026-12-02).
    "loop-sample-case": {"judge": {"sample_by": "case"}},
    "loop-fill-uniform": {"generate": {"fill": "uniform"}},
    "loop-case-uniform": {"judge": {"sample_by": "case"}, "generate": {"fill": "uniform"}},
    # Identical answers judged too (judge.skip_identical: false): what a teacher with free-form
    # answers looks like, where the student's answer rarely matches the teacher's word for word and
    # every verdict costs a judge call; with the default (probes_first: auto, which leads with the
    # probes there), with the probes first set explicitly, and without them (the default before auto).
    "loop-judge-identical": {"judge": {"skip_identical": False}},
    "loop-judge-identical-probes": {"judge": {"skip_identical": False, "probes_first": True}},
    "loop-judge-identical-off": {"judge": {"skip_identical": False, "probes_first": False}},
    # A group's part of the referee's sample from its cache probes first (judge.probes_first).
    "loop-probes-first": {"judge": {"probes_first": True}},
    # Each judged case asked once, not in both orders: half the judge calls (Lion asks both to
    # cancel a real judge's position bias; the offline oracle has none).
    "loop-one-order": {"judge": {"both_orders": False}},
    # No easy rewrites: Lion spends a quarter of each group's quota on rewrites of cases the student
    # gets right (on this pack: the same skill at level 1 or 5); here all of it goes to hard siblings.
    "loop-easy0": {"generate": {"generators": {"lion": {"options": {"easy_ratio": 0.0}}}}},
    # Lion's hard rewrites one level simpler while a task's cache-pool accuracy is below half.
    "loop-simpler": {"generate": {"generators": {"lion": {"options": {"simpler_below": 0.5}}}}},
    # Twice the training steps for both arms: does more training on the same data widen the gap?
    "loop-steps600": {"train": {"steps_per_round": 600}},
    "uniform-steps600": {"generate": PLAIN, "train": {"steps_per_round": 600}},
    # Half the steps, both arms: 600 lowered both arms and the loop's lead (+4.0 against +5.5 at 300).
    "loop-steps150": {"train": {"steps_per_round": 150}},
    "uniform-steps150": {"generate": PLAIN, "train": {"steps_per_round": 150}},
    # Each round trains from the base on the whole pool (LLM2LLM), for both arms: the last student
    # sees the final mix for 300 steps, not the earlier rounds' data for 1,500.
    "loop-retrain": {"train": {"policy": "retrain"}},
    "uniform-retrain": {"generate": PLAIN, "train": {"policy": "retrain"}},
    # Steps that scale with the data, both arms: 12 passes over the pool a round (~105 steps on
    # round 1's 280 rows, ~480 on round 5's ~1,300: about the default's 1,500 steps in all).
    # As measured before self-answers; 12 epochs are now the tiny student's default, so
    # uniform-epochs12 is the uniform arm now and loop-epochs12 the default loop without self-answers.
    "loop-epochs12": {"generate": {"self_answers": False}, "train": {"epochs_per_round": 12}},
    "uniform-epochs12": {"generate": PLAIN, "train": {"epochs_per_round": 12}},
    # Hindsight, not a candidate default: the round split fixed from round 1 on the three skills the
    # measured runs showed learnable but not yet mastered (count, sort, reverse), the rest getting the
    # exploration share only. What an allocation that knew the answer in advance could gain.
    "loop-hindsight": {"generate": {"allocation": {"mode": "fixed", "weights": {"count": 1, "sort": 1, "reverse": 1}}}},
    "loop-hindsight-explore30": {"generate": {"allocation": {
        "mode": "fixed", "weights": {"count": 1, "sort": 1, "reverse": 1}, "exploration": 0.3}}},
    # A wider tiny student for both arms (hidden 256 instead of 128: ~4x the parameters): with a
    # student that can learn more of the pack (two-digit `add`), does the allocation gain more?
    "loop-wide256": {"student": {"hidden_size": 256}},
    # The defaults before self-answers and the tiny student's steps that scale with the data.
    "loop-steps300": {"generate": {"self_answers": False}, "train": {"steps_per_round": 300}},
    "uniform-steps300": {"generate": PLAIN, "train": {"steps_per_round": 300}},
    # Uniform expansion that also keeps the student's verified answers (the stronger baseline).
    "uniform-self": {"generate": {"case_selection": "uniform"}},
    "uniform-wide256": {"generate": PLAIN, "student": {"hidden_size": 256}},
    # A floor of 300 steps a round, both arms: with 12 epochs round 1 trains 105 steps on its 280
    # rows and the student judged for the first allocation is at ~7% (copy, shift, upper at 0).
    "loop-min300": {"train": {"min_steps_per_round": 300}},
    "uniform-min300": {"generate": PLAIN, "train": {"min_steps_per_round": 300}},
    # With `--student`: steps that scale with the data (one pass over the pool a round, at least the
    # fixed 16: round 1 as before, ~32 steps on round 4's ~250 rows), so the rows the loop's
    # self-answers add are trained on.
    "loop-epochs1": {"train": {"epochs_per_round": 1, "min_steps_per_round": 16}},
    "uniform-epochs1": {"generate": PLAIN, "train": {"epochs_per_round": 1, "min_steps_per_round": 16}},
    # Pacing, both arms (generate.pace_ratio): each generating round's part of the budget against the
    # one before's. The default 0.6 front-loads; even pacing (1, the default before 2026-12-02) and 0.8.
    "loop-even": {"generate": {"pace_ratio": 1.0}},
    "uniform-even": {"generate": {**PLAIN, "pace_ratio": 1.0}},
    "loop-front80": {"generate": {"pace_ratio": 0.8}},
    "uniform-front80": {"generate": {**PLAIN, "pace_ratio": 0.8}},
    # Back-loaded, the loop alone (uniform stays at its better 0.6): a small first round, bought on
    # the frontier prior before any progress is measured, and larger later rounds the allocation
    # steers from measured progress (aimed at the ten-skill reach, where round 1 trails).
    "loop-back150": {"generate": {"pace_ratio": 1.5}},
    # For a pretrained --student (whose bench sizing is 16 LoRA steps a round): three times the
    # training at the same teacher budget, both arms, to see whether the allocation shows once the
    # student moves further (§1d).
    "loop-steps48": {"train": {"steps_per_round": 48}},
    "uniform-steps48": {"generate": PLAIN, "train": {"steps_per_round": 48}},
    # Rewrites packed four to a call (teacher.rewrites_per_call), both arms: what a rewrite costs
    # falls for both; the loop's cost is more of rewrites (its answers are mostly its own).
    "loop-pack4": {"teacher": {"rewrites_per_call": 4}},
    "uniform-pack4": {"generate": PLAIN, "teacher": {"rewrites_per_call": 4}},
}
EXTRA_SKILLS = ["copy", "upper", "shift", "reverse", "sort", "count", "add", "chain", "sum", "mood"]


# `--student PATH`: a pretrained HF model as the student, trained with LoRA. Sized for 2 CPU
# cores, where SmolLM2-135M trains at ~60-150 tokens/s (a step of 8 rows takes 2-5 s) and answers
# ~200 prompts in about a minute: a round is a few minutes, a 3-round run 10-15.
REAL_STUDENT: dict[str, Any] = {
    "task": {"seeds_per_skill": 10, "cache_per_skill": 4, "eval_per_skill": 10,
             "skills": ["copy", "upper", "reverse", "sort", "add"]},
    "student": {"max_length": 96, "max_new_tokens": 16, "eval_batch_size": 64},
    "train": {"steps_per_round": 16, "batch_size": 8, "learning_rate": 5e-4, "warmup_steps": 2,
              "lora": {"enabled": True, "rank": 16, "alpha": 32}},
}


def student_overrides(student: Path | None, base: dict | None = None) -> dict | None:
    """The config overrides for a pretrained `--student` (None: the tiny student, no change)."""
    if student is None:
        return base
    out = json.loads(json.dumps(REAL_STUDENT))
    out["student"]["base"] = str(Path(student).resolve())
    return deep_merge(out, base or {})


ARM_NAME = re.compile(r"(?P<base>[\w-]+)(?:@(?P<cap>\d+))?(?:%(?P<pct>\d+))?")


def split_arm(arm: str) -> tuple[str, int | None, int | None] | None:
    """(base arm, referee cap from `@N`, budget percent from `%P`), or None where it does not parse."""
    m = ARM_NAME.fullmatch(arm)
    if m is None:
        return None
    cap, pct = m["cap"], m["pct"]
    return m["base"], int(cap) if cap else None, int(pct) if pct else None


def known_arm(arm: str) -> bool:
    parts = split_arm(arm)
    if parts is None:
        return False
    base, _, pct = parts
    return (base in ARMS or base in BASELINES or base in LEVERS) and (pct is None or 0 < pct <= 100)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# `--cost`: the budget in money, every call priced by its tokens (the oracle counting them with a
# real tokenizer, as an LLM backend would be billed) at these prices per 1k tokens ($0.15 / $0.60
# per million prompt / completion tokens: a small hosted model's list price).
PRICE_PER_1K = (0.00015, 0.0006)


def priced(cost: float, tokenizer: Path) -> dict[str, Any]:
    """The overrides that make an arm's budget `cost` in money instead of calls."""
    return {"teacher": {"options": {"tokenizer": str(tokenizer)}, "cost_per_1k_input": PRICE_PER_1K[0],
                        "cost_per_1k_output": PRICE_PER_1K[1]},
            "stop": {"max_teacher_calls": None, "max_teacher_cost": cost}}


def arm_config(arm: str, seed: int, rounds: int, budget: int, run_dir: Path, referee: str = "verifier",
               skills: list[str] | None = None, overrides: dict | None = None) -> RunConfig:
    """One arm's config: the defaults, the shared budget and rounds, and the arm's own change."""
    parts = split_arm(arm)
    if parts is None:
        raise ValueError(f"arm {arm!r}: not NAME[@N][%P]")
    base, cap, pct = parts
    if pct is not None:
        budget = max(1, round(budget * pct / 100))
    data: dict[str, Any] = {
        "name": f"effect-{arm.replace('@', '-').replace('%', '-pct')}-{seed}", "seed": seed, "run_dir": str(run_dir),
        # The budget paces the rounds; max_new_per_round never binds before it does.
        "generate": {"max_new_per_round": budget},
        # The last round only trains on what the budget bought: nothing left to judge it with.
        # verifier: a case is hard when the student's answer is wrong, no judge call (judge.mode);
        # llm: the oracle's referee, every judge call paid.
        "judge": {"last_round": False, "mode": "verifier" if referee == "verifier" else "llm"},
        "stop": {"max_rounds": rounds, "max_teacher_calls": budget, "stop_when_no_hard": False},
    }
    if skills:
        data["task"] = {"skills": list(skills)}
    # The bench's own sizing (a pretrained --student's) first, so an arm's change wins over it.
    data = deep_merge(data, overrides or {})
    if pct is not None and data["stop"].get("max_teacher_cost"):  # a budget in money: P% of it
        data["stop"] = {**data["stop"], "max_teacher_cost": data["stop"]["max_teacher_cost"] * pct / 100}
    if base == "uniform":  # plain expansion: every answer the teacher's
        data = deep_merge(data, {"generate": PLAIN})
    elif base == "lion":  # the paper: every answer is the teacher's, every case judged
        data = deep_merge(data, {"generate": {"allocation": {"mode": "lion"}, "self_answers": False},
                                 "judge": {"budget_share": None}})
    elif base == "seeds":  # the generator may spend nothing: the rounds train on the seeds alone
        data = deep_merge(data, {"generate": {"generators": {"lion": {"options": {"max_calls": 0}}}}})
    elif base in LEVERS:
        data = deep_merge(data, LEVERS[base])
    if cap:
        data = deep_merge(data, {"judge": {"max_cases": cap}})
    return parse_config(data, f"bench:effect:{arm}")


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
