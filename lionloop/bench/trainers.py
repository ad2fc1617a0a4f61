"""Trainer ablation: black-box SFT against the white-box trainers, at equal text-teacher budget.

Arms on the offline `skills` pack (the demo's seven skills), the tiny student, same seeds,
rounds, steps and generators (Lion's, with the same per-round budget of new-data calls):
  trl       SFT on the pool's teacher answers (the loop's default trainer; the baseline)
  gkd       GKD: generalised JSD (beta 0.5) to the white-box teacher, half the batches sampled
            by the student (lmbda 0.5), half the pool's answers
  gkd+sft   the same after SFT for half of each round's steps (black-box and white-box in one stage)
  minillm   reverse KL on the student's own samples (beta 1, lmbda 1)
  minillm+sft  the same after SFT for half of each round's steps (MiniLLM starts from an SFT student)
The text teacher (the oracle) answers, judges and rewrites alike in every arm, so its paid calls
match; the white-box arms add the white-box teacher's forward passes, which no text budget counts.
The white-box teacher is a larger tiny student trained on the pack first
(`python -m lionloop.testing.white_box`); its own held-out accuracy is the ceiling printed beside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lionloop.bench.ablation import generators, per_round, summarise
from lionloop.bench.arms import run_arms
from lionloop.bench.common import benchmarks_md, machine_line, md_table, mean_std, pm, write_section
from lionloop.config import RunConfig, parse_config

ARMS = ("trl", "gkd", "gkd+sft", "minillm", "minillm+sft")
TRAINERS: dict[str, tuple[str, dict[str, Any]]] = {
    "trl": ("trl", {}),
    "gkd": ("gkd", {"beta": 0.5, "lmbda": 0.5}),
    "gkd+sft": ("gkd", {"beta": 0.5, "lmbda": 0.5, "sft_share": 0.5}),
    "minillm": ("minillm", {}),
    "minillm+sft": ("minillm", {"sft_share": 0.5}),
}
# Sized like the generator ablation (its steps, cache and judged cases) on the demo's skills,
# which the white-box teacher was trained on.
BASE: dict[str, Any] = {
    "task": {"seeds_per_skill": 40, "cache_per_skill": 15, "eval_per_skill": 30},
    "train": {"steps_per_round": 200},
    "judge": {"max_cases": 120},
    "stop": {"stop_when_no_hard": False},
}


def arm_config(arm: str, seed: int, rounds: int, run_dir: Path, budget: int, teacher: Path) -> RunConfig:
    data: dict[str, Any] = json.loads(json.dumps(BASE))
    trainer, options = TRAINERS[arm]
    data.update(name=f"trainers-{arm}-{seed}", seed=seed, run_dir=str(run_dir))
    data["train"].update(trainer=trainer, options=options)
    if trainer != "trl":
        data["train"]["teacher_model"] = str(Path(teacher).resolve())
    data["generate"] = {"max_new_per_round": 4 * budget, "generators": generators("lion", budget)}
    data["stop"] = {**data["stop"], "max_rounds": rounds}
    return parse_config(data, f"bench:trainers:{arm}")


def report(summary: dict[str, Any], teacher: dict[str, Any], command: str) -> str:
    arms = [a for a in ARMS if a in summary["arms"]]
    skills = summary["skills"]
    base = summary["arms"].get("trl")
    base_acc = mean_std(base["acc"])[0] if base else None
    rows, skill_rows = [], []
    for arm in arms:
        s = summary["arms"][arm]
        acc = mean_std(s["acc"])[0]
        delta = "" if base_acc is None or arm == "trl" else f"{100 * (acc - base_acc):+.1f}"
        overall = pm(s["acc"]) if s["n"] > 1 else f"{100 * acc:.1f}"  # one seed has no spread to show
        rows.append([arm, f"**{overall}**", delta, f"{mean_std(s['new_data_calls'])[0]:.0f}",
                     f"{mean_std(s['accepted'])[0]:.0f}", f"{mean_std(s['total_calls'])[0]:.0f}",
                     f"{mean_std(s['seconds'])[0] / 60:.1f}"])
        skill_rows.append([arm, *[f"{100 * mean_std(s['per_skill'][k])[0]:.0f}" for k in skills]])
    teacher_per = teacher.get("eval_per_skill", {})
    skill_rows.append(["white-box teacher alone", *[f"{100 * teacher_per[k]:.0f}" if k in teacher_per else "-"
                                                    for k in skills]])
    n = max(s["n"] for s in summary["arms"].values())
    secs = [x for s in summary["arms"].values() for x in s["seconds"]]
    return "\n".join([
        "## 7d. Trainer ablation: SFT vs white-box distillation (GKD, MiniLLM) at equal teacher budget",
        "",
        f"Command: `{command}` ({sum(secs) / 60:.0f} min for {len(secs)} runs). "
        f"Machine: {machine_line(summary.get('commits', []), summary.get('envs', []), summary.get('kernels', []))}.",
        "",
        f"The tiny student (1.1M parameters) on the demo's skills ({', '.join(skills)}), {n} seed(s) per arm, "
        "Lion's generator with the same budget of new-data calls per round in every arm. The white-box "
        f"teacher: a {teacher.get('hidden_size')}-wide, {teacher.get('num_layers')}-layer tiny student "
        f"({teacher.get('steps')} steps on {teacher.get('rows')} oracle-answered rows, "
        + ("a byte-level BPE tokenizer of its own, so gkd and minillm ran TRL's GOLD), "
           if teacher.get("tokenizer") == "bpe" else "same byte tokenizer), ") +
        f"held-out accuracy **{100 * teacher.get('eval_accuracy', float('nan')):.1f}%** on its own. Held-out "
        f"{summary.get('metric', 'accuracy')} (%) after the last round, mean ± std over seeds. *New-data calls* "
        "(generate + curate: the budget held equal) and *all calls* (bootstrap and referee too) are the text "
        "teacher's paid calls; all calls differ with the student, since the referee skips answers identical to "
        "the teacher's. The white-box teacher's forward passes are counted in none of them.",
        "",
        md_table(["arm", "overall", "Δ vs trl", "new-data calls", "new instr.", "all calls", "min per run"], rows),
        "",
        "Per skill (mean %, same runs):",
        "",
        md_table(["arm", *skills], skill_rows),
    ])


def main(teacher: Path, seeds: int = 1, rounds: int = 3, budget: int = 120,
         out_dir: Path = Path("runs/bench-trainers"), arms: tuple[str, ...] = ARMS, write: bool = True,
         md: Path | None = None) -> tuple[dict[str, Any], str]:
    """Run (or resume) the trainer ablation; `write` puts its table in BENCHMARKS.md (section 7d)."""
    target = benchmarks_md(md) if write else None
    out_dir.mkdir(parents=True, exist_ok=True)
    res = run_arms("trainers", arms, list(range(seeds)), out_dir,
                   lambda arm, seed, run_dir: arm_config(arm, seed, rounds, run_dir, budget, teacher), per_round)
    summary = summarise(res["results"])
    info_file = Path(teacher) / "white_box_teacher.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    command = (f"lionloop bench trainers --teacher-model {Path(teacher).name} --seeds {seeds} --rounds {rounds} "
               f"--budget {budget}")
    text = report(summary, info, command)
    if target is not None:
        write_section("trainers", text, target)
    return summary, text
