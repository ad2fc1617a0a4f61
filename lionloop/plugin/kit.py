"""The generator kit: small helpers the built-in generator plugins share; third-party generators
may use them too (`from lionloop import siblings, affordable, ...`). Not a plugin: it registers
nothing and has no entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lionloop.plugin.hookspecs import hookimpl
from lionloop.records import Candidate, Case, Cases, Instruction
from lionloop.teacher.requests import Rewrite


def enabled_options(ctx: Any, name: str) -> Any | None:
    """Generator `name`'s validated options when it is enabled in the run, else None.

    For hooks other than `lionloop_generate` (formatting, prompts, evaluation), which are
    called for every plugin and must stay silent when their generator is off.
    """
    return ctx.options_of(name)


def meta_reject_filter(name: str) -> Callable[..., str | None]:
    """A `lionloop_filter_candidate` hookimpl for generator `name` that rejects, with its reason,
    every candidate whose instruction carries `meta["reject"]`. The generator keeps such
    candidates (instead of dropping them) so curate counts each rejection by reason.

        lionloop_filter_candidate = meta_reject_filter(NAME)
    """

    @hookimpl
    def lionloop_filter_candidate(candidate: Candidate, ctx: Any) -> str | None:
        return candidate.instruction.meta.get("reject") if candidate.generator == name else None

    return lionloop_filter_candidate


def one_line(text: str) -> str:
    """The student answers on one line: newlines and runs of spaces become single spaces."""
    return " ".join(str(text).split())


def affordable(teacher: Any, quota: int, calls_per_candidate: int) -> int:
    """How many candidates the budget still pays for (the teacher a generator gets has `left`)."""
    left = getattr(teacher, "left", None)
    return quota if left is None else min(quota, max(0, left) // calls_per_candidate)


def siblings(
    cases: Cases, teacher: Any, ctx: Any, n: int, per_case: int, variant_base: int, origin: str
) -> list[tuple[Case, Instruction]]:
    """Up to `n` new train instructions like the hard cases (hardest first), `per_case` each.

    Lion's own "hard" rewrite, so a plugin builds on the same notion of a sibling; the variant
    numbers start at `variant_base` so two generators never ask for the same (cached) sibling,
    and move with the round so a case still hard next round gets new siblings.
    """
    # Largest score gap first; ties in an order of this plugin's own, so generators that share
    # the round's cases do not all start from the same few.
    tie = ctx.rng("case-order")
    hard = [c for _, _, c in sorted(((-(c.verdict.diff or 0.0), tie.random(), c) for c in cases.hard),
                                    key=lambda t: (t[0], t[1]))]
    picked: list[tuple[Case, Rewrite]] = []
    for k in range(per_case):
        for case in hard:
            if len(picked) >= n:
                break
            ins = case.instruction
            variant = variant_base + (ctx.round - 1) * per_case + k
            picked.append((case, Rewrite(instruction=ins.text, input=ins.input, task=ins.task, mode="hard", variant=variant)))
    out = []
    for (case, _), res in zip(picked, teacher.ask([r for _, r in picked]), strict=True):
        if res.ok:
            parent = case.instruction
            out.append((case, Instruction(
                text=res.output.instruction.strip(), input=res.output.input.strip(), task=parent.task,
                origin=origin, parent_id=parent.id, round_born=ctx.round, split="train",
                meta={"parent_diff": case.verdict.diff},
            )))
    return out
