"""The `disco` generator: DISCO (Chen et al. 2023) counterfactuals inside the loop.

For a labelled case (its task has a label set) the teacher picks a span of the text and rewrites
it so the label should become a target label (`Counterfactual`). Lazy edits are rejected by
overlap heuristics (the span copied, a rewrite too close to the span, a text that barely
changed, a span not in the text); then a critic keeps only edits whose label really flips: the
teacher as a classifier (`critic: teacher`, an `Answer` request, which curate's answer then
reuses from the cache) or the task pack's verifier (`critic: pack`, no teacher call). A kept
counterfactual enters the train split as its own instruction, `parent_id` pointing at the
original, with one row `<prompt> -> <target label>` of kind "counterfactual". The original is
not re-added: cache-pool cases are probes, never trained on.

Label sets come from `options.labels` ({task: [labels]}) or, when the task pack has one, its
`labels(task)` method (the `skills` pack labels its `mood` skill).

Options (generate.generators.disco.options, `DiscoOptions`):
  labels            {task: [label, ...]} (default: the task pack's)
  per_case          counterfactuals per case, one target label each (default 1)
  critic            teacher | pack (default teacher)
  max_span_overlap  word Jaccard of rewrite vs span above which it is lazy (default 0.6)
  max_text_overlap  word Jaccard of new vs old text above which it is lazy (default 0.9)
  max_calls         paid teacher calls per round (default: quota x 2)
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from lionloop import (
    Answer,
    Candidate,
    Case,
    Cases,
    Example,
    GeneratorOptions,
    GeneratorSpec,
    GeneratorTeacher,
    Instruction,
    Registry,
    RoundContext,
    TeacherRequest,
    affordable,
    hookimpl,
    meta_reject_filter,
)

NAME = "disco"


class DiscoOptions(GeneratorOptions):
    # Labels may be numbers in a config (0/1): they are compared as text.
    model_config = ConfigDict(coerce_numbers_to_str=True)

    labels: dict[str, list[str]] | None = Field(
        None, description="Label set per task, {task: [label, ...]} (default: the task pack's `labels(task)`).",
    )
    per_case: int = Field(1, ge=1, description="Counterfactuals per case, one target label each.")
    critic: Literal["teacher", "pack"] = Field(
        "teacher",
        description="Who confirms the flip: the teacher as a classifier (an Answer request) or the task "
        "pack's verifier (no teacher call).",
    )
    max_span_overlap: float = Field(0.6, ge=0, le=1, description="Word Jaccard of rewrite vs span above which an edit is lazy.")
    max_text_overlap: float = Field(0.9, ge=0, le=1, description="Word Jaccard of new vs old text above which an edit is lazy.")


class CounterfactualOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    span: str = Field(min_length=1)
    replacement: str


class Counterfactual(TeacherRequest):
    """Rewrite one span of a labelled text so that its label becomes `target_label`."""

    kind: ClassVar[str] = "counterfactual"
    template: ClassVar[str] = "disco.j2"
    Output: ClassVar[type[BaseModel]] = CounterfactualOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""
    label: str
    target_label: str
    labels: tuple[str, ...] = ()
    variant: int = Field(0, ge=0)


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s#]", " ", text.lower()).split()


def jaccard(a: str, b: str) -> float:
    sa, sb = set(_words(a)), set(_words(b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def apply_edit(ins: Instruction, span: str, replacement: str, opts: DiscoOptions) -> tuple[str, str, str | None]:
    """(new text, new input, why the edit is lazy or None): DISCO's heuristic filter."""
    if span in ins.input:
        text, inp = ins.text, ins.input.replace(span, replacement, 1)
        before, after = ins.input, inp
    elif span in ins.text:
        text, inp = ins.text.replace(span, replacement, 1), ins.input
        before, after = ins.text, text
    else:
        return ins.text, ins.input, "span_not_in_text"
    if _words(replacement) == _words(span):
        return text, inp, "copied_span"
    if _words(replacement) and jaccard(replacement, span) > opts.max_span_overlap:
        return text, inp, "overlap_span"
    if jaccard(after, before) > opts.max_text_overlap:
        return text, inp, "overlap_text"
    return text, inp, None


def label_set(ctx: RoundContext, opts: DiscoOptions, task: str) -> list[str] | None:
    given = (opts.labels or {}).get(task)
    if given:
        return [str(x) for x in given]
    labels = getattr(ctx.task_pack, "labels", None)
    return labels(task) if callable(labels) else None


def same_label(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_request_type(Counterfactual)


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    # A counterfactual is a minimal edit of its pool original: dedup it against the pool only
    # when nearly identical (the eval guard is unaffected).
    return GeneratorSpec(consumes=("hard", "easy"), calls_per_candidate=2, kinds=("counterfactual",),
                         dedup_threshold=0.99, options=DiscoOptions)


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: DiscoOptions = ctx.options()
    critic = opts.critic
    quota = ctx.max_candidates if ctx.max_candidates is not None else len(cases.hard) + len(cases.easy)
    n = affordable(teacher, quota, 2 if critic == "teacher" else 1)
    plan: list[tuple[Case, Counterfactual]] = []
    for k in range(opts.per_case):
        for case in cases.hard + cases.easy:  # hard first: where the student errs
            labels = label_set(ctx, opts, case.instruction.task)
            label = case.teacher_answer.strip()
            others = [x for x in labels or [] if not same_label(x, label)]
            if len(plan) >= n or not others or not any(same_label(x, label) for x in labels or []):
                continue
            ctx.rng("targets", case.instruction.id).shuffle(others)
            ins = case.instruction
            plan.append((case, Counterfactual(
                instruction=ins.text, input=ins.input, task=ins.task, label=label,
                target_label=others[k % len(others)], labels=tuple(labels or ()), variant=(ctx.round - 1) * 10 + k,
            )))
    edits: list[tuple[Instruction, str | None]] = []
    for (case, req), res in zip(plan, teacher.ask([r for _, r in plan]), strict=True):
        if not res.ok:
            continue
        parent = case.instruction
        text, inp, lazy = apply_edit(parent, res.output.span, res.output.replacement, opts)
        meta = {"label": req.label, "target": req.target_label, "span": res.output.span,
                "replacement": res.output.replacement, "parent_diff": case.verdict.diff}
        ins = Instruction(text=text, input=inp, task=parent.task, origin=NAME, parent_id=parent.id,
                          round_born=ctx.round, split="train", meta=meta)
        edits.append((ins, lazy))
    # The critic: does the label really flip to the target?
    to_judge = [ins for ins, lazy in edits if lazy is None]
    verdicts: dict[str, str | None] = {}
    if critic == "teacher":
        for ins, res in zip(to_judge, teacher.ask([Answer(instruction=i.text, input=i.input, task=i.task) for i in to_judge]), strict=True):
            if not res.ok:
                verdicts[ins.id] = "critic could not label the counterfactual"
            elif not same_label(res.output.text, ins.meta["target"]):
                verdicts[ins.id] = "critic: the label did not flip to the target"
    else:
        for ins in to_judge:
            if ctx.task_pack.verify(ins, ins.meta["target"]) is not True:
                verdicts[ins.id] = "critic: the label did not flip to the target"
    out = []
    for ins, lazy in edits:
        reason = lazy or verdicts.get(ins.id)
        meta = {**ins.meta, "reject": reason} if reason else ins.meta
        out.append(Candidate(instruction=replace(ins, meta=meta), generator=NAME))
    return out


lionloop_filter_candidate = meta_reject_filter(NAME)


@hookimpl
def lionloop_format_examples(
    instruction: Instruction, answer: str, generator: str, ctx: RoundContext, prompt: str
) -> list[Example] | None:
    if generator != NAME:
        return None
    return [Example(instruction.id, prompt, answer, "counterfactual", NAME, ctx.round)]
