"""The `icl` generator: in-context learning distillation (Huang et al. 2022, Meta-ICT and
Multitask-ICT) inside the loop.

For each hard case the teacher writes a sibling (`Rewrite`), answers it, and answers it again
after k demonstrations (`FewShotAnswer`): teacher-answered train instructions drawn from the pool.
A few-shot answer that disagrees with the plain one is rejected. Kept siblings become rows:

  <plain prompt>                                  -> <answer>   kind "answer"
  [icl] <q1>\n<a1>\n ... <qk>\n<ak>\n<question>   -> <answer>   kind "icl" (in-context tuning)
  [lm]                                            -> the whole in-context text, demonstrations
                                                     and answer included   kind "lm" (LM objective,
                                                     weight lm_weight; 0: no such row)

`mode` chooses where in-context training comes from, as the paper's two settings do:
  multitask  demonstrations of the sibling's own task, for every task (Multitask-ICT: the target
             tasks are the training tasks)
  meta       only siblings of tasks outside `target_tasks`, with demonstrations of their own task
             (Meta-ICT: learn to learn in context on other tasks); the target tasks are never
             trained in context, only evaluated so
The round's evaluation asks the student in the same few-shot format (k demonstrations of the
instruction's task from the train pool, seeded by the instruction) and stores it as
`eval.methods.icl`; its per-task figures show the target tasks.

What is not the paper's: the teacher's soft labels (its token distribution on the in-context
prompt) are not available from a text teacher; the student imitates its text answer.

Options (generate.generators.icl.options, `IclOptions`):
  mode                multitask (default) or meta
  k                   demonstrations per row and per evaluation prompt (default 2)
  target_tasks        tasks kept out of in-context training in meta mode (required there)
  lm_weight           loss weight of the LM-objective row (default 0.5; 0 drops it)
  icl_prefix          prompt prefix of the in-context rows (default "[icl] ")
  lm_prefix           prompt of the LM-objective rows (default "[lm] ")
  per_case            siblings per hard case (default 1)
  eval_max_new_tokens tokens the student may write for a few-shot answer (default: the student's)
  max_calls           paid teacher calls per round (default: quota x 3)
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lionloop import (
    Answer,
    Candidate,
    Cases,
    Example,
    GeneratorOptions,
    GeneratorSpec,
    GeneratorTeacher,
    Instruction,
    OptionError,
    Registry,
    RoundContext,
    Student,
    answered_siblings,
    enabled_options,
    format_prompt,
    hookimpl,
    meta_reject_filter,
    one_line,
)

NAME = "icl"
VARIANT_BASE = 6000


class IclOptions(GeneratorOptions):
    mode: Literal["multitask", "meta"] = Field(
        "multitask", description="multitask: in-context rows for every task; meta: only for tasks outside target_tasks.")
    k: int = Field(2, ge=1, description="Demonstrations per row and per evaluation prompt.")
    target_tasks: list[str] = Field(default_factory=list, description="Tasks kept out of in-context training (meta mode).")
    lm_weight: float = Field(0.5, ge=0, description="Loss weight of the LM-objective row (0: no such row).")
    icl_prefix: str = Field("[icl] ", description="Prompt prefix of the in-context rows.")
    lm_prefix: str = Field("[lm] ", description="Prompt of the LM-objective rows.")
    per_case: int = Field(1, ge=1, description="Siblings per hard case.")
    eval_max_new_tokens: int | None = Field(None, ge=1, description="Tokens for a few-shot answer (default: the student's).")

    @model_validator(mode="after")
    def _targets(self) -> IclOptions:
        if self.mode == "meta" and not self.target_tasks:
            raise OptionError("target_tasks", "meta mode needs the target tasks it keeps out of in-context training")
        return self


class Demo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction: str
    input: str = ""
    answer: str


class FewShotAnswer(Answer):
    """Answer an instruction after k demonstrations (the in-context prompt), plain text."""

    kind: ClassVar[str] = "few_shot_answer"
    template: ClassVar[str] = "icl.j2"
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input", "demos")

    demos: tuple[Demo, ...] = ()


def demo_pool(ctx: RoundContext) -> dict[str, list[Demo]]:
    """Teacher-answered train instructions by task, in the pool's order: what demonstrations come from."""
    answers = ctx.pool.teacher_answers()
    out: dict[str, list[Demo]] = {}
    for ins in ctx.pool.instructions(["train"]):
        if ins.id in answers:
            out.setdefault(ins.task, []).append(Demo(instruction=ins.text, input=ins.input, answer=one_line(answers[ins.id])))
    return out


def pick_demos(pool: dict[str, list[Demo]], ins: Instruction, k: int, seed: str) -> list[Demo]:
    """k demonstrations of the instruction's own task (never itself), seeded by the instruction."""
    same = [d for d in pool.get(ins.task, []) if (d.instruction, d.input) != (ins.text, ins.input)]
    rng = random.Random(f"{seed}:{ins.id}")
    return rng.sample(same, min(k, len(same)))


def icl_prompt(ins: Instruction, demos: list[Demo], opts: IclOptions) -> str:
    shots = "".join(f"{format_prompt(d.instruction, d.input)}{d.answer}\n" for d in demos)
    return opts.icl_prefix + shots + format_prompt(ins)


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_request_type(FewShotAnswer)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=3, kinds=("answer", "icl", "lm"), options=IclOptions)


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: IclOptions = ctx.options()
    if opts.mode == "meta":  # Meta-ICT: in-context training only on tasks other than the targets
        cases = Cases(round=cases.round, hard=[c for c in cases.hard if c.instruction.task not in opts.target_tasks],
                      easy=list(cases.easy))
    pool = demo_pool(ctx)
    chosen: dict[str, list[Demo]] = {}

    def own(ins: Instruction) -> list[FewShotAnswer]:
        chosen[ins.id] = pick_demos(pool, ins, opts.k, f"gen:{ctx.config.seed}:{ctx.round}")
        return [FewShotAnswer(instruction=ins.text, input=ins.input, task=ins.task, demos=tuple(chosen[ins.id]))]

    sibs = answered_siblings(cases, teacher, ctx, per_case=opts.per_case, variant_base=VARIANT_BASE, origin=NAME,
                             requests=own)
    out = []
    for sib in sibs:
        (few,) = sib.results
        demos = chosen[sib.instruction.id]
        meta = {**sib.instruction.meta, "demos": [[d.instruction, d.input, d.answer] for d in demos]}
        if not demos:
            meta["reject"] = f"no demonstrations of task {sib.instruction.task!r} in the pool"
        elif not few.ok:
            meta["reject"] = f"no few-shot answer ({few.error})"
        elif few.output.text.strip() != sib.answer:
            meta["reject"] = "the teacher's few-shot answer disagrees with its plain answer"
        out.append(Candidate(instruction=replace(sib.instruction, meta=meta), generator=NAME))
    return out


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    if generator != NAME or not instruction.meta.get("demos"):
        return None
    opts: IclOptions = enabled_options(ctx, NAME) or IclOptions()
    demos = [Demo(instruction=q, input=i, answer=a) for q, i, a in instruction.meta["demos"]]
    shot = icl_prompt(instruction, demos, opts)
    rows = [Example(instruction.id, prompt, answer, "answer", NAME, ctx.round),
            Example(instruction.id, shot, answer, "icl", NAME, ctx.round)]
    if opts.lm_weight > 0:
        rows.append(Example(instruction.id, opts.lm_prefix, shot.removeprefix(opts.icl_prefix) + answer, "lm", NAME,
                            ctx.round, opts.lm_weight))
    return rows


@hookimpl
def lionloop_evaluate_student(instructions: list[Instruction], student: Student, ctx: RoundContext) -> dict[str, str] | None:
    """The same few-shot format as training: k demonstrations of the instruction's task."""
    opts: IclOptions | None = enabled_options(ctx, NAME)
    if opts is None:
        return None
    pool = demo_pool(ctx)
    prompts = [icl_prompt(i, pick_demos(pool, i, opts.k, f"eval:{ctx.config.seed}"), opts) for i in instructions]
    outs = student(prompts, opts.eval_max_new_tokens)
    return {i.id: o for i, o in zip(instructions, outs, strict=True)}

