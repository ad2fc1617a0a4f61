"""The `rationale` generator: Distilling Step-by-Step (Hsieh et al. 2023) inside the loop.

For each hard case the teacher writes a sibling instruction (a `Rewrite`, as Lion does), answers
it, and explains it: a `Rationale` request returns a step-by-step rationale and a label. A
rationale whose own label disagrees with the teacher's answer is rejected (it would teach a wrong
route to the right answer). Kept siblings become two training rows, one per task prefix:

  [label] <instruction>      -> <answer>      kind "label",     weight alpha
  [rationale] <instruction>  -> <rationale>   kind "rationale", weight 1 - alpha

so the trainer's per-row weighted loss is `alpha * label_loss + (1 - alpha) * rationale_loss`
per instance. While the plugin is enabled the student sees the label prefix on every plain
answer, in training and at evaluation (`lionloop_student_prompt`): at inference only the label
task is asked, as in the paper. `joint: true` is MT-CoT style instead: one row whose target is
the answer, a newline, then the explanation (the student's first line is still the answer).

Options (generate.generators.rationale.options, `RationaleOptions`):
  alpha            weight of the label task (default 0.5, the paper's)
  label_prefix     prompt prefix of the label task (default "[label] ")
  rationale_prefix prompt prefix of the rationale task (default "[rationale] ")
  joint            explanation in the same target as the answer (default false)
  per_case         siblings per hard case (default 1)
  source           ask: a Rationale request per sibling (default); thinking: the thinking a
                   reasoning teacher wrote before its answer is the rationale, no call of its own
                   (a sibling answered without thinking is rejected, and counted)
  max_calls        paid teacher calls per round (default: quota x 3)

With `source: thinking` a sibling costs two calls (rewrite, answer) instead of three, and the
rationale is the route the teacher took to its answer, not an explanation written after it.
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
    TeacherRequest,
    answered_siblings,
    enabled_options,
    format_prompt,
    hookimpl,
    meta_reject_filter,
    one_line,
)

NAME = "rationale"
VARIANT_BASE = 1000  # rewrite variants apart from lion's, so both do not ask for the same sibling


class RationaleOptions(GeneratorOptions):
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the label task; the rationale task weighs 1 - alpha.")
    label_prefix: str = Field("[label] ", description="Prompt prefix of the label task (every plain answer).")
    rationale_prefix: str = Field("[rationale] ", description="Prompt prefix of the rationale task.")
    joint: bool = Field(False, description="MT-CoT style: the explanation in the same target as the answer.")
    per_case: int = Field(1, ge=1, description="Siblings per hard case.")
    source: Literal["ask", "thinking"] = Field(
        "ask", description="ask: a Rationale request per sibling; thinking: a reasoning teacher's thinking before "
                           "its answer (no call of its own; a sibling answered without thinking is rejected).")


class RationaleOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rationale: str = Field(min_length=1)
    answer: str


class Rationale(TeacherRequest):
    """Explain step by step how to answer an instruction, then give the answer alone."""

    kind: ClassVar[str] = "rationale"
    template: ClassVar[str] = "rationale.j2"
    Output: ClassVar[type[BaseModel]] = RationaleOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_request_type(Rationale)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    # A sibling costs a rewrite, then an answer and a rationale (asked together); the answer is
    # also the check on the rationale's own label. From the teacher's thinking: the answer alone.
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=3, calls_for=lambda o: 2 if o.source == "thinking" else 3,
                         kinds=("label", "rationale"), options=RationaleOptions)


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: RationaleOptions = ctx.options()
    own = opts.source == "thinking"
    sibs = answered_siblings(
        cases, teacher, ctx, per_case=opts.per_case, variant_base=VARIANT_BASE, origin=NAME,
        requests=lambda ins: [] if own else [Rationale(instruction=ins.text, input=ins.input, task=ins.task)],
    )
    out = []
    for sib in sibs:
        meta = dict(sib.instruction.meta)
        if own:
            if sib.thinking is None:
                meta["reject"] = "no rationale (the teacher's answer came without thinking; source: thinking)"
            else:
                meta.update(rationale=one_line(sib.thinking), rationale_answer=sib.answer)
            out.append(Candidate(instruction=replace(sib.instruction, meta=meta), generator=NAME))
            continue
        (rat,) = sib.results
        if not rat.ok:
            meta["reject"] = f"no rationale ({rat.error})"
        else:
            meta.update(rationale=one_line(rat.output.rationale), rationale_answer=rat.output.answer.strip())
            if rat.output.answer.strip() != sib.answer:
                meta["reject"] = "rationale disagrees with the teacher's answer"
        out.append(Candidate(instruction=replace(sib.instruction, meta=meta), generator=NAME))
    return out


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_student_prompt(instruction: Instruction, ctx: RoundContext) -> str | None:
    opts: RationaleOptions | None = enabled_options(ctx, NAME)
    if opts is None or opts.joint:
        return None
    return opts.label_prefix + format_prompt(instruction) if opts.label_prefix else None


@hookimpl
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    if generator != NAME or "rationale" not in instruction.meta:
        return None
    opts: RationaleOptions = enabled_options(ctx, NAME) or RationaleOptions()
    rationale = instruction.meta["rationale"]
    if opts.joint:
        return [Example(instruction.id, prompt, f"{answer}\n{rationale}", "answer_rationale", NAME, ctx.round)]
    rationale_prompt = opts.rationale_prefix + format_prompt(instruction)
    return [
        Example(instruction.id, prompt, answer, "label", NAME, ctx.round, opts.alpha),
        Example(instruction.id, rationale_prompt, rationale, "rationale", NAME, ctx.round, 1.0 - opts.alpha),
    ]
