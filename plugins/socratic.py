"""The `socratic` generator: SOCRATIC CoT (Shridhar et al. 2023) inside the loop.

For each hard case the teacher writes a sibling instruction (`Rewrite`), answers it, and
decomposes it (`Decompose`): a list of (sub-question, answer) pairs whose last answer is the final
one; a later sub-question may name an earlier answer as #1, #2, ... A decomposition whose last
answer is not the teacher's answer is rejected. Kept siblings become, for one student with two
task prefixes (the paper's unified mode), or for two (`mode: separate`, the paper's two-model
setup: the decompose rows train a separate "decomposer" student, the rest the main one, which
is the solver):

  <plain prompt>                                  -> <answer>                kind "answer"
  [decompose] <problem>                           -> "q1 ; q2 ; ..."         kind "decompose"
  [solve] <problem> + "q1 = a1" ... + "qk ="      -> ak  (one row per step)  kind "solve"

and the round's evaluation also asks the student(s) as a chain, decomposer then solver
(`lionloop_evaluate_student`), stored as `eval.methods.socratic` beside the direct accuracy.

Options (generate.generators.socratic.options, `SocraticOptions`):
  mode                "unified" (default: one student, two prefixes) or "separate" (a decomposer
                      student of its own; costs a second training run per round)
  decompose_prefix    default "[decompose] "
  solve_prefix        default "[solve] "
  max_steps           longest decomposition kept and longest chain asked (default 6)
  per_case            siblings per hard case (default 1)
  eval_max_new_tokens tokens the student may write for a decomposition (default 64)
  max_calls           paid teacher calls per round (default: quota x 3)
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from lionloop import (
    Candidate,
    Cases,
    Example,
    GeneratorOptions,
    GeneratorSpec,
    GeneratorTeacher,
    Instruction,
    Registry,
    RoundContext,
    Student,
    TeacherRequest,
    answered_siblings,
    enabled_options,
    format_prompt,
    hookimpl,
    meta_reject_filter,
)

NAME = "socratic"
VARIANT_BASE = 2000  # rewrite variants apart from lion's and the other plugins'
SEP = " ; "  # between sub-questions in a decomposer target
DECOMPOSER = "decomposer"  # the student role of the decompose rows in separate mode


class SocraticOptions(GeneratorOptions):
    mode: Literal["unified", "separate"] = Field(
        "unified",
        description="unified: one student with two prefixes; separate: a decomposer student of its own "
        "(costs a second training run per round).",
    )
    decompose_prefix: str = Field("[decompose] ", description="Prompt prefix of the decomposer task.")
    solve_prefix: str = Field("[solve] ", description="Prompt prefix of the solver task.")
    max_steps: int = Field(6, ge=1, description="Longest decomposition kept and longest chain asked.")
    per_case: int = Field(1, ge=1, description="Siblings per hard case.")
    eval_max_new_tokens: int = Field(64, ge=1, description="Tokens the student may write for a decomposition.")


class Step(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str = Field(min_length=1)
    answer: str


class DecomposeOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    steps: list[Step] = Field(min_length=1)


class Decompose(TeacherRequest):
    """Break a problem into sub-questions, each with its answer; the last answer is the final one."""

    kind: ClassVar[str] = "decompose"
    template: ClassVar[str] = "socratic.j2"
    Output: ClassVar[type[BaseModel]] = DecomposeOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""


def decomposer_role(opts: SocraticOptions) -> str:
    """The student the decompose rows train: "" (the main one) or the decomposer's own."""
    return DECOMPOSER if opts.mode == "separate" else ""


def clean_question(q: str) -> str:
    """One line, and no separator inside: sub-questions are joined with ' ; ' for the student."""
    return " ".join(q.replace(";", ",").split())


def decompose_prompt(ins: Instruction, opts: SocraticOptions) -> str:
    return opts.decompose_prefix + format_prompt(ins)


def solve_prompt(ins: Instruction, done: list[tuple[str, str]], question: str, opts: SocraticOptions) -> str:
    """The problem, the sub-questions answered so far, then the one to answer now."""
    solved = "".join(f"{q} = {a}\n" for q, a in done)
    return f"{opts.solve_prefix}{format_prompt(ins)}{solved}{question} =\n"


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_request_type(Decompose)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=3, kinds=("answer", "decompose", "solve"),
                         options=SocraticOptions)


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: SocraticOptions = ctx.options()
    sibs = answered_siblings(
        cases, teacher, ctx, per_case=opts.per_case, variant_base=VARIANT_BASE, origin=NAME,
        requests=lambda ins: [Decompose(instruction=ins.text, input=ins.input, task=ins.task)],
    )
    out = []
    for sib in sibs:
        (dec,) = sib.results
        meta = dict(sib.instruction.meta)
        if not dec.ok:
            meta["reject"] = f"no decomposition ({dec.error})"
        else:
            steps = [[clean_question(s.question), " ".join(s.answer.split())] for s in dec.output.steps]
            meta["steps"] = steps
            if len(steps) > opts.max_steps:
                meta["reject"] = f"decomposition has {len(steps)} steps (max_steps {opts.max_steps})"
            elif steps[-1][1] != sib.answer:
                meta["reject"] = "decomposition does not end in the teacher's answer"
        out.append(Candidate(instruction=replace(sib.instruction, meta=meta), generator=NAME))
    return out


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    if generator != NAME or not instruction.meta.get("steps"):
        return None
    opts: SocraticOptions = enabled_options(ctx, NAME) or SocraticOptions()
    steps = [(q, a) for q, a in instruction.meta["steps"]]
    rows = [
        Example(instruction.id, prompt, answer, "answer", NAME, ctx.round),
        Example(instruction.id, decompose_prompt(instruction, opts), SEP.join(q for q, _ in steps), "decompose", NAME,
                ctx.round, student=decomposer_role(opts)),
    ]
    for j, (q, a) in enumerate(steps):
        rows.append(Example(instruction.id, solve_prompt(instruction, steps[:j], q, opts), a, "solve", NAME, ctx.round))
    return rows


@hookimpl
def lionloop_evaluate_student(instructions: list[Instruction], student: Student, ctx: RoundContext) -> dict[str, str] | None:
    """Decomposer, then the solver once per sub-question with the answers so far: the final
    answer is the solver's last one (no decomposition: an empty answer)."""
    opts: SocraticOptions | None = enabled_options(ctx, NAME)
    if opts is None:
        return None
    max_steps = opts.max_steps
    plans_out = student([decompose_prompt(i, opts) for i in instructions], opts.eval_max_new_tokens,
                        role=decomposer_role(opts))
    plans = {i.id: [q.strip() for q in p.split(";") if q.strip()][:max_steps] for i, p in zip(instructions, plans_out, strict=True)}
    done: dict[str, list[tuple[str, str]]] = {i.id: [] for i in instructions}
    for j in range(max_steps):
        todo = [i for i in instructions if len(plans[i.id]) > j]
        if not todo:
            break
        outs = student([solve_prompt(i, done[i.id], plans[i.id][j], opts) for i in todo])
        for i, a in zip(todo, outs, strict=True):
            done[i.id].append((plans[i.id][j], a.strip()))
    return {i.id: (done[i.id][-1][1] if done[i.id] else "") for i in instructions}
