"""The `mt_cot` generator: explanations from LLMs make small reasoners better (Li et al. 2022).

For each hard case the teacher writes a sibling (`Rewrite`), answers it, and explains it by one of
the paper's explanation strategies (`explanation`):

  cot          chain of thought without the answer (`CotExplain`); kept only when its own answer
               is the teacher's answer (else the sibling is rejected)
  rationalize  rationalisation given the answer (`Rationalize`): the teacher explains the answer
  crop         both: the chain of thought where it reaches the answer, else the rationalisation
               (the paper's CROP; the second request is paid only where the first went wrong)

Kept siblings become multi-task rows, the answer task weighted `alpha`, the explanation task
`1 - alpha`, in the student format of `task_format`:

  <plain prompt>                        -> <answer>                 kind "answer" (every format)
  mt_re:  [explain] <question>          -> <explanation>            kind "explain"
  mt_ra:  [rationalize] <question>
          "Answer: <answer>"            -> <explanation>            kind "rationalize"
  mt_cot: [explain] <question>          -> "<explanation> => <answer>"  kind "cot"

In mt_cot format the round's evaluation also asks for the explanation and reads the answer after
the last "=>" (`eval.methods.mt_cot`); the other formats answer directly, as in the paper.

Options (generate.generators.mt_cot.options, `MtCotOptions`):
  explanation         cot, rationalize or crop (default crop)
  task_format         mt_re, mt_ra or mt_cot (default mt_cot)
  alpha               weight of the answer task (default 0.5)
  temperature         the chain of thought's sampling temperature (default 0, greedy as in the paper)
  explain_prefix      prompt prefix of the explanation task (default "[explain] ")
  rationalize_prefix  prompt prefix of the mt_ra task (default "[rationalize] ")
  per_case            siblings per hard case (default 1)
  eval_max_new_tokens tokens the student may write for an explanation (default 64)
  max_calls           paid teacher calls per round (default: quota x 4)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Literal

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
    one_line,
)

NAME = "mt_cot"
VARIANT_BASE = 7000
ARROW = " => "
CALLS = 4  # rewrite, answer, chain of thought, rationalisation (crop pays the last only on a miss)
ROW_KIND = {"mt_re": "explain", "mt_ra": "rationalize", "mt_cot": "cot"}


class MtCotOptions(GeneratorOptions):
    explanation: Literal["cot", "rationalize", "crop"] = Field(
        "crop", description="Explanation strategy: chain of thought, rationalisation given the answer, or CoT with "
        "rationalisation where the CoT misses (CROP).")
    task_format: Literal["mt_re", "mt_ra", "mt_cot"] = Field(
        "mt_cot", description="Student's multi-task format: explanation alone, explanation given the answer, or "
        "explanation then answer.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the answer task; the explanation task weighs 1 - alpha.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature of the chain of thought (0: greedy).")
    explain_prefix: str = Field("[explain] ", description="Prompt prefix of the explanation task.")
    rationalize_prefix: str = Field("[rationalize] ", description="Prompt prefix of the mt_ra task.")
    per_case: int = Field(1, ge=1, description="Siblings per hard case.")
    eval_max_new_tokens: int = Field(64, ge=1, description="Tokens the student may write for an explanation.")


class CotOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rationale: str = Field(min_length=1)
    answer: str


class RationalizeOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rationale: str = Field(min_length=1)


class CotExplain(TeacherRequest):
    """Solve step by step without the answer (MT-CoT's chain-of-thought explanation)."""

    kind: ClassVar[str] = "cot_explain"
    template: ClassVar[str] = "mt_cot.j2"
    Output: ClassVar[type[BaseModel]] = CotOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""
    temperature: float = Field(0.0, ge=0, le=2)


class Rationalize(TeacherRequest):
    """Explain how a question leads to the answer it is given (rationalisation prompting)."""

    kind: ClassVar[str] = "rationalize"
    template: ClassVar[str] = "mt_cot_rationalize.j2"
    Output: ClassVar[type[BaseModel]] = RationalizeOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input", "answer")

    instruction: str
    input: str = ""
    task: str = ""
    answer: str


def final_answer(text: str) -> str:
    return text.rsplit("=>", 1)[-1].strip() if "=>" in text else ""


def explain_prompt(ins: Instruction, opts: MtCotOptions) -> str:
    return opts.explain_prefix + format_prompt(ins)


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_request_type(CotExplain)
    registry.add_request_type(Rationalize)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=CALLS,
                         calls_for=lambda o: CALLS if o.explanation == "crop" else CALLS - 1,
                         kinds=("answer", "explain", "rationalize", "cot"), options=MtCotOptions)


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: MtCotOptions = ctx.options()
    strategy = opts.explanation

    def own(ins: Instruction) -> list[TeacherRequest]:
        return [] if strategy == "rationalize" else [
            CotExplain(instruction=ins.text, input=ins.input, task=ins.task, temperature=opts.temperature)]

    sibs = answered_siblings(cases, teacher, ctx, per_case=opts.per_case, variant_base=VARIANT_BASE, origin=NAME,
                             requests=own)
    metas: list[dict[str, Any]] = []
    todo: list[int] = []  # siblings whose explanation is to be a rationalisation
    for n, sib in enumerate(sibs):
        meta: dict[str, Any] = dict(sib.instruction.meta)
        if strategy != "rationalize":
            (cot,) = sib.results
            if cot.ok and cot.output.answer.strip() == sib.answer:
                meta.update(explanation=one_line(cot.output.rationale), source="cot")
            else:
                meta["cot_missed"] = f"({cot.error})" if not cot.ok else cot.output.answer.strip()
                if strategy == "cot":
                    meta["reject"] = "the chain of thought does not reach the teacher's answer"
        if "explanation" not in meta and "reject" not in meta:
            todo.append(n)
        metas.append(meta)
    asks = [Rationalize(instruction=sibs[n].instruction.text, input=sibs[n].instruction.input,
                        task=sibs[n].instruction.task, answer=sibs[n].answer) for n in todo]
    for n, res in zip(todo, teacher.ask(asks), strict=True):
        if res.ok:
            metas[n].update(explanation=one_line(res.output.rationale), source="rationalize")
        else:
            metas[n]["reject"] = f"no rationalisation ({res.error})"
    return [Candidate(instruction=replace(sib.instruction, meta=meta), generator=NAME)
            for sib, meta in zip(sibs, metas, strict=True)]


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    if generator != NAME or "explanation" not in instruction.meta:
        return None
    opts: MtCotOptions = enabled_options(ctx, NAME) or MtCotOptions()
    why, fmt = instruction.meta["explanation"], opts.task_format
    if fmt == "mt_re":
        row = (explain_prompt(instruction, opts), why)
    elif fmt == "mt_ra":
        row = (f"{opts.rationalize_prefix}{format_prompt(instruction)}Answer: {answer}\n", why)
    else:
        row = (explain_prompt(instruction, opts), f"{why}{ARROW}{answer}")
    return [Example(instruction.id, prompt, answer, "answer", NAME, ctx.round, opts.alpha),
            Example(instruction.id, *row, ROW_KIND[fmt], NAME, ctx.round, 1.0 - opts.alpha)]


@hookimpl
def lionloop_evaluate_student(instructions: list[Instruction], student: Student, ctx: RoundContext) -> dict[str, str] | None:
    opts: MtCotOptions | None = enabled_options(ctx, NAME)
    if opts is None or opts.task_format != "mt_cot":
        return None
    outs = student([explain_prompt(i, opts) for i in instructions], opts.eval_max_new_tokens)
    return {i.id: final_answer(o) for i, o in zip(instructions, outs, strict=True)}
