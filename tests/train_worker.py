"""One training of the tiny student through the `trl` trainer plugin, as the imitate stage runs it
(checkpoints every `--save-steps` in `--checkpoints`), for tests/test_train_resume.py to kill and
restart. Prints `STEP n` after each optimizer step (flushed) and `DONE <figures>` at the end.

    python tests/train_worker.py WORK_DIR [--save-steps 5] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("work", type=Path)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--save-steps", type=int, default=5)
    p.add_argument("--out", default="out")
    p.add_argument("--slow-after", type=int, default=None,
                   help="from this step on, 0.5 s a step: the test's kill lands inside training")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)  # same threads, same sums: a resumed run can match bit for bit

    from lionloop.config import StudentConfig, TrainConfig
    from lionloop.plugins.trainer_trl import TRLTrainer
    from lionloop.records import Example
    from lionloop.student.model import build_tiny_student, quiet_hf

    quiet_hf()
    student = StudentConfig(hidden_size=32, num_layers=1, num_heads=2, max_length=32, max_new_tokens=8)
    base = args.work / "base"
    if not base.exists():
        build_tiny_student(base, student, seed=0)
    # 36 rows in batches of 8: an epoch ends mid-run (and mid-batch), so a kill can land in any epoch.
    rows = [Example(f"i{k}", f"reverse {w}\n", w[::-1], weight=1.0 + (k % 3) / 2)
            for k, w in enumerate(f"{a}{b}{c}" for a in "abc" for b in "xyz" for c in "pqrs")]
    cfg = TrainConfig(steps_per_round=args.steps, batch_size=8, warmup_steps=2, save_steps=args.save_steps)
    trainer = TRLTrainer(cfg, student)

    def progress(step: int, total: int, loss: float | None = None) -> None:
        if loss is None:  # a call with the loss repeats its step's: one line per step
            print(f"STEP {step}", flush=True)
            # On quiet cores the tiny model ran its last steps before a signal sent at a late step
            # could land: 50 ms a step keeps every kill point inside training (weights unchanged).
            # On loaded cores the test's reader lagged the worker by more than the steps left:
            # from the kill step on, half a second a step gives the reader time to catch up.
            slow = args.slow_after is not None and step >= args.slow_after
            time.sleep(0.5 if slow else 0.05)

    figures = trainer.train(base, args.work / args.out, rows, seed=7, progress=progress,
                            checkpoint_dir=args.work / "checkpoints")
    print("DONE " + json.dumps(figures), flush=True)


if __name__ == "__main__":
    sys.exit(main())
