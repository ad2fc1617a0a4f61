"""The records that flow through a round: instructions, candidates, cases, verdicts, examples."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Split = Literal["train", "cache", "eval"]
SPLITS = ("train", "cache", "eval")


def content_id(*parts: str, size: int = 16) -> str:
    """Stable id of some text parts: the same content always gets the same id."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:size]


@dataclass(frozen=True)
class Instruction:
    """One instruction of the pool; `id` is a hash of task, text and input."""

    text: str
    input: str = ""
    task: str = ""
    origin: str = "seed"
    parent_id: str | None = None
    round_born: int = 0
    split: Split = "train"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")

    @property
    def id(self) -> str:
        return content_id(self.task, self.text, self.input)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["id"] = self.id
        row["meta"] = json.dumps(self.meta, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Instruction:
        meta = row.get("meta") or "{}"
        return cls(
            text=row["text"],
            input=row.get("input") or "",
            task=row.get("task") or "",
            origin=row.get("origin") or "seed",
            parent_id=row.get("parent_id"),
            round_born=int(row.get("round_born") or 0),
            split=row.get("split") or "train",
            meta=json.loads(meta) if isinstance(meta, str) else dict(meta),
        )


@dataclass(frozen=True)
class Example:
    """A training row: prompt -> completion, with its kind and loss weight.

    `student` names the model the row trains: "" is the main student (the one evaluated on the
    held-out set); another name trains a separate model of that role, e.g. socratic's
    "decomposer", which a plugin reaches through the evaluate stage's `student(..., role=...)`.
    """

    instruction_id: str
    prompt: str
    completion: str
    kind: str = "answer"
    generator: str = "seed"
    round: int = 0
    weight: float = 1.0
    student: str = ""

    @property
    def id(self) -> str:
        return content_id(self.instruction_id, self.kind, self.prompt, self.completion)


@dataclass(frozen=True)
class Candidate:
    """A new instruction proposed by a generator, before filtering and dedup.

    `examples` may carry ready training rows (e.g. a counterfactual pair); when empty the
    curate stage asks the teacher for an answer and formats rows through the hooks.
    """

    instruction: Instruction
    generator: str
    examples: tuple[Example, ...] = ()

    @property
    def id(self) -> str:
        return self.instruction.id


@dataclass(frozen=True)
class Verdict:
    """The referee's call on one case; scores are None when the judge reply was unusable."""

    instruction_id: str
    round: int
    teacher_score: float | None
    student_score: float | None
    hard: bool | None
    raw: str = ""

    @property
    def diff(self) -> float | None:
        if self.teacher_score is None or self.student_score is None:
            return None
        return self.teacher_score - self.student_score


@dataclass(frozen=True)
class Case:
    """An instruction of the cache pool with both answers and its verdict."""

    instruction: Instruction
    teacher_answer: str
    student_answer: str
    verdict: Verdict


@dataclass
class Cases:
    """What the discriminate stage hands to generators."""

    round: int
    hard: list[Case] = field(default_factory=list)
    easy: list[Case] = field(default_factory=list)
