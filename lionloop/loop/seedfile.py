"""A user seed file (`task.seed_file`): JSONL rows added to any pack's seeds, read with one clear
error per bad row (checked at preflight, before the run writes anything)."""

from __future__ import annotations

import json
from pathlib import Path

from lionloop.errors import SeedError
from lionloop.records import Instruction


def read_seed_file(path: Path) -> list[Instruction]:
    """Rows like {"instruction": str, "input"?: str, "task"?: str, "split"?: "train"|"cache"}."""
    out: list[Instruction] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SeedError(f"{path}: cannot read ({err})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SeedError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise SeedError(f"{path}:{n}: expected a JSON object")
        text = row.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise SeedError(f"{path}:{n}: field 'instruction' must be a non-empty string")
        for key in ("input", "task", "split"):
            if key in row and not isinstance(row[key], str):
                raise SeedError(f"{path}:{n}: field {key!r} must be a string")
        split = row.get("split", "train")
        if split not in ("train", "cache"):
            raise SeedError(f"{path}:{n}: field 'split' must be 'train' or 'cache', got {split!r}")
        out.append(Instruction(text=text.strip(), input=row.get("input", ""), task=row.get("task", ""), split=split))
    if not out:
        raise SeedError(f"{path}: no seed rows")
    return out
