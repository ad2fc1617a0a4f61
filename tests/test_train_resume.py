"""A kill or Ctrl-C inside training resumes from the trainer's last checkpoint, not step 0, and ends
with the very weights an uninterrupted training writes (training here is deterministic: same seed,
rows and threads).

The kill points are random (a step and a delay after it, so some land mid-save); the seed is
printed, and LIONLOOP_KILL_SEED replays a run's points.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import MICRO, deep_merge

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("train_worker.py")
STEPS, SAVE = 40, 5
SEED = int(os.environ.get("LIONLOOP_KILL_SEED", time.time_ns() % 10**6))
RNG = random.Random(SEED)
KILLS = [(RNG.randint(2, STEPS - 2), RNG.uniform(0, 0.05), sig) for sig in ("KILL", "KILL", "INT")]


def _worker(work: Path, out: str) -> list[str]:
    cmd = [sys.executable, str(WORKER), str(work), "--steps", str(STEPS), "--save-steps", str(SAVE), "--out", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def _figures(lines: list[str]) -> dict:
    return json.loads(next(ln for ln in lines if ln.startswith("DONE "))[5:])


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("train")
    figures = _figures(_worker(work, "out"))
    assert figures["steps"] == STEPS and "resumed_from_step" not in figures
    return work


# Stable ids (the points are drawn per process: pytest-xdist's workers must collect the same names).
@pytest.mark.parametrize(("at", "delay", "sig"), KILLS, ids=["KILL-1", "KILL-2", "INT"])
def test_killed_inside_training_resumes_from_its_last_checkpoint(
    uninterrupted: Path, tmp_path: Path, at: int, delay: float, sig: str
) -> None:
    print(f"LIONLOOP_KILL_SEED={SEED}: {sig} after step {at} + {delay * 1000:.0f} ms")
    shutil.copytree(uninterrupted / "base", tmp_path / "base")  # the same base model
    cmd = [sys.executable, str(WORKER), str(tmp_path), "--steps", str(STEPS), "--save-steps", str(SAVE),
           "--slow-after", str(at)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == f"STEP {at}":
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL if sig == "KILL" else signal.SIGINT)
            break
    proc.wait(60)
    assert proc.returncode != 0, "the training ended before the kill"
    # On loaded cores this reader lags the worker: the last step it printed before it died is where
    # the kill really landed (a step is printed before its checkpoint is saved).
    last = max([at] + [int(ln.split()[1]) for ln in proc.stdout.read().splitlines() if ln.startswith("STEP ")])
    assert not (tmp_path / "out").exists()

    lines = _worker(tmp_path, "out")
    figures = _figures(lines)
    steps_run = [int(ln.split()[1]) for ln in lines if ln.startswith("STEP ")]
    resumed = figures.get("resumed_from_step", 0)
    # From the last checkpoint saved before the kill: at most one save interval back.
    assert last - SAVE <= resumed <= last and resumed % SAVE == 0, (at, last, resumed)
    if last > SAVE:
        assert resumed > 0
    # The resumed process ran the remaining steps only, to the same total.
    assert steps_run == list(range(resumed + 1, STEPS + 1)) and figures["steps"] == STEPS
    # Same final weights as the uninterrupted training, bit for bit.
    a, b = _weights(uninterrupted / "out"), _weights(tmp_path / "out")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), {k: float((a[k] - b[k]).abs().max()) for k in a}


# -- the same through the loop: `lionloop run` killed in imitate, then `lionloop resume` -------------

LOOP = deep_merge(MICRO, {"train": {"steps_per_round": 60, "save_steps": 10}, "stop": {"max_rounds": 1}})


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lionloop.cli", *args], capture_output=True, text=True, timeout=300)


def _loop_config(folder: Path) -> Path:
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump({**LOOP, "run_dir": str(folder / "run")}))
    return path


def test_lionloop_run_killed_in_imitate_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    assert _cli("run", str(_loop_config(base))).returncode == 0

    killed = tmp_path / "killed"
    killed.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "lionloop.cli", "run", str(_loop_config(killed))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpts = killed / "run" / "student" / "checkpoints" / "round-1"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any((c / "trainer_state.json").exists() for c in ckpts.glob("checkpoint-*")):
            time.sleep(RNG.uniform(0, 0.3))
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(60) == -signal.SIGKILL, "the run ended before a checkpoint was written"
    assert not (killed / "run" / "student" / "round-1").exists()

    res = _cli("resume", str(killed / "run"))
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads(_sqlite_one(killed / "run", "SELECT metrics FROM rounds WHERE round = 1"))
    assert metrics["train"]["resumed_from_step"] >= 10 and metrics["train"]["steps"] == 60
    assert not (killed / "run" / "student" / "checkpoints").exists()  # cleaned once the stage is done
    a = _weights(base / "run" / "student" / "round-1")
    b = _weights(killed / "run" / "student" / "round-1")
    assert all((a[k] == b[k]).all() for k in a)


def _sqlite_one(run: Path, sql: str) -> str:
    from conftest import pool_rows

    return pool_rows(run, sql)[0][0]
