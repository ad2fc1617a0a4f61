"""The `lion` generator (Jiang et al. 2023): hard rewrites of hard cases, rarer rewrites of easy ones.

Options (generate.generators.lion.options):
  per_hard   rewrites asked per hard case (default 2)
  easy_ratio share of this generator's candidates spent on easy cases (default 0.25; Lion keeps
             some easy-derived instructions so the pool does not collapse onto a few skills)
  max_task_share  cap on the share of the hard rewrites one task may take (default none, as in
             Lion). Hard is not learnable: on the offline pack the uncapped loop spent half its
             budget on multi-digit addition, which the tiny student never learns (BENCHMARKS.md,
             effectiveness). Budget the cap frees goes to further siblings of other tasks' hard
             cases, then to easy rewrites.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from lionloop.plugin.hookspecs import hookimpl
from lionloop.plugin.plan import GeneratorSpec
from lionloop.records import Candidate, Case, Cases, Instruction
from lionloop.teacher.requests import Rewrite

NAME = "lion"


def _requests(cases: Cases, quota: int, per_hard: int, easy_ratio: float, ctx: Any,
              max_task_share: float | None = None) -> list[tuple[Case, Rewrite]]:
    n_easy = min(len(cases.easy), round(quota * easy_ratio)) if cases.hard else min(len(cases.easy), quota)
    n_hard = quota - n_easy
    cap = None if max_task_share is None else max(1, math.ceil(max_task_share * n_hard))
    # With a cap, more siblings per case may be needed to spend the hard budget.
    stride = per_hard if cap is None else 4 * per_hard
    per_task: Counter[str] = Counter()
    out: list[tuple[Case, Rewrite]] = []
    # Hardest first (largest score gap), each asked for `per_hard` different siblings. The
    # variant number moves with the round: a case still hard next round gets new siblings,
    # not the cached ones again.
    for k in range(stride):
        variant = (ctx.round - 1) * stride + k
        for case in cases.hard:
            if len(out) >= n_hard:
                break
            ins = case.instruction
            if cap is not None and per_task[ins.task] >= cap:
                continue
            per_task[ins.task] += 1
            out.append((case, Rewrite(instruction=ins.text, input=ins.input, task=ins.task, mode="hard", variant=variant)))
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
    return GeneratorSpec(consumes=("hard", "easy"), calls_per_candidate=2, kinds=("answer",))


@hookimpl
def lionloop_generate(cases: Cases, teacher: Any, ctx: Any) -> list[Candidate]:
    opts = ctx.options()
    per_hard = int(opts.get("per_hard", 2))
    easy_ratio = float(opts.get("easy_ratio", 0.25))
    share = opts.get("max_task_share")
    max_task_share = None if share is None else float(share)
    quota = ctx.max_candidates if ctx.max_candidates is not None else 2 * len(cases.hard)
    pairs = _requests(cases, quota, per_hard, easy_ratio, ctx, max_task_share)
    results = teacher.ask([req for _, req in pairs])
    out: list[Candidate] = []
    for (case, req), res in zip(pairs, results, strict=True):
        if not res.ok:
            continue
        parent = case.instruction
        ins = Instruction(
            text=res.output.instruction.strip(),
            input=res.output.input.strip(),
            task=parent.task,
            origin=NAME,
            parent_id=parent.id,
            round_born=ctx.round,
            split="train",
            meta={"mode": req.mode, "parent_diff": case.verdict.diff},
        )
        out.append(Candidate(instruction=ins, generator=NAME))
    return out
