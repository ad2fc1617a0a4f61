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

Options (generate.generators.rationale.options):
  alpha            weight of the label task (default 0.5, the paper's)
  label_prefix     prompt prefix of the label task (default "[label] ")
  rationale_prefix prompt prefix of the rationale task (default "[rationale] ")
  joint            explanation in the same target as the answer (default false)
  per_case         siblings per hard case (default 1)
  max_calls        paid teacher calls per round (default: quota x 3)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from lionloop.plugin.hookspecs import hookimpl
from lionloop.plugin.kit import (
    affordable,
    enabled_options,
    meta_reject_filter,
    one_line,
    siblings,
)
from lionloop.plugin.plan import GeneratorSpec
from lionloop.records import Candidate, Cases, Example, Instruction
from lionloop.student.prompt import format_prompt
from lionloop.teacher.requests import Answer, TeacherRequest

NAME = "rationale"
VARIANT_BASE = 1000  # rewrite variants apart from lion's, so both do not ask for the same sibling


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
def lionloop_register(registry: Any) -> None:
    registry.add_request_type(Rationale)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=3, kinds=("label", "rationale"))


@hookimpl
def lionloop_generate(cases: Cases, teacher: Any, ctx: Any) -> list[Candidate]:
    opts = ctx.options()
    quota = ctx.max_candidates if ctx.max_candidates is not None else len(cases.hard)
    # A sibling costs a rewrite, then an answer and a rationale (asked together below).
    n = affordable(teacher, quota, 3)
    sibs = siblings(cases, teacher, ctx, n, int(opts.get("per_case", 1)), VARIANT_BASE, NAME)
    # The answer is the one curate would ask for (the cache then answers curate for free); it
    # is also the check on the rationale's own label.
    asks: list[TeacherRequest] = []
    for _, ins in sibs:
        asks += [Answer(instruction=ins.text, input=ins.input, task=ins.task),
                 Rationale(instruction=ins.text, input=ins.input, task=ins.task)]
    results = teacher.ask(asks)
    out = []
    for k, (_, ins) in enumerate(sibs):
        ans, rat = results[2 * k], results[2 * k + 1]
        if not ans.ok:
            continue  # nothing to check against, nothing curate could answer cheaper
        meta = dict(ins.meta)
        if not rat.ok:
            meta["reject"] = f"no rationale ({rat.error})"
        else:
            meta.update(rationale=one_line(rat.output.rationale), rationale_answer=rat.output.answer.strip())
            if rat.output.answer.strip() != ans.output.text.strip():
                meta["reject"] = "rationale disagrees with the teacher's answer"
        out.append(Candidate(instruction=replace(ins, meta=meta), generator=NAME))
    return out


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_student_prompt(instruction: Instruction, ctx: Any) -> str | None:
    opts = enabled_options(ctx, NAME)
    if opts is None or opts.get("joint"):
        return None
    prefix = str(opts.get("label_prefix", "[label] "))
    return prefix + format_prompt(instruction) if prefix else None


@hookimpl
def lionloop_format_examples(instruction: Instruction, answer: str, generator: str, ctx: Any, prompt: str) -> list[Example] | None:
    if generator != NAME or "rationale" not in instruction.meta:
        return None
    opts = enabled_options(ctx, NAME) or {}
    rationale = instruction.meta["rationale"]
    if opts.get("joint"):
        return [Example(instruction.id, prompt, f"{answer}\n{rationale}", "answer_rationale", NAME, ctx.round)]
    alpha = float(opts.get("alpha", 0.5))
    rationale_prompt = str(opts.get("rationale_prefix", "[rationale] ")) + format_prompt(instruction)
    return [
        Example(instruction.id, prompt, answer, "label", NAME, ctx.round, alpha),
        Example(instruction.id, rationale_prompt, rationale, "rationale", NAME, ctx.round, 1.0 - alpha),
    ]
