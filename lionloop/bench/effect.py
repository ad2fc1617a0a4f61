"""Effectiveness: does the loop help the student at equal teacher budget?

Arms on the offline pack, same seeds, same rounds, same training steps:
  lion      the referee's hard/easy cases feed the Lion generator (the loop)
  uniform   the same generator and data budget, cases drawn uniformly from the pool, no referee
  seeds     seed data only (no generation)
  lion_cap  the loop with no task taking more than 25% of the hard rewrites (Lion option
            max_task_share; the value was fixed before this arm ran, not tuned on it)
The data budget is fixed per round by `generate.max_accepted_per_round`, so lion and uniform train
on the same number of teacher-answered examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lionloop.bench.arms import finished_figures, loop_rounds, run_arms
from lionloop.bench.common import (
    benchmarks_md,
    machine_line,
    md_table,
    mean_std,
    metric_of,
    write_section,
)
from lionloop.config import RunConfig, parse_config

ARMS = ("lion", "uniform", "seeds", "lion_cap")
TASK_CAP = 0.25
PLOT = "docs/bench-effect.png"  # beside BENCHMARKS.md

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
    for k, v in (base or {}).items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) else v
    return out


def arm_config(arm: str, seed: int, rounds: int, run_dir: Path, accepted: int, overrides: dict | None = None) -> RunConfig:
    gen: dict[str, Any] = {"max_new_per_round": int(accepted * 1.5), "max_accepted_per_round": accepted}
    if arm == "uniform":
        gen["case_selection"] = "uniform"
    elif arm == "seeds":
        gen.update(case_selection="uniform", generators={})
    elif arm == "lion_cap":
        gen["generators"] = {"lion": {"options": {"max_task_share": TASK_CAP}}}
    data = {"name": f"bench-{arm}-{seed}", "seed": seed, "run_dir": str(run_dir),
            "generate": gen, "stop": {"max_rounds": rounds, "stop_when_no_hard": False}}
    for k, v in (overrides or {}).items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_config(data, f"bench:{arm}")


def per_round(figures: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
    """Per round: training rows (the data budget), held-out accuracy overall and per skill."""
    return [
        {"round": r["round"], "examples": r["train"].get("rows"), "acc": r["eval_score"],
         "metric": r.get("eval_metric") or "accuracy",
         "per_skill": r["eval_per_skill"], "teacher_calls": r["teacher_calls"]}
        for r in loop_rounds(figures)
    ]


def budget_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """First data budget at which a (budget, accuracy) curve reaches target (linear between rounds)."""
    prev = None
    for b, a in curve:
        if a >= target:
            if prev is None or prev[1] >= target:
                return b
            (b0, a0) = prev
            return b0 + (b - b0) * (target - a0) / (a - a0)
        prev = (b, a)
    return None


def run(seeds: list[int], rounds: int, accepted: int, out_dir: Path, overrides: dict | None = None,
        arms: tuple[str, ...] = ARMS) -> dict[str, Any]:
    """Every (arm, seed) run, resumable: finished runs are read back from effect.json."""
    return run_arms("effect", arms, seeds, out_dir,
                         lambda arm, seed, run_dir: arm_config(arm, seed, rounds, run_dir, accepted, overrides),
                         per_round)


def summarise(results: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, Any]:
    final = {a: [runs[-1] for runs in results[a].values()] for a in ARMS if results.get(a)}
    skills = sorted({k for rows in final.values() for r in rows for k in r["per_skill"]})
    summary: dict[str, Any] = {"skills": skills, "arms": {}, "metric": metric_of(final)}
    for arm, rows in final.items():
        summary["arms"][arm] = {
            "acc": mean_std([r["acc"] for r in rows]),
            "per_skill": {s: mean_std([r["per_skill"].get(s) for r in rows]) for s in skills},
            "examples": mean_std([r["examples"] for r in rows]),
            "rows": rows,
        }
    # Mean accuracy-vs-budget curve per arm; where each loop arm first reaches uniform's final accuracy.
    curves = {}
    for arm, by_seed in results.items():
        if by_seed:
            n_rounds = min(len(v) for v in by_seed.values())
            curves[arm] = [(mean_std([v[i]["examples"] for v in by_seed.values()])[0],
                            mean_std([v[i]["acc"] for v in by_seed.values()])[0]) for i in range(n_rounds)]
    summary["curves"] = curves
    if "uniform" in summary["arms"]:
        target = summary["arms"]["uniform"]["acc"][0]
        summary["budget_to_uniform_final"] = {
            arm: budget_to_reach(curve, target) for arm, curve in curves.items() if arm in ("lion", "lion_cap")}
    return summary


def wall_seconds(figures: dict[str, dict[int, dict[str, Any]]]) -> float:
    """Wall time of all arm runs, read back from their rounds' stage timings (survives a resumed bench)."""
    return sum(sum((r.get("seconds") or {}).values()) for by_seed in figures.values() for f in by_seed.values()
               for r in loop_rounds(f))


def allocation(figures: dict[str, dict[int, dict[str, Any]]],
               results: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, dict[str, float]]:
    """Mean number of generated (non-seed) training instructions per skill, per arm: where the budget went."""
    alloc: dict[str, dict[str, float]] = {}
    for arm, by_seed in results.items():
        counts: dict[str, list[int]] = {}
        for f in figures.get(arm, {}).values():
            for task, n in f["generated_by_task"].items():
                counts.setdefault(task, []).append(n)
        if counts:
            alloc[arm] = {t: sum(v) / len(by_seed) for t, v in counts.items()}
    return alloc


def plot(results: dict[str, dict[int, list[dict[str, Any]]]], path: Path, title: str = "offline pack") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for arm, color in zip(ARMS, ("tab:red", "tab:blue", "tab:gray", "tab:orange"), strict=True):
        for k, runs in enumerate(results.get(arm, {}).values()):
            ax.plot([r["examples"] for r in runs], [100 * r["acc"] for r in runs], "o-", color=color,
                    alpha=0.7, label=arm if k == 0 else None)
    ax.set_xlabel("teacher-answered training examples (data budget)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"{title}: accuracy after each round, one line per seed")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(summary: dict[str, Any], seconds: float, command: str, plot_path: Path | None,
           alloc: dict[str, dict[str, float]] | None = None, heading: str | None = None,
           about: str = "") -> str:
    arms = [a for a in ARMS if a in summary["arms"]]
    rows = []
    for arm in arms:
        s = summary["arms"][arm]
        rows.append([arm, f"{s['examples'][0]:.0f}", f"**{100 * s['acc'][0]:.1f} ± {100 * s['acc'][1]:.1f}**",
                     *[f"{100 * s['per_skill'][k][0]:.0f} ± {100 * s['per_skill'][k][1]:.0f}" for k in summary["skills"]]])
    n = len(next(iter(summary["arms"].values()))["rows"])
    lines = [
        heading or "## 1. Effectiveness: the loop vs. uniform expansion vs. seeds only",
        "",
        f"Command: `{command}` ({seconds / 60:.0f} min). Machine: {machine_line()}.",
        "",
        *([about, ""] if about else []),
        f"Held-out {summary.get('metric', 'accuracy')} (%) after the last round, mean ± std over {n} seeds; the data budget is the",
        "number of teacher-answered training examples the student saw in its last round.",
        "",
        md_table(["arm", "budget", "overall", *summary["skills"]], rows),
    ]
    u_final = summary["arms"]["uniform"]["examples"][0] if "uniform" in summary["arms"] else None
    for arm, b in summary.get("budget_to_uniform_final", {}).items():
        lines += ["", (f"`{arm}` first reaches uniform expansion's final accuracy at a budget of **{b:.0f}** "
                       f"examples (uniform needed {u_final:.0f})." if b is not None else
                       f"`{arm}` does not reach uniform expansion's final accuracy within this budget.")]
    if alloc:
        skills = summary["skills"]
        lines += ["", "Where the budget went: generated training instructions per skill (mean over seeds).", "",
                  md_table(["arm", *skills], [[a, *[f"{alloc[a].get(k, 0):.0f}" for k in skills]]
                                              for a in arms if a in alloc])]
        if "lion" in alloc:
            top = max(alloc["lion"], key=alloc["lion"].get)
            shares = {a: alloc[a].get(top, 0) / max(1, sum(alloc[a].values())) for a in arms if a in alloc}
            acc = summary["arms"]["lion"]["per_skill"][top][0]
            lines += ["", f"The loop put {100 * shares['lion']:.0f}% of its generated instructions on `{top}` "
                      f"(final accuracy there {100 * acc:.0f}%); " +
                      ", ".join(f"{a} {100 * v:.0f}%" for a, v in shares.items() if a != "lion") + "."]
    if plot_path is not None:
        lines += ["", f"![accuracy vs budget]({plot_path.as_posix()})"]
    return "\n".join(lines)


def main(seeds: int = 3, rounds: int = 4, accepted: int = 300, out_dir: Path = Path("runs/bench-effect"),
         write: bool = True, overrides: dict | None = None, md: Path | None = None,
         student: Path | None = None, arms: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run (or resume) the benchmark; `write` puts its section and plot beside BENCHMARKS.md
    (`benchmarks_md(md)`: checked before any run starts). `student`: a pretrained HF model folder
    as the student (LoRA, `REAL_STUDENT` sizes); its figures go to a section of their own."""
    target = benchmarks_md(md) if write else None
    out_dir.mkdir(parents=True, exist_ok=True)
    arms = arms or (("lion", "uniform", "seeds") if student else ARMS)
    res = run(list(range(seeds)), rounds, accepted, out_dir, student_overrides(student, overrides), arms)
    summary = summarise(res["results"])
    plot_path = None
    plot_file = PLOT if student is None else PLOT.replace(".png", "-real.png")
    if target is not None:
        plot(res["results"], target.parent / plot_file, "offline pack" if student is None else Path(student).name)
        plot_path = Path(plot_file)  # linked relative to BENCHMARKS.md
    figures = finished_figures(out_dir, res["results"])
    command = f"lionloop bench effect --seeds {seeds} --rounds {rounds} --accepted {accepted}"
    heading = about = None
    if student is not None:
        command += f" --student {Path(student).name} --arm " + " --arm ".join(arms)
        heading = "## 1b. Effectiveness with a pretrained student (LoRA)"
        rs = REAL_STUDENT
        about = (f"The same arms with `{Path(student).name}` as the student, LoRA rank {rs['train']['lora']['rank']}, "
                 f"its chat template for training and evaluation, on skills {', '.join(rs['task']['skills'])}; "
                 f"{rs['task']['seeds_per_skill']} seeds, "
                 f"{rs['task']['cache_per_skill']} cache and {rs['task']['eval_per_skill']} eval instructions per skill, "
                 f"{rs['train']['steps_per_round']} steps of {rs['train']['batch_size']} rows per round: sized for "
                 "2 CPU cores, so far smaller than the tiny student's table above.") + _speed(figures)
    text = report(summary, wall_seconds(figures), command, plot_path, allocation(figures, res["results"]),
                  heading, about or "")
    print(text)
    if target is not None:
        write_section("effect" if student is None else "effect-real", text, target)
    return summary


def _speed(figures: dict[str, dict[int, dict[str, Any]]]) -> str:
    """Median round wall time and trainer tokens/s over the runs (for the pretrained student)."""
    rounds = [r for by_seed in figures.values() for f in by_seed.values() for r in loop_rounds(f)]
    walls = sorted(sum((r.get("seconds") or {}).values()) for r in rounds)
    tps = sorted(r["train"]["tokens_per_s"] for r in rounds if r.get("train", {}).get("tokens_per_s"))
    if not walls or not tps:
        return ""
    return (f" Median round: {walls[len(walls) // 2]:.0f} s wall; the trainer ran at "
            f"{tps[len(tps) // 2]:.0f} tokens/s (median; range {tps[0]:.0f}-{tps[-1]:.0f}).")
