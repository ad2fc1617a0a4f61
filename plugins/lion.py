"""The `lion` generator (Jiang et al. 2023): hard rewrites of hard cases, rarer rewrites of easy ones.

Options (generate.generators.lion.options, `LionOptions`):
  per_hard   rewrites asked per hard case (default 2); when there are too few hard cases for the
             quota (an allocation gives a task more than that), up to 6 more each
  easy_ratio share of this generator's candidates spent on easy cases (default 0.25; Lion keeps
             some easy-derived instructions so the pool does not collapse onto a few skills)
  max_task_share  cap on the share of the hard rewrites one task may take (default none, as in
             Lion). Hard is not learnable: on the offline pack the uncapped loop spent half its
             budget on multi-digit addition, which the tiny student never learns (BENCHMARKS.md,
             effectiveness). Budget the cap frees goes to further siblings of other tasks' hard
             cases, then to easy rewrites.
  simpler_below  rewrite the hard cases of a task whose cache-pool accuracy this round is below this
             one step simpler instead of at their own level (default none, as in Lion): data at the
             student's frontier rather than at the hardest level it fails
  max_calls  paid teacher calls per round (default: quota x 2)
"""

from __future__ import annotations

import math
from collections import Counter

from pydantic import Field

from lionloop import (
    Candidate,
    Case,
    Cases,
    GeneratorOptions,
    GeneratorSpec,
    GeneratorTeacher,
    Rewrite,
    RoundContext,
    hookimpl,
    sibling_instruction,
    sibling_requests,
)

NAME = "lion"
EXTRA_PASSES = 6  # at most 2 + 6 siblings of one hard case a round


class LionOptions(GeneratorOptions):
    per_hard: int = Field(2, ge=1, description="Rewrites asked per hard case.")
    easy_ratio: float = Field(
        0.25, ge=0, le=1,
        description="Share of this generator's candidates spent on rarer rewrites of easy cases.",
    )
    max_task_share: float | None = Field(
        None, gt=0, le=1,
        description="Cap on the share of the hard rewrites one task may take (none: as in Lion).",
    )
    simpler_below: float | None = Field(
        None, gt=0, le=1,
        description="Hard cases of a task whose cache-pool accuracy this round is below this are rewritten one "
        "step simpler, not at their own level (none: as in Lion).",
    )


def cache_accuracy(cases: Cases) -> dict[str, float]:
    """Per task: the share of the round's judged cache-pool cases the student got right (from the
    cases' own verdicts: the generator reads nothing more from the pool)."""
    right: Counter[str] = Counter()
    judged: Counter[str] = Counter()
    for case in (*cases.hard, *cases.easy):
        ins, hard = case.instruction, case.verdict.hard
        if ins.split == "cache" and ins.task and hard is not None:
            judged[ins.task] += 1
            right[ins.task] += not hard
    return {task: right[task] / n for task, n in judged.items()}


def _requests(cases: Cases, quota: int, per_hard: int, easy_ratio: float, ctx: RoundContext,
              max_task_share: float | None = None) -> list[tuple[Case, Rewrite]]:
    n_easy = min(len(cases.easy), round(quota * easy_ratio)) if cases.hard else min(len(cases.easy), quota)
    n_hard = quota - n_easy
    cap = None if max_task_share is None else max(1, math.ceil(max_task_share * n_hard))
    # With a cap, more siblings per case may be needed to spend the hard budget.
    stride = per_hard if cap is None else 4 * per_hard
    # Hardest first, each asked for `per_hard` different siblings: the kit's sibling requests,
    # over the cases in the referee's order (largest gap, then instruction id). The kit's
    # `siblings` reorders ties with a stream of the plugin's own, so generators sharing a round
    # do not all start from the same cases; lion keeps the referee's order, which is what its
    # pools (and the demo's figures) have always been made from.
    out = sibling_requests(cases.hard, ctx, n_hard, stride, max_per_task=cap)
    if cap is None and cases.hard and len(out) < n_hard:
        # Too few hard cases for the quota (an allocation gave this task more than `per_hard`
        # siblings of each): further siblings of each, as variants no round's first ones use.
        extra = min(EXTRA_PASSES, math.ceil((n_hard - len(out)) / len(cases.hard)))
        out += sibling_requests(cases.hard, ctx, n_hard - len(out), extra, variant_base=1000 * ctx.round)
    if cap is not None:
        n_easy = min(len(cases.easy), quota - len(out))
    easy = sorted(cases.easy, key=lambda c: c.instruction.id)
    for case in ctx.rng("easy").sample(easy, n_easy):
        ins = case.instruction
        out.append((case, Rewrite(instruction=ins.text, input=ins.input, task=ins.task, mode="easy", variant=ctx.round - 1)))
    return out


@hookimpl
def lionloop_generator_spec() -> GeneratorSpec:
    # One rewrite per candidate, plus room for one re-ask of an unparseable reply; the answer
    # to an accepted candidate is paid by the curate stage.
    return GeneratorSpec(consumes=("hard", "easy"), calls_per_candidate=2, kinds=("answer",), options=LionOptions)


@hookimpl
def lionloop_generate(cases: Cases, teacher: GeneratorTeacher, ctx: RoundContext) -> list[Candidate]:
    opts: LionOptions = ctx.options()
    quota = ctx.max_candidates if ctx.max_candidates is not None else 2 * len(cases.hard)
    pairs = _requests(cases, quota, opts.per_hard, opts.easy_ratio, ctx, opts.max_task_share)
    if opts.simpler_below is not None:
        acc = cache_accuracy(cases)
        pairs = [(case, req.model_copy(update={"mode": "simpler"}) if req.mode == "hard"
                  and acc.get(req.task, 1.0) < opts.simpler_below else req) for case, req in pairs]
    results = teacher.ask([req for _, req in pairs])
    return [
        Candidate(instruction=sibling_instruction(case, res.output, ctx, NAME, mode=req.mode), generator=NAME)
        for (case, req), res in zip(pairs, results, strict=True) if res.ok
    ]
