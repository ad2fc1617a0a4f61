"""The `scott` generator: SCOTT (Wang et al. 2023, self-consistent chain-of-thought distillation).

For each hard case the teacher writes a sibling (`Rewrite`), answers it (a*), and gives a
plausible wrong answer a' (`PerturbAnswer`; for a labelled task, another label, no call). Then two
rationales (`ContrastiveRationale`): r* for a* contrasted with a', and r' for a' contrasted with a*.
On a teacher with token scores (the `hf` backend) each is decoded contrastively: every token is
scored log P(t | a*) + strength * (log P(t | a*) - log P(t | a')), so the rationale says what makes
a* the answer rather than what any answer would share (`plugins/contrastive.py`). A text-only
teacher (OpenAI-compatible servers, the oracle) answers the same prompt without the contrast: a
plain rationalisation of the answer it is given; the candidate's meta records which one it was.

The student learns SCOTT's two objectives, as prompt -> completion rows:

  <plain prompt>                            -> a*            kind "answer"
  [factual] <question>                      -> "r* => a*"    kind "factual"
  [counterfactual] <question> "r' => "      -> a'            kind "counterfactual"

The counterfactual row has the perturbed rationale in its prompt (no loss on it, as SCOTT feeds
it to the decoder) and the perturbed answer as its target: the student must answer from the
rationale it is shown, so it cannot learn to ignore its own rationale. The round's evaluation
asks the student for "[factual]" reasoning and reads the answer after the last "=>"
(`eval.methods.scott`).

What is not SCOTT here: the paper's teacher is GPT-neox with contrastive decoding throughout;
with the oracle or an API teacher the rationales are plain rationalisations (exact, for the
oracle). The paper's student is T5; its consistency metric (LAS) is not computed.

Options (generate.generators.scott.options, `ScottOptions`):
  strength              weight of the contrast term in contrastive decoding (default 1.0; 0 = greedy)
  factual_prefix        prompt prefix of the factual task (default "[factual] ")
  counterfactual_prefix prompt prefix of the counterfactual task (default "[counterfactual] ")
  counterfactual_weight loss weight of the counterfactual rows (default 1.0)
  per_case              siblings per hard case (default 1)
  eval_max_new_tokens   tokens the student may write for its reasoning (default 64)
  max_calls             paid teacher calls per round (default: quota x 5)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

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

NAME = "scott"
VARIANT_BASE = 5000
ARROW = " => "
CALLS = 5  # rewrite, answer, perturbed answer, two rationales
# Backends that read token scores and so decode contrastively (the rest rationalise plainly).
CONTRASTIVE_BACKENDS = ("hf",)


class ScottOptions(GeneratorOptions):
    strength: float = Field(1.0, ge=0, description="Weight of the contrast term in contrastive decoding (0 = greedy).")
    factual_prefix: str = Field("[factual] ", description="Prompt prefix of the factual task (rationale then answer).")
    counterfactual_prefix: str = Field("[counterfactual] ", description="Prompt prefix of the counterfactual task.")
    counterfactual_weight: float = Field(1.0, ge=0, description="Loss weight of the counterfactual rows.")
    per_case: int = Field(1, ge=1, description="Siblings per hard case.")
    eval_max_new_tokens: int = Field(64, ge=1, description="Tokens the student may write for its reasoning.")


class PerturbOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answer: str = Field(min_length=1)


class PerturbAnswer(TeacherRequest):
    """A plausible wrong answer (one slipped step), the contrast for the gold answer's rationale."""

    kind: ClassVar[str] = "perturb_answer"
    template: ClassVar[str] = "scott_perturb.j2"
    Output: ClassVar[type[BaseModel]] = PerturbOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""
    variant: int = Field(0, ge=0)


class RationaleText(BaseModel):
    text: str


class ContrastiveRationale(TeacherRequest):
    """A one-line rationale leading to `answer`, decoded against `contrast` where the backend can."""

    kind: ClassVar[str] = "contrastive_rationale"
    template: ClassVar[str] = "scott.j2"
    Output: ClassVar[type[BaseModel]] = RationaleText
    structured: ClassVar[bool] = False
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input", "answer", "contrast")

    instruction: str
    input: str = ""
    task: str = ""
    answer: str
    contrast: str
    strength: float = Field(1.0, ge=0)

    def contrast_request(self) -> ContrastiveRationale:
        """The same request for the contrast answer: the negative branch of contrastive decoding."""
        return self.model_copy(update={"answer": self.contrast, "contrast": self.answer})

    def parse(self, text: str) -> RationaleText:
        from lionloop import ParseError

        if not (text or "").strip():
            raise ParseError("contrastive_rationale: empty reply")
        return RationaleText(text=one_line(text))


def final_answer(text: str) -> str:
    """The answer a chain of thought ends with: what follows its last arrow."""
    return text.rsplit("=>", 1)[-1].strip() if "=>" in text else ""


def factual_prompt(ins: Instruction, opts: ScottOptions) -> str:
    return opts.factual_prefix + format_prompt(ins)


def counterfactual_prompt(ins: Instruction, rationale: str, opts: ScottOptions) -> str:
    return f"{opts.counterfactual_prefix}{format_prompt(ins)}{rationale}{ARROW}"


def _labels(ctx: RoundContext, task: str) -> list[str] | None:
    labels = getattr(ctx.task_pack, "labels", None)
    return labels(task) if callable(labels) else None


def _perturbed(ins: Instruction, gold: str, ctx: RoundContext) -> tuple[str | None, bool]:
    """(a wrong label of a labelled task, or None, whether the task is labelled)."""
    labels = _labels(ctx, ins.task)
    if not labels:
        return None, False
    others = [x for x in labels if x.strip().lower() != gold.strip().lower()]
    return (ctx.rng("perturb", ins.id).choice(others) if others else None), True


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_request_type(PerturbAnswer)
    registry.add_request_type(ContrastiveRationale)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    return GeneratorSpec(consumes=("hard",), calls_per_candidate=CALLS, kinds=("answer", "factual", "counterfactual"),
                         options=ScottOptions)


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: ScottOptions = ctx.options()
    labelled = {c.instruction.task for c in cases.hard if _labels(ctx, c.instruction.task)}

    def own(ins: Instruction) -> list[TeacherRequest]:
        if ins.task in labelled:
            return []
        return [PerturbAnswer(instruction=ins.text, input=ins.input, task=ins.task, variant=ctx.round)]

    sibs = answered_siblings(cases, teacher, ctx, per_case=opts.per_case, variant_base=VARIANT_BASE, origin=NAME,
                             requests=own)
    contrastive = (ctx.config.generator_teacher or ctx.config.teacher).backend in CONTRASTIVE_BACKENDS
    plans: list[tuple[Any, dict[str, Any]]] = []
    asks: list[TeacherRequest] = []
    for sib in sibs:
        ins, gold = sib.instruction, sib.answer
        meta: dict[str, Any] = {**ins.meta, "decoding": "contrastive" if contrastive else "plain"}
        wrong, is_labelled = _perturbed(ins, gold, ctx)
        if not is_labelled:
            (res,) = sib.results
            wrong = res.output.answer.strip() if res.ok else None
            if not res.ok:
                meta["reject"] = f"no perturbed answer ({res.error})"
        if wrong is not None and wrong == gold:
            meta["reject"] = "the perturbed answer is the teacher's answer"
        elif wrong is None:
            meta.setdefault("reject", "no perturbed answer")
        plans.append((sib, meta))
        if "reject" not in meta:
            meta["perturbed_answer"] = wrong
            base = dict(instruction=ins.text, input=ins.input, task=ins.task, strength=opts.strength)
            asks += [ContrastiveRationale(**base, answer=gold, contrast=wrong),
                     ContrastiveRationale(**base, answer=wrong, contrast=gold)]
    results = iter(teacher.ask(asks))
    out = []
    for sib, meta in plans:
        if "reject" not in meta:
            fact, counter = next(results), next(results)
            if not fact.ok or not counter.ok:
                meta["reject"] = f"no rationale ({(fact if not fact.ok else counter).error})"
            else:
                meta.update(rationale=fact.output.text, counter_rationale=counter.output.text)
        out.append(Candidate(instruction=replace(sib.instruction, meta=meta), generator=NAME))
    return out


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    meta = instruction.meta
    if generator != NAME or "rationale" not in meta or "counter_rationale" not in meta:
        return None
    opts: ScottOptions = enabled_options(ctx, NAME) or ScottOptions()
    return [
        Example(instruction.id, prompt, answer, "answer", NAME, ctx.round),
        Example(instruction.id, factual_prompt(instruction, opts), f"{meta['rationale']}{ARROW}{answer}", "factual",
                NAME, ctx.round),
        Example(instruction.id, counterfactual_prompt(instruction, meta["counter_rationale"], opts),
                meta["perturbed_answer"], "counterfactual", NAME, ctx.round, opts.counterfactual_weight),
    ]


@hookimpl
def lionloop_evaluate_student(instructions: list[Instruction], student: Student, ctx: RoundContext) -> dict[str, str] | None:
    opts: ScottOptions | None = enabled_options(ctx, NAME)
    if opts is None:
        return None
    outs = student([factual_prompt(i, opts) for i in instructions], opts.eval_max_new_tokens)
    return {i.id: final_answer(o) for i, o in zip(instructions, outs, strict=True)}
