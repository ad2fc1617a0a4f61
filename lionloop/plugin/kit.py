"""The generator kit: small helpers the built-in generator plugins share; third-party generators
may use them too (`from lionloop import siblings, answered_siblings, ...`). Not a plugin: it
registers nothing and has no entry point.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lionloop.plugin.hookspecs import hookimpl
from lionloop.records import Candidate, Case, Cases, Instruction
from lionloop.teacher.client import Result
from lionloop.teacher.requests import Answer, Rewrite, TeacherRequest


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


def affordable(teacher: Any, quota: int, calls_per_candidate: float) -> int:
    """How many candidates the budget still pays for (the teacher a generator gets has `left`)."""
    left = getattr(teacher, "left", None)
    return quota if left is None else min(quota, int(max(0, left) // calls_per_candidate))


def sibling_requests(
    hard: Sequence[Case], ctx: Any, n: int, per_case: int, variant_base: int = 0,
    max_per_task: int | None = None,
) -> list[tuple[Case, Rewrite]]:
    """Up to `n` "hard" `Rewrite` requests for the cases in `hard`, in their order, `per_case`
    rounds over them: every case gets its first sibling before any gets its second.

    The variant numbers start at `variant_base` (so two generators never ask for the same cached
    sibling) and move with the round (so a case still hard next round gets new siblings).
    `max_per_task` caps the requests one task may take (Lion's `max_task_share`).
    """
    per_task: Counter[str] = Counter()
    out: list[tuple[Case, Rewrite]] = []
    for k in range(per_case):
        variant = variant_base + (ctx.round - 1) * per_case + k
        for case in hard:
            if len(out) >= n:
                break
            ins = case.instruction
            if max_per_task is not None and per_task[ins.task] >= max_per_task:
                continue
            per_task[ins.task] += 1
            out.append((case, Rewrite(instruction=ins.text, input=ins.input, task=ins.task, mode="hard", variant=variant)))
    return out


def sibling_instruction(case: Case, output: Any, ctx: Any, origin: str, **meta: Any) -> Instruction:
    """The new train instruction a `Rewrite` reply (`output`) makes of `case`: its parent is the
    case, it is born this round, and its meta keeps the parent's score gap (plus `meta`)."""
    parent = case.instruction
    return Instruction(
        text=output.instruction.strip(), input=output.input.strip(), task=parent.task,
        origin=origin, parent_id=parent.id, round_born=ctx.round, split="train",
        meta={**meta, "parent_diff": case.verdict.diff},
    )


def siblings(
    cases: Cases, teacher: Any, ctx: Any, n: int, per_case: int, variant_base: int, origin: str
) -> list[tuple[Case, Instruction]]:
    """Up to `n` new train instructions like the hard cases (hardest first), `per_case` each.

    Lion's own "hard" rewrite (`sibling_requests`), so a plugin builds on the same notion of a
    sibling; see there for the variant numbers.
    """
    # Largest score gap first; ties in an order of this plugin's own, so generators that share
    # the round's cases do not all start from the same few.
    tie = ctx.rng("case-order")
    hard = [c for _, _, c in sorted(((-(c.verdict.diff or 0.0), tie.random(), c) for c in cases.hard),
                                    key=lambda t: (t[0], t[1]))]
    picked = sibling_requests(hard, ctx, n, per_case, variant_base)
    return [(case, sibling_instruction(case, res.output, ctx, origin))
            for (case, _), res in zip(picked, teacher.ask([r for _, r in picked]), strict=True) if res.ok]


@dataclass(frozen=True)
class AnsweredSibling:
    """A sibling of a hard case with the teacher's answer to it and the replies to the plugin's
    own requests about it (`answered_siblings`)."""

    case: Case
    instruction: Instruction
    answer: str  # the teacher's answer, stripped
    results: list[Result]  # one per request the plugin asked about this sibling, in its order
    # The thinking a reasoning teacher wrote before that answer (None: it wrote none): a rationale
    # it already paid for (the `rationale` generator's `source: thinking`).
    thinking: str | None = None


def answered_siblings(
    cases: Cases, teacher: Any, ctx: Any, *, per_case: int, variant_base: int, origin: str,
    requests: Callable[[Instruction], list[TeacherRequest]], calls_per_candidate: float | None = None,
) -> list[AnsweredSibling]:
    """Siblings of the hard cases (`siblings`), each asked for the teacher's `Answer` and for the
    plugin's own `requests(sibling)`, all in one batch: the body rationale, socratic and
    finetune_cot share. A sibling whose answer failed is dropped (nothing to check the plugin's
    replies against, and nothing curate could answer cheaper).

    As many siblings as `ctx.max_candidates` (default: one per hard case) and the teacher's
    budget allow at `calls_per_candidate` paid calls each (the rewrite, the answer, the
    plugin's requests; None: the plan's figure for the plugin, `ctx.calls_per_candidate()`, which
    its spec's `calls_for` sets under the run's options). The answer is the one curate would ask for, so the cache then answers
    curate for free.
    """
    quota = ctx.max_candidates if ctx.max_candidates is not None else len(cases.hard)
    if calls_per_candidate is None:
        calls_per_candidate = ctx.calls_per_candidate()
        if calls_per_candidate is None:
            raise ValueError(f"answered_siblings: {origin} is not a planned generator; pass calls_per_candidate")
    n = affordable(teacher, quota, calls_per_candidate)
    sibs = siblings(cases, teacher, ctx, n, per_case, variant_base, origin)
    asks: list[TeacherRequest] = []
    spans: list[tuple[int, int]] = []
    for _, ins in sibs:
        own = requests(ins)
        spans.append((len(asks), len(own)))
        asks += [Answer(instruction=ins.text, input=ins.input, task=ins.task), *own]
    results = teacher.ask(asks)
    out = []
    for (case, ins), (at, k) in zip(sibs, spans, strict=True):
        ans = results[at]
        if ans.ok:
            out.append(AnsweredSibling(case, ins, ans.output.text.strip(), list(results[at + 1 : at + 1 + k]),
                                       ans.thinking))
    return out
