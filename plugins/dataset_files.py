"""Reading the `dataset` pack's rows from JSONL/JSON, CSV/TSV, Parquet, a folder written by
`datasets.save_to_disk`, or a Hugging Face hub dataset, each row with the number a person finds it
by (a file's line, or a record's position), so every error names file, row and column."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from lionloop import ConfigError, Instruction, PluginOptions, SeedError

FORMATS = ("auto", "jsonl", "json", "csv", "tsv", "parquet", "disk", "hub")
_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
              ".parquet": "parquet", ".pq": "parquet"}
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*")


@dataclass
class Source:
    """One file's (or dataset split's) rows: (number, mapping) pairs and the columns seen."""

    label: str  # how messages name it: the path as given, or "hub:NAME[SPLIT]"
    unit: str  # "line" (JSONL, CSV: the line an editor shows) or "row" (records, 1-based)
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    def where(self, n: int, column: str | None = None) -> str:
        return f"{self.label}: {self.unit} {n}" + (f", column {column!r}" if column else "")


def read_source(spec: str, key: str, fmt: str = "auto", split: str = "train") -> Source:
    """The rows of `spec` (a path or a hub name) read in format `fmt`; `key` is the config path
    naming it (`task.options.train`). A folder or hub dataset with several splits gives `split`."""
    path = Path(spec).expanduser()
    if fmt == "hub" or (fmt == "auto" and not path.exists() and "/" in spec and _HUB_NAME.fullmatch(spec)):
        return _read_hub(spec, key, split)
    if not path.exists():
        raise ConfigError(f"{key}: no such file or folder: {spec}")
    if fmt == "auto":
        fmt = format_of(path) or ""
        if not fmt:
            raise ConfigError(f"{key}: cannot tell the format of {spec} from its name; set task.options.format "
                              f"({', '.join(f for f in FORMATS if f not in ('auto', 'hub'))})")
    if fmt == "disk":
        return _read_disk(path, spec, key, split)
    if path.is_dir():
        raise ConfigError(f"{key}: {spec} is a folder, not a {fmt} file")
    if fmt == "parquet":
        return _read_parquet(path, spec)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading BOM (Excel's CSVs) is not data
    except UnicodeDecodeError as err:
        raise SeedError(f"{spec}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except OSError as err:
        raise SeedError(f"{spec}: cannot read ({err.strerror})") from None
    if fmt in ("csv", "tsv"):
        return _read_csv(text, spec, "\t" if fmt == "tsv" else ",")
    if fmt == "json":
        whole = _json_records(text, spec)
        if whole is not None:
            return whole
    return _read_jsonl(text, spec)


def format_of(path: Path) -> str | None:
    """The format an existing path's name (or being a folder) tells; None where it tells none."""
    return "disk" if path.is_dir() else _BY_SUFFIX.get(path.suffix.lower())


def _columns(rows: list[tuple[int, dict[str, Any]]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, row in rows:
        seen.update(dict.fromkeys(str(k) for k in row))
    return list(seen)


def _read_jsonl(text: str, label: str) -> Source:
    src = Source(label, "line")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SeedError(f"{label}: line {n}: not valid JSON ({err.msg}, column {err.colno})") from None
        if not isinstance(row, dict):
            raise SeedError(f"{label}: line {n}: expected a JSON object, got {type(row).__name__}")
        src.rows.append((n, row))
    src.columns = _columns(src.rows)
    return src


def _json_records(text: str, label: str) -> Source | None:
    """A .json file holding one array of objects; None when it is JSON Lines after all."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}, a common wrapper
    if not isinstance(data, list):
        return None if isinstance(data, dict) else _fail(f"{label}: expected an array of objects, got {type(data).__name__}")
    src = Source(label, "row")
    for n, row in enumerate(data, 1):
        if not isinstance(row, dict):
            raise SeedError(f"{label}: row {n}: expected a JSON object, got {type(row).__name__}")
        src.rows.append((n, row))
    src.columns = _columns(src.rows)
    return src


def _fail(message: str) -> Any:
    raise SeedError(message)


def _read_csv(text: str, label: str, delimiter: str) -> Source:
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    src = Source(label, "line")
    try:
        header = reader.fieldnames or []
        if len(set(header)) != len(header):
            dup = next(h for h in header if header.count(h) > 1)
            raise SeedError(f"{label}: line 1: column {dup!r} appears twice in the header")
        for row in reader:
            if None in row:  # DictReader files surplus cells under the key None
                raise SeedError(f"{label}: line {reader.line_num}: {len(header) + len(row[None])} cells, "
                                f"the header has {len(header)} columns")
            src.rows.append((reader.line_num, {k: ("" if v is None else v) for k, v in row.items()}))
    except csv.Error as err:
        raise SeedError(f"{label}: line {reader.line_num}: not valid CSV ({err})") from None
    src.columns = list(header)
    return src


def _read_parquet(path: Path, label: str) -> Source:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many kinds; one line names the file
        raise SeedError(f"{label}: cannot read as Parquet ({type(err).__name__}: {_one_line(err)})") from None
    src = Source(label, "row", [(n, row) for n, row in enumerate(table.to_pylist(), 1)], list(table.column_names))
    return src


def _from_datasets(ds: Any, label: str) -> Source:
    return Source(label, "row", [(n, row) for n, row in enumerate(ds.to_list(), 1)], list(ds.column_names))


def _pick_split(ds: Any, split: str, key: str, label: str) -> Any:
    from datasets import DatasetDict

    if not isinstance(ds, DatasetDict):
        return ds
    if split not in ds:
        raise ConfigError(f"{key}: {label} holds the splits {', '.join(ds)}, not {split!r}: name one in "
                          "task.options.train_split / eval_split")
    return ds[split]


def _read_disk(path: Path, label: str, key: str, split: str) -> Source:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise ConfigError(f"{key}: {label} is a folder but not one written by datasets' save_to_disk "
                          "(no dataset_info.json or dataset_dict.json)") from None
    except Exception as err:  # noqa: BLE001
        raise SeedError(f"{label}: cannot load with datasets ({type(err).__name__}: {_one_line(err)})") from None
    ds = _pick_split(ds, split, key, label)
    return _from_datasets(ds, f"{label}[{split}]" if (path / "dataset_dict.json").exists() else label)


def _read_hub(name: str, key: str, split: str) -> Source:
    """A hub dataset where the hub is reachable (or datasets' local cache has it)."""
    import datasets

    label = f"hub:{name}[{split}]"
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - offline, unknown name, no such split: one line each
        text = _one_line(err)
        offline = any(s in text.lower() for s in ("offline", "connection", "resolve", "network", "couldn't reach",
                                                  "internet", "max retries"))
        if offline:
            raise ConfigError(
                f"{key}: {name!r} is not a local file or folder, and the Hugging Face hub cannot be reached to "
                f"load it (offline). Where there is network, save it with datasets' save_to_disk (or as a "
                f"JSONL/Parquet file) and point {key} at that"
            ) from None
        raise ConfigError(f"{key}: cannot load {name!r} from the Hugging Face hub ({type(err).__name__}: {text})") from None
    return _from_datasets(ds, label)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def missing(value: Any) -> bool:
    """An empty cell: None, NaN (pandas, Parquet), or a blank string."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


# -- rows to instructions -------------------------------------------------------------------------


class Columns(PluginOptions):
    """Which column holds what (unset: the Alpaca / chat names)."""

    instruction: str | None = Field(None, description="The instruction (default: 'instruction').")
    input: str | None = Field(None, description="Optional input/context shown after it (default: 'input' if present).")
    reference: str | None = Field(
        None, description="Optional reference answer (default: 'output', or the chat's assistant turn).",
    )
    task: str | None = Field(None, description="Optional task/category column (default: 'task' or 'category' if present).")
    messages: str | None = Field(None, description="A chat column: a list of {role, content} (default: 'messages').")


def _text(src: Source, n: int, column: str, value: Any, required: bool) -> str | None:
    """A cell as text: strings as they are, numbers written out; anything else is refused."""
    if missing(value):
        if required:
            raise SeedError(f"{src.where(n, column)}: empty")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SeedError(f"{src.where(n, column)}: expected text, got {type(value).__name__}")
    return str(value).strip()


def _reference(src: Source, n: int, column: str, value: Any) -> Any:
    """A reference answer: text, or a list of acceptable answers."""
    if isinstance(value, (list, tuple)):
        refs = [_text(src, n, column, v, False) for v in value]
        refs = [r for r in refs if r]
        return refs or None
    return _text(src, n, column, value, False)


def _chat(src: Source, n: int, column: str, value: Any) -> tuple[str, Any, str, int]:
    """(instruction, reference, system, user turns) of a chat row: its first user turn and the
    assistant's answer to it. Later turns are left out (the pack counts such rows)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise SeedError(f"{src.where(n, column)}: expected a list of {{role, content}} messages")
    user: list[str] = []
    reference, system = None, ""
    for k, msg in enumerate(value, 1):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise SeedError(f"{src.where(n, column)}: message {k} is not a {{role, content}} object")
        content = _text(src, n, column, msg["content"], False) or ""
        role = msg["role"]
        if role == "system" and not user:
            system = content
        elif role == "user":
            user.append(content)
        elif role == "assistant" and len(user) == 1 and reference is None:
            reference = content or None
    if not user or not user[0]:
        raise SeedError(f"{src.where(n, column)}: {'no user turn' if not user else 'the first user turn is empty'}")
    return user[0], reference, system, len(user)


def read_instructions(
    src: Source, cols: Columns, default_task: str, split: str,
    check: Callable[[str, Any], str | None] | None = None,
) -> list[Instruction]:
    """The rows of a source as instructions, with meta `reference` (if any) and `source` (file:row).

    `check(task, reference)` says why a reference can never be matched (its row is refused)."""
    chat_col = cols.messages or ("messages" if cols.instruction is None and "messages" in src.columns else None)
    plain = chat_col is None
    names = {"instruction": cols.instruction or ("instruction" if plain else None),
             "input": cols.input or ("input" if plain and "input" in src.columns else None),
             "reference": cols.reference or ("output" if plain and "output" in src.columns else None),
             "task": cols.task or next((c for c in ("task", "category") if c in src.columns), None),
             "messages": chat_col}
    if plain and cols.instruction is None and src.rows and "instruction" not in src.columns:
        raise ConfigError(f"task.options.columns.instruction: {src.label} has no 'instruction' or 'messages' "
                          f"column (columns: {', '.join(src.columns) or 'none'}): name the instruction column")
    for key, name in names.items():
        if name is not None and src.rows and name not in src.columns:
            raise ConfigError(f"task.options.columns.{key}: {src.label} has no column {name!r} "
                              f"(columns: {', '.join(src.columns)})")
    ref_col = names["reference"] or chat_col
    out = []
    for n, row in src.rows:
        system, turns = "", 1
        if not plain:
            if chat_col not in row:
                raise SeedError(f"{src.where(n, chat_col)}: missing")
            text, reference, system, turns = _chat(src, n, chat_col, row[chat_col])
            if cols.reference is not None:
                reference = _reference(src, n, cols.reference, row.get(cols.reference))
        else:
            col = names["instruction"]
            if col not in row:
                raise SeedError(f"{src.where(n, col)}: missing")
            text = _text(src, n, col, row[col], True)
            reference = _reference(src, n, ref_col, row.get(ref_col)) if ref_col else None
        inp = _text(src, n, names["input"], row.get(names["input"]), False) if names["input"] else None
        task = (_text(src, n, names["task"], row.get(names["task"]), False) if names["task"] else None) or default_task
        meta: dict[str, Any] = {"source": f"{src.label}:{n}"}
        if reference is not None:
            problem = check(task, reference) if check else None
            if problem:
                raise SeedError(f"{src.where(n, ref_col)}: {problem}")
            meta["reference"] = reference
        if system:
            meta["system"] = system
        if turns > 1:
            meta["turns"] = turns  # only the first exchange is kept
        out.append(Instruction(text=text or "", input=inp or "", task=task, split=split, meta=meta))
    return out


def row_key(ins: Instruction) -> tuple[str, str]:
    return (" ".join(ins.text.split()), " ".join(ins.input.split()))


def dedupe(rows: list[Instruction]) -> tuple[list[Instruction], int]:
    """Rows with exact duplicates (same instruction and input) dropped; the first one stays."""
    seen: set[tuple[str, str]] = set()
    out = []
    for ins in rows:
        if row_key(ins) not in seen:
            seen.add(row_key(ins))
            out.append(ins)
    return out, len(rows) - len(out)


