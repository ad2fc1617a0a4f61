"""A user's seed file (`task.seed_file`): JSONL rows added to any pack's seeds, read with one clear
error per bad row.

Read twice: by `preflight` before the run writes anything (so a bad row costs seconds, not a
bootstrap), and by the bootstrap stage.
"""

from __future__ import annotations

import json
from pathlib import Path

from lionloop.errors import SeedError
from lionloop.records import Instruction

# A row's instruction plus input, in characters: about 8k tokens, a typical teacher context.
# A 5 MB line was accepted before, and every judge prompt of that row carried it.
MAX_ROW_CHARS = 32_000
FIELDS = ("instruction", "input", "task", "split")


def _bad_text(s: str) -> str | None:
    """Why a string cannot be stored, hashed or sent (SQLite and UTF-8 refuse it), or None."""
    if "\x00" in s:
        return f"holds a NUL character at character {s.index(chr(0)) + 1}"
    for i, ch in enumerate(s):
        if "\ud800" <= ch <= "\udfff":
            return f"holds a lone UTF-16 surrogate (\\u{ord(ch):04x}) at character {i + 1}"
    return None


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")  # a BOM is not part of the first row
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise SeedError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {col})") from None


def read_seed_file(path: Path) -> list[Instruction]:
    """Rows like {"instruction": str, "input"?: str, "task"?: str, "split"?: "train"|"cache"}."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise SeedError(f"{path}: is a directory, not a JSONL file") from None
    except OSError as err:
        raise SeedError(f"{path}: cannot read ({err.strerror or err})") from None
    out: list[Instruction] = []
    for n, line in enumerate(_decode(path, raw).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SeedError(f"{path}:{n}: not valid JSON ({err.msg} at column {err.colno})") from None
        except RecursionError:
            raise SeedError(f"{path}:{n}: not valid JSON (nested too deeply)") from None
        if not isinstance(row, dict):
            raise SeedError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        text = row.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise SeedError(f"{path}:{n}: field 'instruction' must be a non-empty string")
        for key in FIELDS[1:]:
            if key in row and not isinstance(row[key], str):
                raise SeedError(f"{path}:{n}: field {key!r} must be a string")
        for key in FIELDS:
            if isinstance(row.get(key), str) and (why := _bad_text(row[key])):
                raise SeedError(f"{path}:{n}: field {key!r} {why}")
        size = len(text) + len(row.get("input", ""))
        if size > MAX_ROW_CHARS:
            raise SeedError(f"{path}:{n}: instruction and input hold {size:,} characters (at most {MAX_ROW_CHARS:,})")
        split = row.get("split", "train")
        if split not in ("train", "cache"):
            raise SeedError(f"{path}:{n}: field 'split' must be 'train' or 'cache', got {split!r}")
        out.append(Instruction(text=text.strip(), input=row.get("input", ""), task=row.get("task", ""), split=split))
    if not out:
        raise SeedError(f"{path}: no seed rows")
    return out
