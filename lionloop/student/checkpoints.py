"""Checkpoints inside one training run, so a kill or Ctrl-C in the imitate stage resumes from the
last one rather than from step 0.

The imitate stage hands a trainer a folder of its own (`RunDir.train_checkpoints`) and removes it
once the stage is recorded as done. A trainer saves there every `train.save_steps` steps
(transformers' `checkpoint-N` folders) and, when it starts, asks `resume_point` for the last
complete checkpoint written *for the same training*: a fingerprint of the rows, base model and
settings guards against resuming someone else's optimizer state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

FINGERPRINT = "lionloop-resume.json"
_STEP = re.compile(r"checkpoint-(\d+)$")


def _complete(checkpoint: Path) -> bool:
    """transformers writes trainer_state.json last: a checkpoint without a readable one was cut
    short by the kill."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and isinstance(state.get("global_step"), int)


def resume_point(folder: Path, fingerprint: dict[str, Any]) -> Path | None:
    """Prepare `folder` for a training described by `fingerprint` and return its last complete
    checkpoint, or None (start from step 0). A folder left by a different training is emptied;
    checkpoints cut short are removed."""
    folder = Path(folder)
    blob = json.dumps(fingerprint, sort_keys=True, default=str)
    mark = folder / FINGERPRINT
    try:
        same = mark.read_text() == blob
    except OSError:
        same = False
    if folder.exists() and not same:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not same:
        tmp = mark.with_suffix(".tmp")
        tmp.write_text(blob)
        os.replace(tmp, mark)
    last: Path | None = None
    found = sorted((int(m[1]), p) for p in folder.iterdir() if p.is_dir() and (m := _STEP.search(p.name)))
    for _, path in found:
        if _complete(path):
            last = path
        else:
            shutil.rmtree(path, ignore_errors=True)
    return last


def checkpoint_step(checkpoint: Path) -> int:
    """The training step a `checkpoint-N` folder was saved at."""
    m = _STEP.search(Path(checkpoint).name)
    return int(m[1]) if m else 0


def drop(folder: Path) -> None:
    """Remove a training's checkpoints (its stage is recorded as done)."""
    shutil.rmtree(folder, ignore_errors=True)
