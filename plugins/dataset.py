"""The `dataset` task pack: your own seed instructions and held-out eval set, from files.

    task:
      pack: dataset
      options:
        train: data/train.jsonl         # JSONL/JSON, CSV/TSV, Parquet, a save_to_disk folder, a hub name
        eval: data/eval.jsonl           # optional: else eval_fraction of the rows is held out
        verifier: {kind: numeric, match: last_line}

Alpaca rows (`instruction`, `input`, `output`) and chat rows (`messages`: a user turn and the
assistant's answer) load as they are; other files name their columns in `columns`. A reference
answer (`output`, the assistant turn, or `columns.reference`) lets the verifier score the eval set;
without references the referee scores it (Lion's relative score). Everything is read and checked
when the run starts, before it writes anything: a bad row is one line naming file, row and column.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from lionloop import (
    ConfigError,
    Instruction,
    PluginOptions,
    Registry,
    SeedError,
    TaskConfig,
    VerifierSpec,
    build_verifier,
    hookimpl,
    reference_problem,
    validate_options,
)

# The pack's own loader module: a sibling, imported as a third-party package imports its parts.
from .dataset_files import (
    FORMATS,
    Columns,
    dedupe,
    format_of,
    read_instructions,
    read_source,
    row_key,
)


class DatasetOptions(PluginOptions):
    """`task.options` of the dataset pack."""

    train: str = Field(description="Seed rows: a .jsonl/.json, .csv/.tsv or .parquet file, a folder written by "
                                   "datasets' save_to_disk, or a hub dataset name (needs the hub).")
    eval: str | None = Field(None, description="Held-out eval rows, in any of the same forms (default: "
                                               "eval_fraction of the train rows is held out).")
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "disk", "hub"] = Field(
        "auto", description="File format; auto: from the file's extension (a folder: save_to_disk).",
    )
    train_split: str = Field("train", description="The split to read from a save_to_disk folder or hub dataset.")
    eval_split: str | None = Field(
        None, description="The eval split of that folder / hub dataset (without an eval file: read from train's source).",
    )
    columns: Columns = Field(default_factory=Columns, description="Column mapping (unset: Alpaca / chat names).")
    eval_fraction: float = Field(
        0.1, gt=0, lt=1, description="Without an eval file or split: this share of each task's rows is held out.",
    )
    holdout_seed: int = Field(0, description="Seed of that held-out draw (independent of the run seed).")
    cache_fraction: float = Field(
        0.0, ge=0, lt=1,
        description="Share of each task's seeds put in the cache pool: judged every round, never trained on "
        "(a small student memorises its train pool). task.cache_per_skill, if set, wins.",
    )
    overlap: Literal["refuse", "remove"] = Field(
        "refuse", description="Seed rows that are also eval rows: refuse to start, or remove them from the seeds.",
    )
    default_task: str = Field("default", min_length=1, description="Task name of rows without a task column.")
    verifier: VerifierSpec = Field(
        default_factory=VerifierSpec,
        description="How answers are checked against references (kind: exact | normalized | numeric | choice | "
        "regex | function | none; match: whole | contains | last_line). A kind's name alone works too.",
    )
    verifier_by_task: dict[str, VerifierSpec] = Field(
        default_factory=dict, description="A verifier per task, for the tasks that need another one.",
    )

    @field_validator("verifier", mode="before")
    @classmethod
    def _kind_name(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v

    @field_validator("verifier_by_task", mode="before")
    @classmethod
    def _kind_names(cls, v: Any) -> Any:
        return {k: ({"kind": s} if isinstance(s, str) else s) for k, s in v.items()} if isinstance(v, dict) else v


assert set(FORMATS) == {"auto", "jsonl", "json", "csv", "tsv", "parquet", "disk", "hub"}  # the Literal above


# Common column names, for `lionloop init --data` (a run itself only reads Alpaca / chat names
# without a mapping: the config says what it reads).
INSTRUCTION_NAMES = ("prompt", "question", "query", "problem", "input_text", "text")
REFERENCE_NAMES = ("output", "answer", "response", "completion", "target", "label", "solution")
INPUT_NAMES = ("input", "context", "passage")
TASK_NAMES = ("type", "subject", "topic", "domain")


def _guess_verifier(refs: list[str]) -> dict[str, Any]:
    """numeric when every reference is a number, choice when every one is an option letter,
    normalized text (found anywhere in the reply) otherwise; none without references."""
    if not refs:
        return {"kind": "none"}
    if all(re.fullmatch(r"\s*-?[\d,]*\.?\d+\s*", r) for r in refs):
        return {"kind": "numeric", "match": "whole"}
    if all(re.fullmatch(r"\s*\(?[A-J]\)?\.?\s*", r) for r in refs):
        return {"kind": "choice", "match": "contains"}
    return {"kind": "normalized", "match": "contains"}


def _length(rows: list[Instruction]) -> int:
    longest = max((len((i.text + i.input + str(i.meta.get("reference", ""))).encode()) for i in rows), default=64)
    return int(min(1024, max(64, 2 ** math.ceil(math.log2(longest + 16)))))


def _rng(*parts: Any) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def by_task(rows: list[Instruction]) -> dict[str, list[Instruction]]:
    out: dict[str, list[Instruction]] = {}
    for ins in rows:
        out.setdefault(ins.task, []).append(ins)
    return out


def draw(rows: list[Instruction], k: int, *seed: Any) -> list[Instruction]:
    """A seeded draw of `k` of the rows, in file order."""
    picked = set(_rng(*seed).sample(range(len(rows)), k)) if k > 0 else set()
    return [r for i, r in enumerate(rows) if i in picked]


class DatasetPack:
    """Seeds, eval set and verifier from the user's files; no oracle (the teacher is an LLM)."""

    name = "dataset"

    def __init__(self, cfg: TaskConfig, seed: int, options: DatasetOptions | None = None) -> None:
        opts = options if options is not None else validate_options(DatasetOptions, cfg.options, "task.options")
        self.cfg, self.seed, self.options = cfg, seed, opts
        self._verifiers = {task: build_verifier(spec) for task, spec in opts.verifier_by_task.items()}
        self._default = build_verifier(opts.verifier)

        train_src = read_source(opts.train, "task.options.train", opts.format, opts.train_split)
        rows, dup_train = dedupe(read_instructions(train_src, opts.columns, opts.default_task, "train", self._check))
        if not rows:
            raise SeedError(f"{train_src.label}: no rows")
        report: dict[str, Any] = {"train": train_src.label, "rows": {"train": len(train_src.rows)},
                                  "duplicates": {"train": dup_train}}
        if opts.eval is not None or opts.eval_split is not None:
            key = "task.options.eval" if opts.eval is not None else "task.options.eval_split"
            eval_src = read_source(opts.eval or opts.train, key, opts.format, opts.eval_split or opts.train_split)
            evals, dup_eval = dedupe(read_instructions(eval_src, opts.columns, opts.default_task, "eval", self._check))
            report.update(eval=eval_src.label, held_out=0)
            report["rows"]["eval"], report["duplicates"]["eval"] = len(eval_src.rows), dup_eval
        else:
            evals, rows = self._hold_out(rows)
            report.update(eval=f"held out: {opts.eval_fraction:.0%} of each task's rows (seed {opts.holdout_seed})",
                          held_out=len(evals))
        rows, report["overlap_removed"] = self._without_overlap(rows, evals, train_src.label)
        if cfg.skills:
            found = list(dict.fromkeys(i.task for i in [*rows, *evals]))
            unknown = [t for t in cfg.skills if t not in found]
            if unknown:
                raise ConfigError(f"task.skills: no rows of task(s) {unknown} (tasks: {found})")
            rows, evals = [r for r in rows if r.task in cfg.skills], [e for e in evals if e.task in cfg.skills]
        evals = self._cap(evals, cfg.eval_per_skill)
        self._seeds, report["capped"] = self._split_cache(rows)
        self._eval = evals
        if not self._eval:
            raise SeedError(f"{report['eval']}: no eval rows left (after duplicates, overlap and task.skills)")
        if not self._seeds:
            raise SeedError(f"{train_src.label}: no seed rows left (after duplicates, overlap and task.skills)")
        counts = Counter(s.split for s in self._seeds)
        report.update(seeds=counts["train"], cache=counts["cache"], eval_rows=len(self._eval),
                      with_reference={"seeds": sum("reference" in s.meta for s in self._seeds),
                                      "eval": sum("reference" in e.meta for e in self._eval)},
                      multi_turn=sum("turns" in i.meta for i in [*self._seeds, *self._eval]),
                      tasks=self.skills())
        self._report = report

    # -- what the loop asks -----------------------------------------------------------------------

    def skills(self) -> list[str]:
        return list(dict.fromkeys(i.task for i in [*self._seeds, *self._eval]))

    def seeds(self) -> list[Instruction]:
        return list(self._seeds)

    def eval_set(self) -> list[Instruction]:
        return list(self._eval)

    def read_eval(self, spec: str, key: str = "--eval-file") -> list[Instruction]:
        """Held-out rows from another file or dataset (`lionloop evaluate --eval-file`), read as the
        run read its own: its columns, task names and verifiers, and its format where the name does
        not tell one (a folder or hub dataset: its eval split, else its train split). Exact
        duplicates dropped; a bad row is one error naming file, row and column, as at a run's start."""
        opts = self.options
        path = Path(spec).expanduser()
        named = format_of(path) if path.exists() else None
        if path.exists() and named is None and opts.format == "auto":
            raise ConfigError(f"{key}: cannot tell the format of {spec} from its name: give it one of "
                              ".jsonl, .json, .csv, .tsv, .parquet (or a save_to_disk folder)")
        src = read_source(spec, key, "auto" if named else opts.format, opts.eval_split or opts.train_split)
        rows, _ = dedupe(read_instructions(src, opts.columns, opts.default_task, "eval", self._check))
        if not rows:
            raise SeedError(f"{src.label}: no rows")
        return rows

    def verify(self, instruction: Instruction, answer: str) -> bool | None:
        return self._verifier(instruction.task)(answer, instruction.meta.get("reference"), instruction)

    def oracle(self) -> None:
        return None

    @property
    def has_verifier(self) -> bool:
        return any(v.spec.kind != "none" for v in [self._default, *self._verifiers.values()])

    @property
    def scoring(self) -> str:
        """The verifier where eval rows carry references it can check, else the referee."""
        checkable = any("reference" in e.meta and self._verifier(e.task).spec.kind != "none" for e in self._eval)
        return "verifier" if checkable else "referee"

    def report(self) -> dict[str, Any]:
        return dict(self._report)

    @classmethod
    def init_config(cls, data: str) -> dict[str, Any]:
        """Config fields for `lionloop init --pack dataset --data FILE`: the file, the column
        mapping it needs (guessed from common names), a verifier suited to its references, an
        OpenAI-compatible teacher to point at your server, and a student that fits its rows."""
        src = read_source(data, "--data")
        cols = src.columns
        options: dict[str, Any] = {"train": data}
        mapping: dict[str, str] = {}
        if "instruction" not in cols and "messages" not in cols:
            found = next((c for c in INSTRUCTION_NAMES if c in cols), None)
            if found is None:
                raise ConfigError(f"--data: {src.label} has no 'instruction' or 'messages' column and none of "
                                  f"{', '.join(INSTRUCTION_NAMES)} (columns: {', '.join(cols)}): name yours in "
                                  "task.options.columns.instruction")
            mapping["instruction"] = found
            for key, names in (("reference", REFERENCE_NAMES), ("input", INPUT_NAMES)):
                hit = next((c for c in names if c in cols and c != found), None)
                if hit:
                    mapping[key] = hit
        if not any(c in cols for c in ("task", "category")):
            hit = next((c for c in TASK_NAMES if c in cols), None)
            if hit:
                mapping["task"] = hit
        if mapping:
            options["columns"] = mapping
        rows = read_instructions(src, Columns(**mapping), "default", "train")
        refs = [str(r) for i in rows if (r := i.meta.get("reference")) is not None and not isinstance(r, list)]
        options["verifier"] = _guess_verifier(refs)
        out: dict[str, Any] = {
            "name": Path(data).stem.replace(".", "-") or "own-data",
            "task": {"pack": "dataset", "options": options},
            "teacher": {"backend": "openai", "model": "teacher", "base_urls": ["http://127.0.0.1:8000/v1"]},
            # Byte-level tiny student: one token per byte; room for the longest rows seen.
            "student": {"max_length": _length(rows), "max_new_tokens": 64},
        }
        if refs:
            out["judge"] = {"mode": "both"}  # free: the verifier audits the referee's calls
        return out

    # -- loading ----------------------------------------------------------------------------------

    def _verifier(self, task: str) -> Any:
        return self._verifiers.get(task, self._default)

    def _check(self, task: str, reference: Any) -> str | None:
        """Why a reference can never be matched by its task's verifier (its row is refused)."""
        return reference_problem(self._verifier(task).spec, reference)

    def _hold_out(self, rows: list[Instruction]) -> tuple[list[Instruction], list[Instruction]]:
        """(eval, seeds): `eval_fraction` of each task's rows, drawn with `holdout_seed`; a task
        with two rows or more gives at least one and keeps at least one."""
        frac, held = self.options.eval_fraction, set()
        for task, group in by_task(rows).items():
            if len(group) < 2:
                continue
            k = min(len(group) - 1, max(1, int(frac * len(group) + 0.5)))  # half up, not to even
            held.update(i.id for i in draw(group, k, "holdout", self.options.holdout_seed, task))
        evals = [replace(i, split="eval") for i in rows if i.id in held]
        kept = [i for i in rows if i.id not in held]
        return evals, kept

    def _without_overlap(self, rows: list[Instruction], evals: list[Instruction], label: str) -> tuple[list[Instruction], int]:
        in_eval = {row_key(e): e for e in evals}
        overlap = [s for s in rows if row_key(s) in in_eval]
        if overlap and self.options.overlap == "refuse":
            s = overlap[0]
            e = in_eval[row_key(s)]
            raise ConfigError(
                f"task.options.overlap: {len(overlap)} seed row(s) are also eval rows, e.g. {s.meta['source']} = "
                f"{e.meta['source']} ({s.text[:50]!r}); remove them from a file, or set overlap: remove "
                "to drop them from the seeds"
            )
        return [s for s in rows if row_key(s) not in in_eval], len(overlap)

    @staticmethod
    def _cap(rows: list[Instruction], per_task: int | None) -> list[Instruction]:
        if per_task is None:
            return rows
        keep = {i.id for group in by_task(rows).values() for i in group[:per_task]}
        return [r for r in rows if r.id in keep]

    def _split_cache(self, rows: list[Instruction]) -> tuple[list[Instruction], int]:
        """Seeds with their split: per task, the cache share (task.cache_per_skill, else
        cache_fraction, drawn) goes to the cache pool; task.seeds_per_skill caps the train pool."""
        cfg, split = self.cfg, {}
        for task, group in by_task(rows).items():
            # Every task keeps at least one seed to train on.
            if cfg.cache_per_skill is not None:
                n = min(cfg.cache_per_skill, len(group) - 1)
                cache = group[len(group) - n:] if n > 0 else []
            else:
                n = min(int(self.options.cache_fraction * len(group) + 0.5), len(group) - 1)
                cache = draw(group, n, "cache", self.options.holdout_seed, task)
            in_cache = {i.id for i in cache}
            train = [i for i in group if i.id not in in_cache]
            cap = cfg.seeds_per_skill if cfg.seeds_per_skill is not None else len(train)
            split.update({i.id: "train" for i in train[:cap]})
            split.update({i.id: "cache" for i in cache})
        out = [replace(r, split=split[r.id]) for r in rows if r.id in split]
        return out, len(rows) - len(out)


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_task_pack("dataset", DatasetPack, options=DatasetOptions)
