"""The `finetune_cot` generator: Fine-tune-CoT (Ho et al. 2023) inside the loop.

For each hard case the teacher writes a sibling instruction (`Rewrite`), answers it, and samples
k step-by-step rationales for it (`CotSample`, "diverse reasoning": each sample is its own request,
numbered, at the plugin's temperature). A rationale is kept only when its final answer is the
teacher's answer; a sibling with no kept rationale is rejected. Kept rationales (distinct ones)
become rows `question -> rationale -> answer`:

  <plain prompt>       -> <answer>                   kind "answer"
  [cot] <instruction>  -> "<rationale> => <answer>"  kind "cot" (one row per kept rationale)

The round's evaluation also asks the student for a chain of thought and reads the answer after
the last "=>" (`lionloop_evaluate_student`, stored as `eval.methods.finetune_cot`).

With an LLM teacher the sample number is rendered into the prompt, so samples are distinct
requests (and cache entries); real diversity needs a sampling temperature on the teacher that
serves generators (`generator_teacher.temperature`, e.g. 0.7). The oracle reads `temperature`
from the request and errs more often the higher it is.

Options (generate.generators.finetune_cot.options, `FinetuneCotOptions`):
  samples             rationales sampled per sibling, k (default 4)
  temperature         sampling temperature asked for (default 0.7, the paper's)
  cot_prefix          prompt prefix of the reasoning task (default "[cot] ")
  per_case            siblings per hard case (default 1)
  eval_max_new_tokens tokens the student may write for a rationale (default 64)
  max_calls           paid teacher calls per round (default: quota x 6)
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

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

NAME = "finetune_cot"
VARIANT_BASE = 3000
ARROW = " => "  # between a rationale and its answer in the student's target


class FinetuneCotOptions(GeneratorOptions):
    samples: int = Field(4, ge=1, description="Rationales sampled per sibling (k).")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature asked for (the paper's 0.7).")
    cot_prefix: str = Field("[cot] ", description="Prompt prefix of the reasoning task.")
    per_case: int = Field(1, ge=1, description="Siblings per hard case.")
    eval_max_new_tokens: int = Field(64, ge=1, description="Tokens the student may write for a rationale.")


class CotOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rationale: str = Field(min_length=1)
    answer: str


class CotSample(TeacherRequest):
    """One sampled step-by-step solution; `sample` numbers the draws of one question."""

    kind: ClassVar[str] = "cot_sample"
    template: ClassVar[str] = "finetune_cot.j2"
    Output: ClassVar[type[BaseModel]] = CotOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""
    sample: int = Field(0, ge=0)
    temperature: float = Field(0.7, ge=0, le=2)


def cot_prompt(ins: Instruction, opts: FinetuneCotOptions) -> str:
    return opts.cot_prefix + format_prompt(ins)


def final_answer(text: str) -> str:
    """The answer a chain of thought ends with: what follows its last arrow."""
    return text.rsplit("=>", 1)[-1].strip() if "=>" in text else ""


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_request_type(CotSample)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=6, calls_for=lambda o: o.samples + 2,
                         kinds=("answer", "cot"), options=FinetuneCotOptions)  # rewrite, answer, k samples


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: FinetuneCotOptions = ctx.options()
    k = opts.samples
    sibs = answered_siblings(
        cases, teacher, ctx, per_case=opts.per_case, variant_base=VARIANT_BASE, origin=NAME,
        requests=lambda ins: [CotSample(instruction=ins.text, input=ins.input, task=ins.task, sample=j,
                                        temperature=opts.temperature) for j in range(k)],
    )
    out = []
    for sib in sibs:
        gold = sib.answer
        kept: list[str] = []
        for s in sib.results:
            if s.ok and s.output.answer.strip() == gold and one_line(s.output.rationale) not in kept:
                kept.append(one_line(s.output.rationale))
        answered = sum(s.ok for s in sib.results)
        meta = {**sib.instruction.meta, "cot": kept, "samples": k, "answered": answered,
                "wrong": sum(s.ok and s.output.answer.strip() != gold for s in sib.results)}
        if not kept:
            meta["reject"] = f"no sampled rationale reached the teacher's answer ({answered}/{k} sampled)"
        out.append(Candidate(instruction=replace(sib.instruction, meta=meta), generator=NAME))
    return out


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    if generator != NAME or not instruction.meta.get("cot"):
        return None
    opts: FinetuneCotOptions = enabled_options(ctx, NAME) or FinetuneCotOptions()
    rows = [Example(instruction.id, prompt, answer, "answer", NAME, ctx.round)]
    rows += [Example(instruction.id, cot_prompt(instruction, opts), f"{r}{ARROW}{answer}", "cot", NAME, ctx.round)
             for r in instruction.meta["cot"]]
    return rows


@hookimpl
def lionloop_evaluate_student(instructions: list[Instruction], student: Student, ctx: RoundContext) -> dict[str, str] | None:
    opts: FinetuneCotOptions | None = enabled_options(ctx, NAME)
    if opts is None:
        return None
    outs = student([cot_prompt(i, opts) for i in instructions], opts.eval_max_new_tokens)
    return {i.id: final_answer(o) for i, o in zip(instructions, outs, strict=True)}
