"""A white-box teacher that runs on 2 CPU cores: a tiny student, wider and deeper than the one it
teaches, trained with the `trl` trainer on the `skills` pack's oracle answers. It has the tiny
student's byte tokenizer (lionloop.student.model.build_tokenizer), so the gkd and minillm trainers
can distil its token distribution into any tiny student.

    python -m lionloop.testing.white_box --out runs/white-box-teacher [--steps 1500] [--hidden 192]

The packaged SmolLM2-135M (lionloop.testing.models) is a white-box teacher only for a student with
its tokenizer (SmolLM2-135M itself or a LoRA of it, `student.base`); its vocabulary is not the
tiny student's, and that pairing is refused when the run starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def train_teacher(
    out: Path,
    hidden_size: int = 192,
    num_layers: int = 6,
    num_heads: int = 6,
    steps: int = 1500,
    per_skill: int = 400,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    skills: list[str] | None = None,
    extra_skills: bool = False,
    init: Path | None = None,
) -> dict[str, Any]:
    """Build and train the teacher into `out` (an HF folder); returns its training figures and its
    held-out accuracy on the pack's eval set (the instructions every run is measured on). `init`:
    continue from that teacher (its shape) instead of a fresh one, on a new sample of rows."""
    from lionloop.config import StudentConfig, TaskConfig, TrainConfig
    from lionloop.plugins.skills import SkillsPack
    from lionloop.plugins.trainer_trl import TRLTrainer
    from lionloop.records import Example
    from lionloop.student.model import build_tiny_student, generate
    from lionloop.student.prompt import format_prompt

    out = Path(out)
    task = TaskConfig(skills=skills, options={"extra_skills": extra_skills})
    # Its own seed stream (never the runs' seeds 0, 1, 2); the pack keeps eval instances out.
    pack = SkillsPack(task, seed=10_000 + seed + (1 if init is not None else 0))
    rows = [Example(instruction_id=i.id, prompt=format_prompt(i), completion=pack.solve(i.text))
            for i in pack.seeds(per_skill)]
    student = StudentConfig(hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, max_length=80)
    base = out.with_name(out.name + ".init")
    if init is not None:
        shutil.copytree(init, base, dirs_exist_ok=True)
    else:
        build_tiny_student(base, student, seed)
    train = TrainConfig(steps_per_round=steps, batch_size=batch_size, learning_rate=learning_rate, save_steps=0)
    t0 = time.time()
    figures = TRLTrainer(train, student).train(base, out, rows, seed)
    evals = pack.eval_set(40)
    answers = generate(out, [format_prompt(i) for i in evals], student)
    right = [a == pack.solve(i.text) for a, i in zip(answers, evals, strict=True)]
    per = {s: sum(r for r, i in zip(right, evals, strict=True) if i.task == s) / sum(i.task == s for i in evals)
           for s in pack.skills()}
    summary = {"path": str(out), "hidden_size": hidden_size, "num_layers": num_layers, "steps": steps,
               "rows": len(rows), "final_loss": figures["last_loss"], "seconds": round(time.time() - t0, 1),
               "eval_accuracy": sum(right) / len(right), "eval_per_skill": per}
    if init is not None and (Path(init) / "white_box_teacher.json").is_file():
        before = json.loads((Path(init) / "white_box_teacher.json").read_text())
        summary.update(steps=before["steps"] + steps, rows=before["rows"] + len(rows),
                       seconds=round(before["seconds"] + summary["seconds"], 1))
    (out / "white_box_teacher.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(base, ignore_errors=True)
    return summary


def main() -> None:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--per-skill", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--init", type=Path, default=None, help="continue training this teacher")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = train_teacher(a.out, a.hidden, a.layers, a.heads, a.steps, a.per_skill, learning_rate=a.lr, seed=a.seed,
                      init=a.init)
    log.info("white-box teacher: %s", json.dumps(s))


if __name__ == "__main__":
    main()
