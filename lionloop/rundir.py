"""A run directory: the one place that knows every file a run keeps, and how to read its identity.

```
RUN_DIR/
  config.yaml          the config as run (env var names only, never secrets)
  run.json             run id, creation time, lionloop version
  pool.sqlite          the pool (instructions, answers, verdicts, rows, metrics) and, by default,
                       the teacher-call cache
  checkpoints.sqlite   LangGraph's checkpoints (what `lionloop resume` continues from)
  events.jsonl         a tail-able log of stage starts and ends, progress, notices, stops
  run.lock             held (flock) by the one `lionloop run` / `resume` writing the run: its pid
  index.faiss          the FAISS index of the stored embeddings (a rebuildable cache of them)
  index.meta.json      which stored vectors index.faiss holds (model, count, last rowid, kind)
  student/             checkpoints: base/, round-N/, <role>/round-N/; checkpoints/ while training
                       (round-N.launch/: an accelerate launch's job)
  batches/             `vllm run-batch` jobs of a batch teacher: <tag>.input.jsonl, .output.jsonl, .log
  evaluate.sqlite      `lionloop evaluate --referee`'s paid calls (and a batch teacher's jobs for them)
  logs/                crash logs: the traceback of an error lionloop did not expect
```
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionloop.errors import RunError


@dataclass(frozen=True)
class RunDir:
    """Paths of one run's files; `read()` gives its config and run id."""

    path: Path

    def __init__(self, path: Path | str) -> None:
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def run_file(self) -> Path:
        return self.path / "run.json"

    @property
    def pool(self) -> Path:
        return self.path / "pool.sqlite"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints.sqlite"

    @property
    def events(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def lock(self) -> Path:
        return self.path / "run.lock"

    @property
    def index(self) -> Path:
        return self.path / "index.faiss"

    @property
    def index_meta(self) -> Path:
        return self.path / "index.meta.json"

    @property
    def index_ids(self) -> Path:
        """The id list older lionloop versions wrote beside the index (removed when it is rebuilt)."""
        return self.path / "index.ids.json"

    @property
    def logs(self) -> Path:
        """Crash logs (`lionloop.cli.common.crash`): the CLI prints one line and the log's path."""
        return self.path / "logs"

    @property
    def evaluations(self) -> Path:
        """`lionloop evaluate --referee`'s paid calls (teacher answers, judgements): kept out of the
        run's own cache and pool, so a second evaluation of the same answers pays nothing."""
        return self.path / "evaluate.sqlite"

    @property
    def batches(self) -> Path:
        return self.path / "batches"

    @property
    def students(self) -> Path:
        return self.path / "student"

    def student(self, round: int, role: str = "") -> Path:
        """A trained student's checkpoint: round >= 1; `role` "" is the main student."""
        return self.students / (f"{role}/round-{round}" if role else f"round-{round}")

    def student_at(self, round: int, base: str | None, role: str = "") -> Path:
        """The student a round answers with: round 0 is the base model every role starts from
        (`student.base`, a pretrained model; else the tiny student built at bootstrap)."""
        if round == 0:
            return Path(base) if base else self.students / "base"
        return self.student(round, role)

    def train_checkpoints(self, round: int, role: str = "") -> Path:
        """A trainer's checkpoints inside one imitate stage (`train.save_steps`): what a killed
        stage resumes from; removed once the stage is recorded as done."""
        return self.students / "checkpoints" / (f"{role}/round-{round}" if role else f"round-{round}")

    def launch(self, round: int, role: str = "") -> Path:
        """An `accelerate launch` of a round's training: job.json, rows.jsonl, progress, result.json, launch.log."""
        student = self.student(round, role)
        return student.with_name(student.name + ".launch")

    def is_run(self) -> bool:
        return self.run_file.exists() and self.config.exists()

    def info(self) -> dict[str, Any]:
        """run.json, or {} when there is none (a run dir being created, or a foreign one)."""
        try:
            data = json.loads(self.run_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def run_id(self) -> str:
        """The run id from run.json; the directory name when there is none."""
        return str(self.info().get("run_id") or self.path.name)

    def read(self) -> tuple[Any, str]:
        """The run's config (with `run_dir` set to this directory) and its run id."""
        from lionloop.config import load_config

        if not self.is_run():
            raise RunError(f"{self.path}: not a lionloop run directory (no {self.run_file.name} / {self.config.name})")
        cfg = load_config(self.config).model_copy(update={"run_dir": self.path})
        run_id = self.info().get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise RunError(f"{self.run_file}: no run_id (the file is damaged)")
        return cfg, run_id

    def cache_path(self, cfg: Any) -> Path:
        """The teacher-call cache this run reads and writes (its pool unless `teacher.cache_path`)."""
        return Path(cfg.teacher.cache_path) if cfg.teacher.cache_path else self.pool


# -- the run lock: one writer per run directory ------------------------------------------------------
#
# `flock` on RUN_DIR/run.lock, held for the life of the writing process: the kernel drops it when
# that process ends however it ends (kill -9 included), so a stale lock is never a problem: the
# next writer simply gets it. The file holds the holder's pid and start time for messages.


class RunLock:
    """`with RunLock(run_dir):` — the run directory's one writer, or a RunError naming the holder."""

    def __init__(self, run_dir: RunDir | Path | str, wait_s: float = 2.0) -> None:
        self.files = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.wait_s = wait_s  # rides out a reader's brief probe (`lock_holder`)
        self._fd: int | None = None
        self.previous: dict[str, Any] = {}  # what the file said before: a stale holder's pid

    def acquire(self) -> RunLock:
        fd = os.open(self.files.lock, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_lock(fd)
                    os.close(fd)
                    raise busy(self.files, holder) from None
                time.sleep(0.05)
        self.previous = _read_lock(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": round(time.time(), 3), "host": socket.gethostname(),
                                  "argv": sys.argv[1:]}).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(run_dir: RunDir | Path | str) -> dict[str, Any] | None:
    """The lock file's contents when a process holds the run's lock (it is running), else None.

    Probes with a shared lock for an instant (a starting writer waits that out)."""
    files = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    try:
        fd = os.open(files.lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_lock(fd) or {"pid": None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def busy(files: RunDir, holder: dict[str, Any]) -> RunError:
    """The error of a second writer: who holds the run and since when."""
    return RunError(f"{files.path} is being run by pid {holder.get('pid', '?')} (since "
                    f"{_clock(holder.get('since'))}): one `lionloop run`/`resume` per run directory at a time")


def _read_lock(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _clock(t: Any) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if isinstance(t, (int, float)) else "?"
