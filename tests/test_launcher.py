"""`train.launcher: accelerate`: the imitate stage as `accelerate launch` with 2 CPU processes
(torchrun starts them, gloo joins them: accelerate's MULTI_CPU type needs MPI, so the config says
MULTI_GPU and the trainer runs on the CPU as it does inline). Same rows, same steps, loss within
tolerance of the single-process run; a kill of the launch or of the loop is survived by resume."""

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
from conftest import MICRO, deep_merge, micro_config

from lionloop.errors import ConfigError
from lionloop.loop.launcher import check_launcher, command, world_size

TWO_CPU = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU", "num_machines": 1,
           "num_processes": 2, "machine_rank": 0, "mixed_precision": "no", "gpu_ids": "all"}


def acc_config(tmp_path: Path, **over: Any) -> Path:
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump({**TWO_CPU, **over}))
    return path


def test_the_launch_is_checked_at_the_door(tmp_path: Path) -> None:
    conf = acc_config(tmp_path)
    ok = micro_config(tmp_path / "r", train={"launcher": "accelerate", "accelerate_config": str(conf)})
    check_launcher(ok)
    assert world_size(ok) == 2
    cmd = command(ok, tmp_path / "job.json")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--main_process_port" in cmd
    assert cmd[-3:] == ["-m", "lionloop.loop.train_worker", str(tmp_path / "job.json")]
    # --num_processes in accelerate_args wins over the file; the global batch must split over it.
    odd = micro_config(tmp_path / "r", train={"launcher": "accelerate", "accelerate_config": str(conf),
                                              "accelerate_args": ["--num_processes", "3"]})
    assert world_size(odd) == 3
    with pytest.raises(ConfigError, match=r"train\.batch_size: 16 does not split over the launch's 3 processes"):
        check_launcher(odd)
    with pytest.raises(ConfigError, match=r"train\.accelerate_config: .*nope\.yaml is not a file"):
        check_launcher(micro_config(tmp_path / "r", train={"launcher": "accelerate",
                                                           "accelerate_config": str(tmp_path / "nope.yaml")}))
    # Multi-node: the ports are the config's (every machine must agree), none is picked here.
    multi = micro_config(tmp_path / "r", train={"launcher": "accelerate", "accelerate_config": str(
        acc_config(tmp_path, num_machines=2, main_process_ip="10.0.0.1", main_process_port=29555))})
    assert "--main_process_port" not in command(multi, tmp_path / "job.json")
    check_launcher(micro_config(tmp_path / "r"))  # inline: nothing to check


# -- real launches ----------------------------------------------------------------------------------

ONE_ROUND = {"stop": {"max_rounds": 1}, "train": {"batch_size": 6}}  # 18 seed rows: 3 global batches


def _figures(run: Path) -> dict[str, Any]:
    from lionloop.inspect.status import run_status

    return run_status(run)["rounds"][0]["train"]


@pytest.mark.slow
def test_two_processes_train_on_the_same_rows_for_the_same_steps(tmp_path: Path) -> None:
    from lionloop.loop.runner import start

    conf = acc_config(tmp_path)
    one, _ = start(micro_config(tmp_path / "one", **ONE_ROUND))
    two, _ = start(micro_config(tmp_path / "two", **deep_merge(ONE_ROUND, {
        "train": {"launcher": "accelerate", "accelerate_config": str(conf)}})))
    a, b = _figures(one), _figures(two)
    print(f"train_loss inline {a['train_loss']:.5f} vs 2 processes {b['train_loss']:.5f}; "
          f"last logged loss {a['last_loss']:.5f} vs {b['last_loss']:.5f}")
    assert b["launcher"] == "accelerate" and b["processes"] == 2
    assert (b["rows"], b["steps"]) == (a["rows"], a["steps"]) == (18, MICRO["train"]["steps_per_round"])
    # The rows handed to the launch are the rows the inline run trained on.
    from lionloop.loop.launcher import read_rows
    from lionloop.stores.pool import Pool

    rows = read_rows(two / "student" / "round-1.launch" / "rows.jsonl")
    assert [r.__dict__ for r in rows] == [e.__dict__ for e in Pool(one / "pool.sqlite").examples()]
    # Same global batches, gradients averaged over 2 processes: the loss follows the inline run.
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.02)
    assert b["last_loss"] == pytest.approx(a["last_loss"], rel=0.02)
    assert (two / "student" / "round-1" / "config.json").exists()


@pytest.mark.slow
def test_a_launch_trains_the_steps_the_loop_chose_for_its_rows(tmp_path: Path) -> None:
    # With train.epochs_per_round the stage's steps follow its rows, not train.steps_per_round:
    # the processes of the launch train the job's count, as the inline trainer would.
    from lionloop.loop.runner import start

    run, _ = start(micro_config(tmp_path / "run", **deep_merge(ONE_ROUND, {"train": {
        "launcher": "accelerate", "accelerate_config": str(acc_config(tmp_path)), "epochs_per_round": 2}})))
    b = _figures(run)
    assert b["launcher"] == "accelerate" and b["rows"] == 18
    assert b["steps"] == 6 != MICRO["train"]["steps_per_round"]  # ceil(2 x 18 / 6)


def _run(args: list[str], conf_file: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "lionloop.cli", *args], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _step(run: Path) -> int:
    try:
        return int((run / "student" / "round-1.launch" / "progress").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _ranks(job_dir: Path) -> list[int]:
    """Live processes training this job (their command line names its job.json)."""
    needle = str(job_dir / "job.json").encode()
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and needle in (proc / "cmdline").read_bytes() \
                    and (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def _long_run(tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    conf = tmp_path / "cfg.yaml"
    conf.write_text(yaml.safe_dump(deep_merge(MICRO, {
        "run_dir": str(run), "stop": {"max_rounds": 1},
        "train": {"steps_per_round": 400, "batch_size": 6, "launcher": "accelerate",
                  "accelerate_config": str(acc_config(tmp_path))}})))
    return run, conf


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["the launch", "the loop"])
def test_a_kill_of_either_process_is_resumed(tmp_path: Path, victim: str) -> None:
    run, conf = _long_run(tmp_path)
    loop = _run(["run", str(conf)])
    deadline = time.time() + 600
    while time.time() < deadline and loop.poll() is None and _step(run) < 5:
        time.sleep(0.2)
    assert _step(run) >= 5, loop.stderr.read().decode()[-2000:] if loop.stderr else ""
    job_dir = run / "student" / "round-1.launch"
    launch_pid = json.loads((job_dir / "pid.json").read_text())["pid"]
    if victim == "the launch":
        os.killpg(launch_pid, signal.SIGKILL)
        loop.wait(120)
        err = loop.stderr.read().decode()
        assert loop.returncode != 0 and "accelerate launch for round 1 was killed by signal 9" in err, err[-2000:]
        assert "Traceback" not in err
        # The ranks die with their launch (torch's agent starts each in a session of its own: they
        # trained on after the kill and finished before the resume could launch again).
        deadline = time.time() + 5
        while _ranks(job_dir) and time.time() < deadline:
            time.sleep(0.2)
        assert _ranks(job_dir) == []
    else:
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait()
        assert os.path.exists(f"/proc/{launch_pid}")  # the launch lives on without the loop
    res = subprocess.run([sys.executable, "-m", "lionloop.cli", "resume", str(run)], capture_output=True, text=True,
                         timeout=900, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert res.returncode == 0, res.stderr[-3000:]
    # Killed launch: launched again. Killed loop: the running launch was waited on, not doubled.
    assert int((job_dir / "launches").read_text()) == (2 if victim == "the launch" else 1)
    figures = _figures(run)
    assert figures["steps"] == 400 and figures["processes"] == 2
    assert (run / "student" / "round-1" / "config.json").exists()
