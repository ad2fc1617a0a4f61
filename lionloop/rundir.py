"""A run directory: the one place that knows every file a run keeps, and how to read its identity.

```
RUN_DIR/
  config.yaml          the config as run (env var names only, never secrets)
  run.json             run id, creation time, lionloop version
  pool.sqlite          the pool (instructions, answers, verdicts, rows, metrics) and, by default,
                       the teacher-call cache
  checkpoints.sqlite   LangGraph's checkpoints (what `lionloop resume` continues from)
  events.jsonl         a tail-able log of stage starts and ends
  index.faiss          the FAISS index of the stored embeddings (a rebuildable cache of them)
  index.meta.json      which stored vectors index.faiss holds (model, count, last rowid, kind)
  student/             checkpoints: base/, round-N/, <role>/round-N/ (round-N.launch/: an accelerate launch's job)
  batches/             `vllm run-batch` jobs of a batch teacher: <tag>.input.jsonl, .output.jsonl, .log
```
"""

from __future__ import annotations

import json
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
    def batches(self) -> Path:
        return self.path / "batches"

    @property
    def students(self) -> Path:
        return self.path / "student"

    def student(self, round: int, role: str = "") -> Path:
        """A trained student's checkpoint: round >= 1; `role` "" is the main student."""
        return self.students / (f"{role}/round-{round}" if role else f"round-{round}")

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
