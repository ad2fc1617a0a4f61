"""Threads: the student's torch threads and OpenMP wait policy, measured whole-process.

Each setting runs the same child process — build the tiny student, train it 30 steps of 32 rows,
answer the 280 eval prompts — A/B/A/B so the machine's drift hits every setting alike; wall time
is the whole process (start-up included), the child reports its train and eval seconds. Settings:
the OpenMP wait policy PASSIVE (what the CLI and the tests set unless the user chose) against
libgomp's default (threads spin after each parallel region), and 1 thread against torch's default
(one per core). The machine's load average is printed beside the figures: the policy matters most
when the cores are shared.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lionloop.bench.common import machine_line, md_table
from lionloop.errors import LionloopError

# name -> (environment changes, student.threads); None removes a variable.
SETTINGS: dict[str, tuple[dict[str, str | None], int | None]] = {
    "passive, torch default threads": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "OpenMP default policy (spinning), torch default threads": ({"OMP_WAIT_POLICY": None}, None),
    "passive, 1 thread": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
}


def child(threads: int | None, steps: int = 30) -> dict[str, Any]:
    """The measured work, in this process: returns train and eval seconds."""
    import tempfile

    import torch

    from lionloop.config import StudentConfig, TaskConfig, TrainConfig
    from lionloop.plugin.manager import get_plugin_manager
    from lionloop.records import Example
    from lionloop.student.model import build_tiny_student, generate, quiet_hf
    from lionloop.student.prompt import format_prompt

    quiet_hf()
    registry = get_plugin_manager().build_registry()
    pack = registry.get("task_pack", "skills", "task.pack")(TaskConfig(), 0)
    trainer_cls = registry.get("trainer", "trl", "train.trainer")
    scfg = StudentConfig(threads=threads)
    rows = [Example(instruction_id=i.id, prompt=format_prompt(i), completion=pack.solve(i.text))
            for i in pack.seeds(40)]
    tmp = Path(tempfile.mkdtemp(prefix="lionloop-threads-"))
    base = build_tiny_student(tmp / "base", scfg, 0)
    t0 = time.perf_counter()
    trainer_cls(TrainConfig(steps_per_round=steps, batch_size=32, warmup_steps=2), scfg).train(base, tmp / "r1", rows, seed=0)
    t1 = time.perf_counter()
    generate(tmp / "r1", [format_prompt(i) for i in pack.eval_set(40)], scfg)
    t2 = time.perf_counter()
    return {"threads": torch.get_num_threads(), "policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "train_s": round(t1 - t0, 2), "eval_s": round(t2 - t1, 2)}


def _run_child(env_change: dict[str, str | None], threads: int | None) -> dict[str, Any]:
    env = dict(os.environ)
    for k, v in env_change.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lionloop.bench.threads", "--child", str(threads or 0)],
                         env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        tail = " ".join(out.stderr.strip().splitlines()[-1:])[:300]
        raise LionloopError(f"bench threads: the measured process failed (exit {out.returncode}): {tail}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall_s": round(wall, 2),
            "load": round(os.getloadavg()[0], 1)}


def run(repeat: int = 3, settings: tuple[str, ...] = tuple(SETTINGS)) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in settings}
    for _ in range(repeat):
        for s in settings:  # interleaved: A B C A B C ...
            env, threads = SETTINGS[s]
            results[s].append(_run_child(env, threads))
    return results


def report(results: dict[str, list[dict[str, Any]]], command: str) -> str:
    base = next(iter(results))
    med = {s: {k: statistics.median(r[k] for r in rows) for k in ("wall_s", "train_s", "eval_s")}
           for s, rows in results.items()}
    loads = [r["load"] for rows in results.values() for r in rows]
    rows = [[s, f"{m['train_s']:.1f}", f"{m['eval_s']:.2f}", f"{m['wall_s']:.1f}",
             f"{m['wall_s'] / med[base]['wall_s']:.2f}×"] for s, m in med.items()]
    return "\n".join([
        "## 8. Threads: OpenMP wait policy and torch threads",
        "",
        f"Command: `{command}`. Machine: {machine_line()}; load average during the runs "
        f"{min(loads):.1f}-{max(loads):.1f} on 2 cores.",
        "",
        "The tiny student trained 30 steps of 32 rows, then answering the 280 eval prompts; each setting a "
        "fresh process, settings interleaved; medians of "
        f"{len(next(iter(results.values())))} runs. Wall is the whole process (start-up included); the ratio is "
        f"to `{base}`.",
        "",
        md_table(["setting", "train (s)", "eval (s)", "wall (s)", "wall ratio"], rows),
    ])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]) or None)))
        return
    raise SystemExit("run it through `lionloop bench threads`")


if __name__ == "__main__":
    main()
