"""Storage faults: a damaged pool is found before anything runs on it and is left as it was; a pool
that lost committed writes (a truncated WAL) is refused, not resumed into a smaller pool; a missing
FAISS index is rebuilt from the stored vectors; a full disk mid-stage ends with one line and a run
that resumes to the same pool once there is room."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import MICRO, pool_rows
from typer.testing import CliRunner

from lionloop.bench.common import events


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(res) -> str:  # noqa: ANN001
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    return lines[0]


def _ids(run: Path) -> list[str]:
    return sorted(r[0] for r in pool_rows(run, "SELECT id FROM instructions"))


def _damage(pool: Path, how: str) -> None:
    data = bytearray(pool.read_bytes())
    if how == "truncated":
        pool.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "page-overwritten":
        page = 4096
        data[2 * page : 4 * page] = os.urandom(2 * page)
        pool.write_bytes(bytes(data))
    elif how == "header-garbage":
        data[:100] = os.urandom(100)
        pool.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "page-overwritten", "header-garbage"])
def test_a_damaged_pool_is_found_at_start_and_left_as_it_was(micro_run: Path, tmp_path: Path, how: str) -> None:
    from lionloop.cli.app import app

    run = _copy(micro_run, tmp_path / "run")
    for wal in run.glob("*.sqlite-*"):
        wal.unlink()
    _damage(run / "pool.sqlite", how)
    before, n_events = _digest(run / "pool.sqlite"), len(events(run))
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["resume", str(run)])
    assert res.exit_code == 1
    line = _one_line(res)
    assert "pool.sqlite" in line and "nothing was written" in line, line
    assert time.perf_counter() - t0 < 20
    # The last good state is not overwritten: the file is byte for byte what it was, no stage ran.
    assert _digest(run / "pool.sqlite") == before and len(events(run)) == n_events


def test_a_pool_behind_its_checkpoint_is_refused(micro_run: Path, tmp_path: Path) -> None:
    """What a truncated WAL leaves: a sound pool lacking stages the graph checkpoint records as
    done. Resuming skipped them and ended with a smaller pool (train 48 vs 66), exit 0."""
    from lionloop.cli.app import app

    run = _copy(micro_run, tmp_path / "run")
    with sqlite3.connect(run / "pool.sqlite") as conn:  # round 2 lost, as an older copy of the file
        conn.execute("DELETE FROM stages WHERE round = 2")
    before, n_events = _digest(run / "pool.sqlite"), len(events(run))
    res = CliRunner().invoke(app, ["resume", str(run)])
    assert res.exit_code == 1
    line = _one_line(res)
    assert "lacks stages the run's checkpoint records as done (round 2 decide)" in line, line
    assert _digest(run / "pool.sqlite") == before and len(events(run)) == n_events


@pytest.mark.slow
def test_a_truncated_wal_is_noticed(tmp_path: Path) -> None:
    """The real thing: `lionloop run` killed in round 2 (its pool's writes still in the WAL), the
    WAL cut short, then `lionloop resume`."""
    from lionloop.cli.app import app

    run = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    # Three rounds, so round 2's discriminate is not the run's last stage: killed there in a two-round
    # run, a fast (quiet) machine could already have closed the pool, and its WAL with it.
    cfg.write_text(yaml.safe_dump({**MICRO, "run_dir": str(run), "stop": {**MICRO["stop"], "max_rounds": 3}}))
    proc = subprocess.Popen([sys.executable, "-m", "lionloop.cli", "run", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any(e["event"] == "stage_start" and (e["round"], e["stage"]) == (2, "discriminate") for e in events(run)):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(60) == -signal.SIGKILL, "the run ended before round 2"
    wal = run / "pool.sqlite-wal"
    assert wal.exists() and wal.stat().st_size > 100_000, "the pool's writes are not in its WAL"
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size // 3)
    n_events = len(events(run))
    res = CliRunner().invoke(app, ["resume", str(run)])
    assert res.exit_code == 1
    line = _one_line(res)
    assert "lacks stages the run's checkpoint records as done" in line or "pool.sqlite" in line, line
    assert len(events(run)) == n_events  # no stage ran on it


def test_a_missing_faiss_index_is_rebuilt_from_the_stored_vectors(micro_run: Path, tmp_path: Path) -> None:
    import numpy as np

    from lionloop.rundir import RunDir
    from lionloop.stores.pool import Pool
    from lionloop.stores.vectors import VectorIndex

    run = _copy(micro_run, tmp_path / "run")
    files = RunDir(run)
    files.index.unlink()
    files.index_meta.unlink()
    pool = Pool(files.pool)
    try:
        (model,) = {r[0] for r in pool.query("SELECT DISTINCT model FROM embeddings")}
        stored = pool.embeddings(model)
        dim = len(stored[0][1]) // 4
        index = VectorIndex(pool, files, model, dim)
        assert files.index.exists() and json.loads(files.index_meta.read_text())["count"] == len(stored)
        probe = np.stack([np.frombuffer(v, dtype=np.float32) for _, v in stored[:5]])
        sims, names = index.search(probe, 1)
        assert [n[0] for n in names] == [k for k, _ in stored[:5]] and (sims[:, 0] > 0.999).all()
    finally:
        pool.close()
    # The read-only search command works on a run without its index too (rebuilt in memory).
    shutil.rmtree(run)
    run = _copy(micro_run, tmp_path / "run2")
    RunDir(run).index.unlink()
    from lionloop.cli.app import app

    res = CliRunner().invoke(app, ["pool", "search", str(run), "add 3 4", "-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert "rebuilt" in res.output


# -- a full disk ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_disk_full_mid_stage_is_one_line_and_the_run_resumes(micro_run: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated (runs anywhere): SQLite's own "database or disk is full" in the bootstrap stage."""
    from lionloop.cli.app import app
    from lionloop.stores.pool import Pool

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**MICRO, "run_dir": str(tmp_path / "run")}))
    real = Pool.add_embeddings

    def full(self, model, vectors):  # noqa: ANN001, ANN202
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Pool, "add_embeddings", full)
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code == 1
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("error: disk full") and f"lionloop resume {tmp_path / 'run'}" in line, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    log = Path(line.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert log.parent == tmp_path / "run" / "logs" and "database or disk is full" in log.read_text()
    monkeypatch.setattr(Pool, "add_embeddings", real)
    res = CliRunner().invoke(app, ["resume", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert _ids(tmp_path / "run") == _ids(micro_run)


def _mount_tmpfs(where: Path, size: str) -> str | None:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stderr.strip() or "mount failed")


def _fill(folder: Path) -> Path:
    """Take every free byte of the file system holding `folder`."""
    filler = folder / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
# Imitate: the trainer's writes (torch and safetensors) fail there, not SQLite's (the simulated
# test above covers SQLite's "database or disk is full" in bootstrap).
@pytest.mark.parametrize(("round_", "stage"), [(1, "imitate")])
def test_a_real_full_disk_mid_stage(micro_run: Path, tmp_path: Path, round_: int, stage: str) -> None:
    """The run directory on a small tmpfs, filled to the last byte when the stage starts; then room
    is made and the run resumes to the same pool. Needs the right to mount (root in a container
    that allows it): skipped with the reason otherwise."""
    mnt = tmp_path / "mnt"
    why = _mount_tmpfs(mnt, "64m")
    if why:
        pytest.skip(f"cannot mount a small tmpfs here: {why}")
    try:
        run = mnt / "run"
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(yaml.safe_dump({**MICRO, "run_dir": str(run)}))
        env = {**os.environ, "TMPDIR": str(tmp_path)}  # the crash log's fallback folder
        proc = subprocess.Popen([sys.executable, "-m", "lionloop.cli", "run", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=env)
        filler = None
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if any(e["event"] == "stage_start" and (e["round"], e["stage"]) == (round_, stage) for e in events(run)):
                filler = _fill(mnt)
                break
            time.sleep(0.01)
        assert filler is not None, "the run ended before the stage"
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 1, stderr[-2000:]
        errors = [ln for ln in stderr.splitlines() if ln.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: disk full"), stderr[-3000:]
        assert f"lionloop resume {run}" in errors[0] and "Traceback" not in stderr
        failed_in = next(e for e in reversed(events(run)) if e["event"] == "stage_start")
        print(f"disk full in round {failed_in['round']} {failed_in['stage']}: {errors[0]}")
        filler.unlink()
        res = subprocess.run([sys.executable, "-m", "lionloop.cli", "resume", str(run)], capture_output=True,
                             text=True, timeout=300, env=env)
        assert res.returncode == 0, res.stderr[-2000:]
        assert _ids(run) == _ids(micro_run)
        assert pool_rows(run, "SELECT COALESCE(SUM(repaid), 0) FROM llm_cache")[0][0] == 0
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
