"""Hook specifications: every way a plugin can extend lionloop, grouped by loop phase."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from lionloop.plugin.context import GeneratorTeacher, RoundContext, Student
    from lionloop.plugin.plan import GeneratorSpec
    from lionloop.plugin.registry import Registry
    from lionloop.records import Candidate, Cases, Example, Instruction

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


@hookspec
def lionloop_generator_spec() -> GeneratorSpec | None:
    """Declare what this plugin's generator consumes (hard/easy cases) and what a candidate costs.

    Called on its own for the plugin of each enabled generator, before `lionloop_generate`;
    None (or no implementation) means the defaults of `GeneratorSpec`.
    """


# -------------------------------------------------------------------------------------------------
# generate
# -------------------------------------------------------------------------------------------------


@hookspec
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate] | None:
    """Turn the round's hard and easy cases into candidate instructions.

    Each implementation is called on its own with a teacher capped at the plugin's budget share
    (its `left` attribute: paid calls still allowed), only with the case kinds its
    `lionloop_generator_spec` consumes, and only when the plugin is enabled in
    `generate.generators`; `ctx.max_candidates` caps what is kept. Under an allocation it is
    called once per group of the pool (task or cluster), with that group's cases and share. An
    exception is reported with the plugin's name and its candidates are dropped. Return None to
    propose nothing.
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
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    """Make the training rows of an accepted instruction from the teacher's answer.

    `prompt` is the student's prompt for the plain answer (see `lionloop_student_prompt`).
    firstresult: the first non-None list is used; the built-in default makes one `answer` row
    `prompt -> answer`. Return None to leave the instruction to the next implementation.
    Where the student learns thinking (`student.thinking: learn`), each returned row of the main
    student that is `prompt -> answer` gets the teacher's thinking put before the answer.
    """


# -------------------------------------------------------------------------------------------------
# evaluate
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def lionloop_student_prompt(instruction: Instruction, ctx: RoundContext) -> str | None:
    """The prompt the student sees for an instruction's plain answer, in training and evaluation.

    Used for the default answer rows and for the evaluate stage (held-out accuracy and the
    answers the referee judges), so both always agree. firstresult: the first non-None string
    wins; None everywhere means `lionloop.student.format_prompt(instruction)`.
    """


@hookspec
def lionloop_evaluate_student(
    instructions: list[Instruction], student: Student, ctx: RoundContext
) -> dict[str, str] | None:
    """Answer held-out instructions another way than one direct prompt (e.g. a chain of prompts).

    Called on its own for each implementation after the direct evaluation, with this round's
    student. Return final answers by instruction id (None: no opinion); they are checked with the
    task pack's verifier and stored under `eval.methods.<plugin>` of the round's metrics, beside
    the direct accuracy, which they never replace. An exception is reported by plugin name.
    """


# -------------------------------------------------------------------------------------------------
# reporting
# -------------------------------------------------------------------------------------------------


@hookspec
def lionloop_round_end(summary: dict[str, Any], ctx: RoundContext) -> None:
    """Called when a round is finished with its metrics: reporting, logging, trackers.

    Results are not collected; an exception is logged with the plugin's name and ignored.
    """
