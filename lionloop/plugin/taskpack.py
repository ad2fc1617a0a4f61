"""What a task pack provides: seeds, a held-out eval set, a verifier and optionally an oracle."""

from __future__ import annotations

from typing import Any, Protocol

from lionloop.records import Instruction
from lionloop.teacher.requests import TeacherRequest


class Oracle(Protocol):
    """A programmatic expert: answers the typed requests of its own domain exactly."""

    def handle(self, request: TeacherRequest) -> dict[str, Any]:
        """The output of `request` as a dict of its Output model; raise Unsupported otherwise."""


class TaskPack(Protocol):
    name: str

    def skills(self) -> list[str]:
        """Skill (task) names, in display order."""

    def seeds(self, per_skill: int) -> list[Instruction]:
        """`per_skill` seed instructions per skill (origin 'seed'), none of them in the eval set.

        The loop puts the first `task.seeds_per_skill` of each skill in the train pool and the
        rest in the cache pool.
        """

    def eval_set(self, per_skill: int) -> list[Instruction]:
        """Held-out instructions (split 'eval'): never trained on, never a generation seed."""

    def verify(self, instruction: Instruction, answer: str) -> bool | None:
        """Whether an answer is right; None when the pack cannot check this instruction."""

    def oracle(self) -> Oracle | None:
        """The pack's programmatic teacher, if it has one."""
