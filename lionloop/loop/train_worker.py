"""One process of an `accelerate launch` of the imitate stage (see lionloop.loop.launcher).

    python -m lionloop.loop.train_worker JOB.json       # what `accelerate launch -m` runs per process
    python -m lionloop.loop.train_worker follow RUN_DIR --config_file NODE.yaml
                                                        # on each other machine of a multi-node launch

Every process builds the run's trainer plugin from the run's config and trains on the job's rows,
exactly as the inline imitate stage would; rank 0 reports progress and writes `result.json`.

`follow` is for multi-node training when the loop runs on the main machine: with the run directory
on a shared filesystem, it waits for each new job there and joins it with `accelerate launch
--config_file NODE.yaml` (that machine's config: same num_machines and main_process_ip, its own
machine_rank), until the run has finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("lionloop.train_worker")


def run_job(job_file: Path) -> dict[str, Any]:
    from lionloop.loop.launcher import _write, read_rows
    from lionloop.loop.preflight import resolve_trainer
    from lionloop.plugin.manager import get_plugin_manager
    from lionloop.rundir import RunDir

    job_file = Path(job_file)
    job = json.loads(job_file.read_text())
    job_dir = job_file.parent
    rank = int(os.environ.get("RANK", "0"))
    cfg, _ = RunDir(job["run_dir"]).read()
    # The loop chose the stage's steps (train.epochs_per_round scales them with the rows): the job's count.
    train = cfg.train.model_copy(update={"steps_per_round": int(job["steps"])})
    trainer = resolve_trainer(get_plugin_manager().build_registry(), cfg).build(train, cfg.student)
    rows = read_rows(job_dir / "rows.jsonl")
    if len(rows) != job["rows"]:
        raise SystemExit(f"{job_dir / 'rows.jsonl'}: {len(rows)} rows, the job names {job['rows']}")

    def progress(step: int, total: int, loss: float | None = None) -> None:
        if rank == 0:
            _write(job_dir / "progress", f"{step} {total}" + (f" {loss}" if loss is not None else "") + "\n")

    figures = trainer.train(Path(job["base"]), Path(job["out"]), rows, seed=int(job["seed"]), progress=progress)
    if rank == 0:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        result = {"job": job["id"], "figures": {**figures, "launcher": "accelerate", "processes": world,
                                                "rows_sha256": job["rows_sha256"]}}
        _write(job_dir / "result.json", json.dumps(result, indent=2))
    return figures


def die_with_parent() -> None:
    """A rank must not outlive the launch that started it. torch's elastic agent starts each rank
    in a session of its own, so a kill -9 of the launch (its process group) left the ranks training
    on, and a resumed loop launched a second training beside them. On Linux the kernel now kills
    this process when its parent dies (PR_SET_PDEATHSIG); elsewhere nothing changes."""
    from lionloop.processes import die_with_parent as request

    parent = os.getppid()
    if request() and os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def follow(run_dir: Path, config_file: Path, poll_s: float = 2.0) -> None:
    """Join every job the main machine launches, until the run has finished (see the docstring)."""
    from lionloop.rundir import RunDir

    files = RunDir(run_dir)
    joined: set[str] = set()
    while True:
        for pid_file in sorted(files.students.rglob("round-*.launch/pid.json")):
            started = json.loads(pid_file.read_text())
            key = f"{pid_file.parent}:{started.get('job')}:{started.get('started')}"
            if key in joined:
                continue
            joined.add(key)
            if (pid_file.parent / "result.json").exists():
                continue
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
                   "-m", "lionloop.loop.train_worker", str(pid_file.parent / "job.json")]
            log.info("joining %s", pid_file.parent)
            subprocess.run(cmd, check=False)
        if _finished(files):
            return
        time.sleep(poll_s)


def _finished(files: Any) -> bool:
    try:
        lines = files.events.read_text().splitlines()
    except OSError:
        return False
    return any(json.loads(x).get("event") == "stop" for x in lines if x.strip())


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if argv and argv[0] == "follow":
        p = argparse.ArgumentParser(prog="python -m lionloop.loop.train_worker follow")
        p.add_argument("run_dir", type=Path)
        p.add_argument("--config_file", type=Path, required=True)
        args = p.parse_args(argv[1:])
        follow(args.run_dir, args.config_file)
        return
    if len(argv) != 1:
        raise SystemExit("usage: python -m lionloop.loop.train_worker JOB.json | follow RUN_DIR --config_file F")
    if "LOCAL_RANK" in os.environ:  # a rank started by the launch's agent (not a direct call)
        die_with_parent()
    run_job(Path(argv[0]))


if __name__ == "__main__":
    main()
