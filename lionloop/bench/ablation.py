"""Generator ablation: the loop with each generator plugin on or off, at equal teacher budget.

Arms on the offline `skills` pack (with its multi-step and labelled skills), same seeds, rounds
and training steps:
  lion          Lion's generator alone (the baseline)
  +<plugin>     lion and one of rationale, socratic, disco, finetune_cot, sharing the budget
  all           lion and the first four plugins, sharing the budget
  +<survey>     lion and one of scott, icl, mt_cot, fu_cot (the survey's later methods); run
                on their own (`--arm lion --arm +scott ...`) they get a section of their own, 7c
Every arm spends the same per-round budget of teacher calls on new data (generate + curate),
split evenly between its generators through `options.max_calls`. The plugins ask the answers
curate needs inside their own budget (curate then hits the cache); lion's answers are asked by
curate, so lion gets half its split for rewrites. The paid calls are measured and reported, so
the table shows how equal the budgets really were.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lionloop.bench.arms import loop_rounds, run_arms
from lionloop.bench.common import (
    LORA_TRAIN,
    benchmarks_md,
    machine_line,
    md_table,
    mean_std,
    metric_of,
    pm,
    real_student_about,
    recorded,
    run_commits,
    write_section,
)
from lionloop.config import RunConfig, parse_config

PLUGINS = ("rationale", "socratic", "disco", "finetune_cot")
SURVEY = ("scott", "icl", "mt_cot", "fu_cot")  # the survey's later methods (issue 15)
# "+socratic-separate": socratic in its two-model mode (a decomposer student of its own).
ARMS = ("lion", *(f"+{p}" for p in PLUGINS), "+socratic-separate", "all", *(f"+{p}" for p in SURVEY))
# The demo's seven skills plus the pack's opt-in ones: multi-step `chain` and `sum` (socratic,
# finetune_cot), labelled `mood` (disco). Sized like the demo (its student learns the easy skills
# in a round or two) but with fewer steps and a smaller cache pool, so the 15-18 runs take about
# an hour on 2 shared CPU cores; max_length 80 fits the plugins' longest rows (solver prompts).
BASE: dict[str, Any] = {
    "task": {"seeds_per_skill": 40, "cache_per_skill": 15, "eval_per_skill": 30, "options": {"extra_skills": True}},
    "student": {"max_length": 80},
    "train": {"steps_per_round": 200},
    "judge": {"max_cases": 120},
    "stop": {"stop_when_no_hard": False},
}
# Plugin options the benchmark sets: short task prefixes (shorter rows, faster training), and
# three counterfactuals per labelled case for disco, which otherwise cannot spend its budget
# (only `mood` is labelled: a few cases per round).
OPTIONS: dict[str, dict[str, Any]] = {
    "rationale": {"label_prefix": "[l] ", "rationale_prefix": "[r] "},
    "socratic": {"decompose_prefix": "[d] ", "solve_prefix": "[s] "},
    "finetune_cot": {"cot_prefix": "[c] "},
    "disco": {"per_case": 3},
    "scott": {"factual_prefix": "[f] ", "counterfactual_prefix": "[x] "},
    "icl": {"icl_prefix": "[i] ", "lm_prefix": "[m] ", "k": 2},
    "mt_cot": {"explain_prefix": "[e] "},
    # one worked example: two in-context chains overflow the student's 80-token rows
    "fu_cot": {"cot_prefix": "[c] ", "k": 1},
}


# `--student PATH`: a pretrained student with LoRA, on the skills the plugins were built for plus
# two of the demo's (sized for 2 CPU cores: SmolLM2-135M trains at ~60-150 tokens/s here). The
# question the tiny student could not answer: do these methods help a student that can learn
# multi-prompt formats?
REAL_STUDENT: dict[str, Any] = {
    "task": {"seeds_per_skill": 8, "cache_per_skill": 4, "eval_per_skill": 8,
             "skills": ["chain", "sum", "mood", "add", "reverse"]},
    "student": {"max_length": 160, "max_new_tokens": 16, "eval_batch_size": 64},
    "train": LORA_TRAIN,
    "judge": {"max_cases": 40},
}


def student_overrides(student: Path | None, base: dict | None = None) -> dict | None:
    """Config overrides for a pretrained `--student` (None: the tiny student)."""
    if student is None:
        return base
    out: dict[str, Any] = json.loads(json.dumps(REAL_STUDENT))
    out["student"]["base"] = str(Path(student).resolve())
    for k, v in (base or {}).items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) else v
    return out


def generators(arm: str, budget: int) -> dict[str, Any]:
    """The arm's generators, each with an equal part of the per-round budget of new-data calls."""
    plugin, _, mode = arm[1:].partition("-")
    names = ["lion", *PLUGINS] if arm == "all" else ["lion"] + ([plugin] if arm.startswith("+") else [])
    part = budget // len(names)
    out: dict[str, Any] = {}
    for name in names:
        calls = part // 2 if name == "lion" else part  # lion's answers are paid in curate
        out[name] = {"share": round(1 / len(names), 4), "options": {"max_calls": calls, **OPTIONS.get(name, {})}}
    if mode:
        out[plugin]["options"]["mode"] = mode
    return out


def arm_config(arm: str, seed: int, rounds: int, run_dir: Path, budget: int, overrides: dict | None = None) -> RunConfig:
    data: dict[str, Any] = json.loads(json.dumps(BASE))
    data.update(name=f"ablation-{arm.strip('+')}-{seed}", seed=seed, run_dir=str(run_dir))
    data["generate"] = {"max_new_per_round": 4 * budget, "generators": generators(arm, budget)}
    data["stop"] = {**data["stop"], "max_rounds": rounds}
    for k, v in (overrides or {}).items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(data, f"bench:ablation:{arm}")


def per_round(figures: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
    """Per round: held-out accuracy (direct, per skill, other methods), calls, rows, accepted."""
    out = []
    for r in loop_rounds(figures):
        stages = r["teacher_by_stage"]
        out.append({
            "round": r["round"], "acc": r["eval_score"], "metric": r.get("eval_metric") or "accuracy",
            "per_skill": r["eval_per_skill"],
            "methods": {k: v.get("overall") for k, v in r["eval_methods"].items()},
            "rows": r["train"].get("rows"), "accepted": r["accepted"],
            "by_generator": r["accepted_by_generator"],
            "new_data_calls": sum(int(stages.get(s, {}).get("calls", 0)) for s in ("generate", "curate")),
            "teacher_calls": r["teacher_calls"],
        })
    out[-1]["seconds"] = round(seconds, 1)
    out[-1]["total_calls"] = figures["calls"]["paid"]
    return out


def run(arms: tuple[str, ...], seeds: list[int], rounds: int, budget: int, out_dir: Path,
        overrides: dict | None = None) -> dict[str, Any]:
    """Every (arm, seed) run, resumable: finished runs are read back from ablation.json."""
    return run_arms("ablation", arms, seeds, out_dir,
                    lambda arm, seed, run_dir: arm_config(arm, seed, rounds, run_dir, budget, overrides),
                    per_round)


def summarise(results: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    arms = [a for a in results if results[a]]
    skills = sorted({k for a in arms for runs in results[a].values() for k in runs[-1]["per_skill"]})
    out: dict[str, Any] = {"skills": skills, "arms": {}, "commits": run_commits(results),
                           "envs": recorded(results, "env"), "kernels": recorded(results, "kernels", "not recorded"), "metric": metric_of(
        {a: [runs[-1] for runs in results[a].values()] for a in arms})}
    for arm in arms:
        last = [runs[-1] for runs in results[arm].values()]
        methods = sorted({m for r in last for m in r["methods"]})
        out["arms"][arm] = {
            "n": len(last),
            "acc": [r["acc"] for r in last],
            "per_skill": {s: [r["per_skill"].get(s) for r in last] for s in skills},
            "methods": {m: [r["methods"].get(m) for r in last] for m in methods},
            "new_data_calls": [sum(x["new_data_calls"] for x in runs) for runs in results[arm].values()],
            "total_calls": [r["total_calls"] for r in last],
            "rows": [r["rows"] for r in last],
            "accepted": [sum(x["accepted"] for x in runs) for runs in results[arm].values()],
            "seconds": [r["seconds"] for r in last],
        }
    return out


FOCUS = ("chain", "sum", "mood")  # the skills the plugins were built for


def report(summary: dict[str, Any], command: str, heading: str | None = None, about: str = "") -> str:
    arms = [a for a in ARMS if a in summary["arms"]]
    skills = summary["skills"]
    base = summary["arms"].get("lion")
    base_acc = mean_std(base["acc"]) if base else None
    main_rows, skill_rows, better = [], [], []
    for arm in arms:
        s = summary["arms"][arm]
        acc, sd = mean_std(s["acc"])
        delta = "" if base_acc is None or arm == "lion" else f"{100 * (acc - base_acc[0]):+.1f}"
        if base_acc is not None and arm != "lion" and acc > base_acc[0]:
            better.append(arm)
        chains = ", ".join(f"{m} {pm(v)}" for m, v in s["methods"].items()) or "-"
        calls, accepted = mean_std(s["new_data_calls"])[0], mean_std(s["accepted"])[0]
        main_rows.append([arm, f"**{pm(s['acc'])}**", delta, *[pm(s["per_skill"][k]) for k in FOCUS if k in skills],
                          chains, f"{calls:.0f}", f"{accepted:.0f}", f"{calls / accepted:.1f}" if accepted else "-",
                          f"{mean_std(s['total_calls'])[0]:.0f}", f"{mean_std(s['rows'])[0]:.0f}"])
        skill_rows.append([arm, *[f"{100 * mean_std(s['per_skill'][k])[0]:.0f}" for k in skills]])
    n = max(s["n"] for s in summary["arms"].values())
    secs = [x for s in summary["arms"].values() for x in s["seconds"]]
    verdict = (f"Arms above lion alone on mean accuracy: {', '.join(better)}." if better else
               "No arm is above lion alone on mean accuracy.")
    return "\n".join([
        heading or "## 7. Generator ablation: each plugin on/off at equal budget",
        "",
        *([about, ""] if about else []),
        f"Command: `{command}` ({sum(secs) / 60:.0f} min for {len(secs)} runs, {mean_std(secs)[0] / 60:.1f} min per run). "
        f"Machine: {machine_line(summary.get('commits', []), summary.get('envs', []), summary.get('kernels', []))}.",
        "",
        f"The loop with each generator plugin on or off, on the offline `skills` pack (skills: {', '.join(skills)}), "
        f"{n} seeds per arm. Every arm gets the same budget of teacher calls for new data per round (generate + curate), "
        f"split evenly between its generators. Held-out {summary.get('metric', 'accuracy')} (%) of the direct "
        "answer after the last round, "
        "mean ± std over seeds; *chains* is the plugins' own evaluation of the same student (socratic: decomposer "
        "then solver; finetune_cot, scott, mt_cot, fu_cot: chain of thought, the answer after `=>`; icl: few-shot "
        "prompt with k demonstrations). *New-data calls* and *all calls* "
        "(bootstrap and referee included) are what the runs paid; *new instr.* counts the instructions added over "
        "all rounds; *rows* the training rows of the last round. " + verdict,
        "",
        md_table(["arm", "overall", "Δ vs lion", *[k for k in FOCUS if k in skills], "chains", "new-data calls",
                  "new instr.", "calls / new instr.", "all calls", "rows"], main_rows),
        "",
        "Per skill (mean %, same runs):",
        "",
        md_table(["arm", *skills], skill_rows),
    ])


def main(seeds: int = 3, rounds: int = 3, budget: int = 120, out_dir: Path = Path("runs/bench-ablation"),
         arms: tuple[str, ...] = ARMS, write: bool = True, overrides: dict | None = None,
         md: Path | None = None, student: Path | None = None) -> tuple[dict[str, Any], str]:
    """Run (or resume) the ablation; returns the summary and its Markdown table, which `write`
    puts in BENCHMARKS.md's "Generator ablation" section (`benchmarks_md(md)`: checked before
    any run starts). `student`: a pretrained HF model folder (LoRA), in a section of its own."""
    target = benchmarks_md(md) if write else None
    out_dir.mkdir(parents=True, exist_ok=True)
    res = run(arms, list(range(seeds)), rounds, budget, out_dir, student_overrides(student, overrides))
    summary = summarise(res["results"])
    command = f"lionloop bench ablation --seeds {seeds} --rounds {rounds} --budget {budget}"
    heading = about = None
    if student is not None:
        command += f" --student {Path(student).name} " + " ".join(f"--arm {a}" for a in arms)
        heading = "## 7b. Generator ablation with a pretrained student (LoRA)"
        about = real_student_about(student, REAL_STUDENT, REAL_STUDENT["task"]["skills"],
                                   ", so the plugins' prefixed prompts are one more line of its user turn")
    section = "ablation" if student is None else "ablation-real"
    if student is None and set(arms) <= {"lion", *(f"+{p}" for p in SURVEY)}:
        section, heading = "ablation-survey", "## 7c. Generator ablation: the survey's later methods"
        command += " " + " ".join(f"--arm {a}" for a in arms)
    text = report(summary, command, heading, about or "")
    if target is not None:
        write_section(section, text, target)
    return summary, text
