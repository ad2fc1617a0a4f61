"""A run you can watch, on real processes: `lionloop status` tells running (round, stage, since
when, progress, pid) from stopped (Ctrl-C), crashed (kill -9) and finished; one writer per run
directory (a second `resume` is refused at once, naming the holder; a dead holder's lock is taken
over); Ctrl-C prints where the run stopped and the resume command; progress shows when piped;
`resume` on a finished run says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MICRO, deep_merge

pytestmark = pytest.mark.slow

# Slow enough, on any machine, to be caught running: the oracle teacher takes 0.1 s a call (about
# 36 calls at bootstrap and 40-80 per round), and the student trains 300 steps per round (with 100,
# a quiet CI machine finished the run while the test was still checking the second writer).
WATCH_CFG = deep_merge(MICRO, {"teacher": {"latency_ms": 100}, "train": {"steps_per_round": 300}})
ENV = {**os.environ, "LIONLOOP_PROGRESS_SECONDS": "0.5", "COLUMNS": "200"}


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lionloop.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def _state(run: Path) -> dict[str, Any]:
    res = _cli("status", str(run), "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["state"]


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lionloop.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=ENV)


def _wait_running(run: Path, proc: subprocess.Popen, stage: str | None, deadline_s: float = 300) -> dict[str, Any]:
    """Poll `lionloop status --json` until the run is in `stage` (None: any) with some progress shown."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        if (run / "run.json").exists():
            state = _state(run)
            if (state["status"] == "running" and stage in (None, state.get("stage"))
                    and state.get("progress", {}).get("done")):
                return state
        time.sleep(0.3)
    raise AssertionError(f"never saw the run in {stage}")


def test_status_tells_running_stopped_crashed_and_finished(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**WATCH_CFG, "run_dir": str(run)}))

    # Running: the lock names this process; status shows round, stage, since when and progress.
    proc = _start("run", str(cfg))
    state = _wait_running(run, proc, None)
    # Held where it is while the test looks (on loaded cores the run once finished before the
    # Ctrl-C below): a stopped process still holds its lock and is alive to `status`.
    os.killpg(proc.pid, signal.SIGSTOP)
    assert state["pid"] == proc.pid and state["round"] in (0, 1, 2) and state["since"] <= time.time()
    assert state["progress"]["task"] and state["progress"]["done"] > 0
    text = _cli("status", str(run)).stdout
    assert f"running (pid {proc.pid}): " in text and " since " in text

    # One writer: a second resume is refused at once, naming the holder.
    t0 = time.time()
    second = _cli("resume", str(run))
    assert second.returncode == 1 and f"is being run by pid {proc.pid}" in second.stderr
    assert time.time() - t0 < 30 and "Traceback" not in second.stderr

    # Ctrl-C: where it stopped and the command that continues it; exit 130 (delivered as it wakes).
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    state = _state(run)
    assert state["status"] == "stopped" and state.get("stage")
    where = "bootstrap" if state["round"] == 0 else f"round {state['round']}"
    assert f"stopped in {where} · {state['stage']}" in err and f"lionloop resume {run}" in err
    assert f"continue with: lionloop resume {run}" in _cli("status", str(run)).stdout
    outputs = [out]

    # kill -9 mid-stage: crashed (nobody holds the lock, nothing said how it ended).
    proc = _start("resume", str(run))
    running = _wait_running(run, proc, None)
    os.killpg(proc.pid, signal.SIGKILL)
    outputs.append(proc.communicate()[0])
    state = _state(run)
    assert state["status"] == "crashed" and state.get("round", running["round"]) >= running["round"]

    # The dead process's lock is taken over; the run finishes.
    res = _cli("resume", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    outputs.append(res.stdout)
    state = _state(run)
    assert (state["status"], state["stop_reason"], state["round"]) == ("finished", "max_rounds", 2)
    lock = json.loads((run / "run.lock").read_text())
    assert lock["pid"] != proc.pid  # rewritten by the process that took it over
    text = _cli("status", str(run)).stdout
    assert "finished: stop max_rounds after round 2" in text and "{'" not in text  # tables, not dicts

    # Piped output: plain progress lines instead of a bar; each round's training ends with its loss.
    lines = [ln for out in outputs for ln in out.splitlines()]
    trained = [ln for ln in lines if ln.startswith("  training on") and "/300 (100%) done in" in ln]
    assert len(trained) >= 2 and all(", loss " in ln for ln in trained), lines[-40:]
    assert any(ln.startswith("  teacher answers (bootstrap): ") for ln in lines)

    # Resume of a finished run: says so, changes nothing.
    again = _cli("resume", str(run))
    assert again.returncode == 0 and "has finished (stop: max_rounds after round 2): nothing to resume" in again.stdout


def test_a_stage_saved_before_its_process_died_reads_as_done_not_under_way(micro_run: Path, tmp_path: Path) -> None:
    """Killed after a stage committed its rows and marker but before its end reached events.jsonl:
    `status` says the run crashed after that stage, not in it (before: 'crashed in round 1 ·
    curate', a stage `resume` does not run again). Staged on a copy of a finished micro run: its
    stop marker removed, a start of round 1's curate logged just before that stage's marker."""
    import shutil
    import sqlite3

    from lionloop.cli.status import state_line

    run = tmp_path / "run"
    shutil.copytree(micro_run, run)
    with sqlite3.connect(run / "pool.sqlite") as conn:
        conn.execute("DELETE FROM stages WHERE round = 2 AND stage = 'decide'")
        (finished,) = conn.execute("SELECT finished FROM stages WHERE round = 1 AND stage = 'curate'").fetchone()
    with open(run / "events.jsonl", "a") as f:
        f.write(json.dumps({"t": finished - 0.5, "event": "stage_start", "round": 1, "stage": "curate"}) + "\n")
    state = _state(run)
    assert (state["status"], state["round"], state["stage"], state.get("done")) == ("crashed", 1, "curate", True)
    assert " after round 1 · curate (its work saved)" in state_line(state)

    with sqlite3.connect(run / "pool.sqlite") as conn:  # the stage's work not saved: it is where the run stopped
        conn.execute("DELETE FROM stages WHERE round = 1 AND stage = 'curate'")
    state = _state(run)
    assert state["stage"] == "curate" and "done" not in state and " in round 1 · curate (started" in state_line(state)
