"""Two writers on one run directory. Without the one-writer run lock two `lionloop resume` on one
run both paid the teacher for the same calls (the review saw 97 repaid); the lock refuses the
second at once, naming the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import MICRO, deep_merge, pool_rows

from lionloop.bench.common import events

# Slow teacher calls keep both resumes inside the judging stage at once.
CFG = deep_merge(MICRO, {"teacher": {"latency_ms": 40}})


@pytest.mark.slow
def test_two_resumes_on_one_run_dir_repay_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**CFG, "run_dir": str(run)}))
    cli = [sys.executable, "-m", "lionloop.cli"]
    proc = subprocess.Popen([*cli, "run", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any(e["event"] == "stage_start" and e["stage"] == "discriminate" for e in events(run)):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(60) == -signal.SIGKILL, "the run ended before judging"
    both = [subprocess.Popen([*cli, "resume", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in both]
    codes = sorted(p.returncode for p in both)
    assert codes[0] == 0 and codes[1] != 0, (codes, errs)
    refused = next(e for p, e in zip(both, errs, strict=True) if p.returncode != 0)
    assert "is being run by pid" in refused and "Traceback" not in refused, refused
    # With the lock: one resume runs, the other is refused with the holder's pid; nothing is paid twice.
    assert pool_rows(run, "SELECT COALESCE(SUM(repaid), 0) FROM llm_cache")[0][0] == 0
