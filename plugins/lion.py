"""The `lion` generator (Jiang et al. 2023): hard rewrites of hard cases, rarer rewrites of easy ones.

Options (generate.generators.lion.options):
  per_hard   rewrites asked per hard case (default 2)
  easy_ratio share of this generator's candidates spent on easy cases (default 0.25; Lion keeps
             some easy-derived instructions so the pool does not collapse onto a few skills)
"""

from __future__ import annotations

from typing import Any

from lionloop.hookspecs import GeneratorSpec, hookimpl
from lionloop.records import Candidate, Case, Cases, Instruction
from lionloop.requests import Rewrite

NAME = "lion"


def _requests(cases: Cases, quota: int, per_hard: int, easy_ratio: float, ctx: Any) -> list[tuple[Case, Rewrite]]:
    n_easy = min(len(cases.easy), round(quota * easy_ratio)) if cases.hard else min(len(cases.easy), quota)
    n_hard = quota - n_easy
    out: list[tuple[Case, Rewrite]] = []
    # Hardest first (largest score gap), each asked for `per_hard` different siblings. The
    # variant number moves with the round: a case still hard next round gets new siblings,
    # not the cached ones again.
    for k in range(per_hard):
        variant = (ctx.round - 1) * per_hard + k
        for case in cases.hard:
            if len(out) >= n_hard:
                break
            ins = case.instruction
            out.append((case, Rewrite(instruction=ins.text, input=ins.input, task=ins.task, mode="hard", variant=variant)))
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
    quota = ctx.max_candidates if ctx.max_candidates is not None else 2 * len(cases.hard)
    pairs = _requests(cases, quota, per_hard, easy_ratio, ctx)
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
