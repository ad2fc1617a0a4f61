"""What a task pack provides: seeds, a held-out eval set, a verifier and optionally an oracle."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, Protocol

from lionloop.records import Instruction
from lionloop.teacher.requests import TeacherRequest

Scoring = Literal["verifier", "referee"]


class Oracle(Protocol):
    """A programmatic expert: answers the typed requests of its own domain exactly."""

    def handle(self, request: TeacherRequest) -> dict[str, Any]:
        """The output of `request` as a dict of its Output model; raise Unsupported otherwise."""


class TaskPack(Protocol):
    """Built by its factory from the `task` config section (and its validated `task.options`).

    Optional, read where present (see the helpers below): `scoring` ("verifier" or "referee": how
    the held-out set is scored when `evaluate.scoring` is auto; default "verifier"),
    `has_verifier` (False: `verify` never checks anything; default True), `report()` (what
    loading the pack's data did: rows read, duplicates dropped, ...; shown in the bootstrap
    figures) and `labels(task)` (a classification task's label set). For `lionloop evaluate`:
    `eval_set(per_skill=K)` (a larger held-out sample the pack draws) and `read_eval(spec)` (held-out
    instructions, split 'eval', from a file or dataset of the user's, read as the pack reads its own);
    and `reference(instruction)` (the answer `verify` checks against, to show beside a wrong one).
    """

    name: str

    def skills(self) -> list[str]:
        """Skill (task) names, in display order."""

    def seeds(self) -> list[Instruction]:
        """The seed instructions (origin 'seed'), none of them in the eval set, each with split
        'train' (trained on) or 'cache' (judged every round, never trained on). How many is the
        pack's business: `task.seeds_per_skill` / `cache_per_skill` and its own options."""

    def eval_set(self) -> list[Instruction]:
        """Held-out instructions (split 'eval'): never trained on, never a generation seed."""

    def verify(self, instruction: Instruction, answer: str) -> bool | None:
        """Whether an answer is right; None when the pack cannot check this instruction.

        A pack checking against reference answers reads `instruction.meta["reference"]`; where
        an instruction has none (e.g. a generated one), the loop's verifier referee puts the
        teacher's answer there (`with_reference`)."""

    def oracle(self) -> Oracle | None:
        """The pack's programmatic teacher, if it has one."""


def pack_scoring(pack: Any) -> Scoring:
    """How the pack's held-out set is scored by default: "verifier" unless it says "referee"."""
    return "referee" if getattr(pack, "scoring", "verifier") == "referee" else "verifier"


def pack_has_verifier(pack: Any) -> bool:
    return bool(getattr(pack, "has_verifier", True))


def pack_report(pack: Any) -> dict[str, Any]:
    """What loading the pack's data did ({} for packs that do not say)."""
    report = getattr(pack, "report", None)
    return dict(report()) if callable(report) else {}


def pack_reference(pack: Any, instruction: Instruction) -> str | None:
    """The answer the pack's verifier checks `instruction` against, to show (None: it does not say)."""
    ref = getattr(pack, "reference", None)
    out = ref(instruction) if callable(ref) else instruction.meta.get("reference")
    return None if out is None else str(out)


def with_reference(instruction: Instruction, reference: str | None) -> Instruction:
    """The instruction with `reference` as its reference answer, unless it carries one already."""
    if reference is None or instruction.meta.get("reference") not in (None, ""):
        return instruction
    return replace(instruction, meta={**instruction.meta, "reference": reference})
