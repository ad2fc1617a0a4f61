"""Hook specifications: every way a plugin can extend lionloop, grouped by loop phase."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from lionloop.context import RoundContext
    from lionloop.records import Candidate, Cases, Example, Instruction
    from lionloop.registry import Registry
    from lionloop.teacher import Teacher

PROJECT = "lionloop"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------------------------------
# setup
# -------------------------------------------------------------------------------------------------


@hookspec
def lionloop_register(registry: Registry) -> None:
    """Register components by name: task packs, teacher backends, trainers, request types.

    Called once per plugin manager, for every plugin; results are not collected.
    """


# -------------------------------------------------------------------------------------------------
# generate
# -------------------------------------------------------------------------------------------------


@hookspec
def lionloop_generate(cases: Cases, teacher: Teacher, ctx: RoundContext) -> list[Candidate] | None:
    """Turn the round's hard and easy cases into candidate instructions.

    Each implementation is called on its own with a teacher capped at the plugin's budget share,
    and only when the plugin is enabled in `generate.generators`; an exception is reported with
    the plugin's name and its candidates are dropped. Return None to propose nothing.
    """


# -------------------------------------------------------------------------------------------------
# curate
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def lionloop_filter_candidate(candidate: Candidate, ctx: RoundContext) -> str | None:
    """Reject a candidate before dedup by returning the reason; None lets it through.

    firstresult: the first non-None reason wins and the other implementations are skipped.
    """


@hookspec(firstresult=True)
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext
) -> list[Example] | None:
    """Make the training rows of an accepted instruction from the teacher's answer.

    firstresult: the first non-None list is used; the built-in default makes one `answer` row.
    Return None to leave the instruction to the next implementation.
    """


# -------------------------------------------------------------------------------------------------
# reporting
# -------------------------------------------------------------------------------------------------


@hookspec
def lionloop_round_end(summary: dict[str, Any], ctx: RoundContext) -> None:
    """Called when a round is finished with its metrics: reporting, logging, trackers.

    Results are not collected; an exception is logged with the plugin's name and ignored.
    """
