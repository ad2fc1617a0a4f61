"""`train.launcher: accelerate`: the imitate stage as `accelerate launch`, waited on by the loop.

The loop writes a job (RUN_DIR/student/[<role>/]round-N.launch/: `job.json`, `rows.jsonl`) and
starts `accelerate launch [--config_file train.accelerate_config] [train.accelerate_args] -m
lionloop.loop.train_worker job.json` in a session of its own. Every process of the launch calls
the run's trainer plugin exactly as the inline path does (`Trainer.train(base, out, rows, seed)`),
so what the plugin does — DDP, FSDP or DeepSpeed as accelerate's config says, mid-stage
checkpoints under the run dir and resuming from them — is the same in both; rank 0 writes
`result.json`. The loop shows rank 0's progress (`progress`), then reads the result.

Crashes: the job's id is a hash of its rows and arguments.
* The loop killed while training runs: the launch lives on (its own session); `lionloop resume`
  finds its pid file, waits for it instead of starting a second one, and reads its result (or
  finds the result already written).
* The launch killed (or failing): the stage fails with the exit status and the log's last lines;
  `lionloop resume` launches again, and the trainer continues from its last checkpoint.
* Ctrl-C in the loop stops the launch too (SIGTERM to its process group).

`train.batch_size` stays the global batch: each of N processes takes batch_size / N rows a step,
so a run trains on the same rows for the same number of steps whatever N is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from lionloop.config import RunConfig
from lionloop.errors import ConfigError, LionloopError
from lionloop.processes import free_port, pid_alive, signal_group
from lionloop.records import Example
from lionloop.rundir import RunDir

log = logging.getLogger(__name__)

POLL_S = 0.5
WORKER = "lionloop.loop.train_worker"


class LaunchError(LionloopError, RuntimeError):
    """The accelerate launch failed; the message has its exit status and the log's tail."""


# -- the user's accelerate config ---------------------------------------------------------------------


def _arg(args: Sequence[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` in an argument list (the last one wins)."""
    value = None
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def _config_file(cfg: RunConfig) -> dict[str, Any]:
    path = cfg.train.accelerate_config
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"train.accelerate_config: {path}: cannot read it ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"train.accelerate_config: {path}: not an accelerate config (a mapping expected)")
    return data


def _setting(cfg: RunConfig, name: str) -> int:
    """An integer launch setting: --name in train.accelerate_args, else the config file's, else 1."""
    value = _arg(cfg.train.accelerate_args, f"--{name}")
    if value is None:
        value = _config_file(cfg).get(name)
    try:
        return max(1, int(value or 1))
    except (TypeError, ValueError):
        raise ConfigError(f"train.accelerate_args: --{name} {value!r} is not a number") from None


def world_size(cfg: RunConfig) -> int:
    """Processes the launch starts over all machines (accelerate's num_processes is the total)."""
    return _setting(cfg, "num_processes")


def check_launcher(cfg: RunConfig) -> None:
    """Preflight: the accelerate config exists and the global batch splits over its processes."""
    if cfg.train.launcher != "accelerate":
        return
    path = cfg.train.accelerate_config
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"train.accelerate_config: {path} is not a file (write one with `accelerate config`)")
    n = world_size(cfg)
    if cfg.train.batch_size % n:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} does not split over the launch's {n} "
                          "processes (it is the global batch: each process takes batch_size / processes)")


# -- the job ----------------------------------------------------------------------------------------


def write_job(job_dir: Path, run_dir: Path, rnd: int, role: str, base: Path, out: Path,
              rows: Sequence[Example], seed: int, steps: int) -> dict[str, Any]:
    """job.json and rows.jsonl (atomically); returns the job, whose `id` hashes everything in it."""
    job_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(e.__dict__, ensure_ascii=False, sort_keys=True) + "\n" for e in rows)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    job = {"run_dir": str(Path(run_dir).resolve()), "round": rnd, "role": role, "base": str(Path(base).resolve()),
           "out": str(Path(out).resolve()), "seed": seed, "steps": steps, "rows": len(rows), "rows_sha256": digest}
    job["id"] = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]
    _write(job_dir / "rows.jsonl", text)
    _write(job_dir / "job.json", json.dumps(job, indent=2))
    return job


def read_rows(path: Path) -> list[Example]:
    return [Example(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def command(cfg: RunConfig, job_file: Path) -> list[str]:
    """The `accelerate launch` command line (as a module of this interpreter: no console script needed)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if cfg.train.accelerate_config is not None:
        cmd += ["--config_file", str(cfg.train.accelerate_config)]
    args = list(cfg.train.accelerate_args)
    multi_node = _multi_node(cfg)
    if not multi_node and not any(a.startswith("--main_process_port") for a in args):
        cmd += ["--main_process_port", str(free_port())]  # two runs on one machine must not collide
    return [*cmd, *args, "-m", WORKER, str(job_file)]


def _multi_node(cfg: RunConfig) -> bool:
    return _setting(cfg, "num_machines") > 1


# -- the loop's side ----------------------------------------------------------------------------------


def launch_training(cfg: RunConfig, run_dir: Path, rnd: int, role: str, base: Path, out: Path,
                    rows: Sequence[Example], seed: int,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train through `accelerate launch` and return the trainer's figures (see the module docstring)."""
    files = RunDir(run_dir)
    job_dir = files.launch(rnd, role)
    job = write_job(job_dir, run_dir, rnd, role, base, out, rows, seed, cfg.train.steps_per_round)
    result = _result(job_dir, job)
    if result is not None and Path(job["out"]).exists():
        log.info("round %d%s: the launch had finished before the loop stopped; reading its result", rnd, role and f" ({role})")
        return result
    running = _read_json(job_dir / "pid.json")
    proc: subprocess.Popen[bytes] | None = None
    if running and running.get("job") == job["id"] and pid_alive(int(running["pid"])):
        pid = int(running["pid"])
        log.info("round %d: waiting for the accelerate launch started before the loop stopped (pid %d)", rnd, pid)
    else:
        (job_dir / "result.json").unlink(missing_ok=True)
        cmd = command(cfg, job_dir / "job.json")
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
               "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        with open(job_dir / "launch.log", "ab") as logf:
            logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            logf.flush()
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        pid = proc.pid
        _write(job_dir / "pid.json", json.dumps({"pid": pid, "job": job["id"], "started": time.time()}))
        _note_launch(job_dir)
    code = _wait(job_dir, pid, proc, progress, cfg.train.steps_per_round)
    result = _result(job_dir, job)
    if result is None:
        tail = (job_dir / "launch.log").read_text(errors="replace")[-1500:] if (job_dir / "launch.log").exists() else ""
        lines = [x for x in tail.splitlines() if x.strip()][-6:]
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        raise LaunchError(f"accelerate launch for round {rnd}{f' ({role})' if role else ''} {how} without a result "
                          f"({job_dir / 'launch.log'}): " + " | ".join(x.strip() for x in lines)[-600:])
    return result


def _note_launch(job_dir: Path) -> None:
    """Count launches of this job (what a resume test checks: attached, not launched again)."""
    path = job_dir / "launches"
    n = int(path.read_text() or 0) if path.exists() else 0
    path.write_text(str(n + 1))


def _result(job_dir: Path, job: dict[str, Any]) -> dict[str, Any] | None:
    res = _read_json(job_dir / "result.json")
    if res is None or res.get("job") != job["id"]:
        return None
    return dict(res["figures"])


def _wait(job_dir: Path, pid: int, proc: subprocess.Popen[bytes] | None,
          progress: Callable[[int, int], None] | None, total: int) -> int | None:
    """Wait for the launch to end, showing rank 0's progress; Ctrl-C stops the launch too."""
    shown = -1
    try:
        while True:
            done = proc.poll() is not None if proc is not None else not pid_alive(pid)
            if progress is not None:
                step, loss = _step(job_dir)
                if step != shown:
                    progress(step, total) if loss is None else progress(step, total, loss)
                    shown = step
            if done:
                return proc.returncode if proc is not None else None
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        signal_group(pid, signal.SIGTERM)
        raise


def _step(job_dir: Path) -> tuple[int, float | None]:
    """Rank 0's last step and, when logged, its loss (`step total [loss]`)."""
    try:
        parts = (job_dir / "progress").read_text().split()
        return int(parts[0]), float(parts[2]) if len(parts) > 2 else None
    except (OSError, ValueError, IndexError):
        return 0, None
