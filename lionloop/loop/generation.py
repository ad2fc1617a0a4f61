"""The generate stage's work: which cases each generator sees, and what it may spend.

Generators are pluggy plugins (`lionloop_generate`); each gets the case kinds it declares it
consumes and a teacher capped at its share of the round's budget. A generator that raises is
reported by name and skipped; its candidates never reach the pool.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lionloop.loop.allocation import NO_GROUP, Allocation, allocate, frontier_first, split_quota
from lionloop.loop.budget import paced_quotas
from lionloop.loop.runtime import Runtime
from lionloop.loop.selection import referee_selects, select_cases, uniform_cases
from lionloop.records import Candidate, Cases, content_id

log = logging.getLogger(__name__)


class BudgetedTeacher:
    """A generator's view of the teacher: at most `limit` paid calls; failed requests are kept
    (with their reason) for the failures table, so every request is accounted for."""

    def __init__(self, teacher: Any, limit: int, plugin: str, money: float | None = None) -> None:
        self._teacher = teacher
        self.left = limit
        self.money = money  # under a cost budget: what its calls may still cost this round
        self.plugin = plugin
        self.failures: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._teacher, name)

    def _charged(self) -> tuple[int, float]:
        """Calls paid so far and their cost, with the replies this stage paid before a crash (served
        as `resumed` after it): a resumed stage's generators then afford what the first attempt's
        did, in calls and in money."""
        t = self._teacher
        at = (t.round, t.stage)
        cost = t.cache.total_cost(t.run_id) + t.acct.resumed_cost[at] if self.money is not None else 0.0
        return t.cache.total_paid(t.run_id) + t.acct.resumed[at], cost

    def ask(self, requests: Any, progress: Any = None, limit: int | None = None) -> Any:
        calls_before, cost_before = self._charged()
        cap = self.left if limit is None else min(limit, self.left)
        results = self._teacher.ask(requests, progress, limit=cap, money_limit=self.money)
        calls, cost = self._charged()
        self.left -= calls - calls_before
        if self.money is not None:
            self.money -= cost - cost_before
        for res in results:
            if not res.ok:
                payload = json.dumps(res.request.payload(), sort_keys=True, ensure_ascii=False)
                key = f"{self.plugin}/{res.request.kind}/{content_id(payload)}"
                about = getattr(res.request, "instruction", "")
                self.failures[key] = f"{res.error}" + (f" | {about[:80]}" if about else "")
        return results


@dataclass
class Generated:
    """One round's generator output and its accounting."""

    candidates: list[Candidate] = field(default_factory=list)
    by_generator: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)  # per generator: candidates from the fill cases
    errors: dict[str, str] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    by_group: dict[str, int] = field(default_factory=dict)


def run_generators(rt: Runtime, r: int, cases: Cases, allocation: Allocation | None = None,
                   quotas: dict[str, tuple[int, int]] | None = None,
                   fill: Callable[[], Cases] | None = None, money: dict[str, float] | None = None) -> Generated:
    """Run every enabled generator plugin on the round's cases, each within its quota.

    `quotas` (generator -> (candidates, paid calls)) overrides the plan's for this round (budget
    pacing). With an `allocation`, each generator runs once per group on that group's cases, with
    the group's share of its quota; what a group cannot use goes to the groups after it. With `fill`,
    a generator that consumes hard cases and made fewer candidates than its quota runs once more on
    the cases `fill()` gives (read once, when first needed) for the rest, within what is left of its calls.
    `money` (generator -> cost): under a cost budget, what a generator's calls may cost this round.
    """
    res = Generated()
    impls = {impl.plugin_name: impl for impl in rt.pm.hook.lionloop_generate.get_hookimpls()}
    for planned in rt.plan:
        name = planned.name
        quota, max_calls = (quotas or {}).get(name, (planned.quota, planned.max_calls))
        if quota <= 0:
            continue
        impl = impls[name]  # the plan holds only loaded generator plugins
        t0 = time.perf_counter()
        # A generator sees only the case kinds it declares it consumes, and a teacher capped at
        # its share of the budget.
        mine = Cases(round=r, hard=cases.hard if "hard" in planned.spec.consumes else [],
                     easy=cases.easy if "easy" in planned.spec.consumes else [])
        teacher = BudgetedTeacher(rt.generator_teacher, limit=max_calls, plugin=name, money=(money or {}).get(name))
        try:
            if allocation is None:
                out = list(impl.function(cases=mine, teacher=teacher, ctx=rt.context(r, plugin=name, max_candidates=quota)) or [])[:quota]
            else:
                by_group_fill = fill if rt.cfg.generate.fill == "group" and "hard" in planned.spec.consumes else None
                out = _by_group(rt, r, impl, name, mine, teacher, quota, allocation, res.by_group, by_group_fill,
                                res.errors)
        except Exception as err:  # noqa: BLE001 - a plugin failure is reported, never fatal
            res.errors[name] = f"{type(err).__name__}: {err}"
            log.error("generator plugin %r raised: %s", name, res.errors[name])
            continue
        if fill is not None and "hard" in planned.spec.consumes:
            if len(out) < quota and teacher.left > 0 and name not in res.errors:
                try:
                    out += _filled(rt, r, impl, name, fill(), teacher, quota - len(out), allocation)
                except Exception as err:  # noqa: BLE001 - as above; what the first pass made is kept
                    _fill_failed(res.errors, name, err)
            res.filled[name] = sum(1 for c in out if c.instruction.meta.get("fill"))
        log.info("generator %s: %d candidates in %.1fs", name, len(out), time.perf_counter() - t0)
        res.by_generator[name] = len(out)
        res.calls[name] = max_calls - teacher.left
        res.failures.update(teacher.failures)
        res.candidates.extend(out)
    return res


def _fill_failed(errors: dict[str, str], name: str, err: Exception) -> None:
    errors[name] = f"{type(err).__name__} (filling): {err}"
    log.error("generator plugin %r raised while filling: %s", name, err)


def _by_group(rt: Runtime, r: int, impl: Any, name: str, cases: Cases, teacher: BudgetedTeacher, quota: int,
              allocation: Allocation, counts: dict[str, int],
              fill: Callable[[], Cases] | None, errors: dict[str, str]) -> list[Candidate]:
    """One generator over the groups: each group's cases with its share of `quota`, smallest share
    first, what a group leaves unused spread over the groups after it by their shares. Candidates
    come back interleaved by group, so any prefix (e.g. `max_accepted_per_round`) keeps the shares.
    With `fill` (`generate.fill: group`), what a group's judged cases leave of its share is filled
    from its own unjudged instructions first, so the allocation steers the fill too; if that raises,
    the error is kept in `errors` and the groups go on without the fill."""
    by_group: dict[str, Cases] = {}
    for kind in ("hard", "easy"):
        for case in getattr(cases, kind):
            g = allocation.group_of(case.instruction)
            getattr(by_group.setdefault(g, Cases(round=r)), kind).append(case)
    fill_of: dict[str, list[Any]] = {}
    if fill is not None:
        for case in fill().hard:
            fill_of.setdefault(allocation.group_of(case.instruction), []).append(case)
        for g in fill_of:
            by_group.setdefault(g, Cases(round=r))
    if not by_group:  # no case it consumes (or it consumes none): one call, as without an allocation
        return list(impl.function(cases=cases, teacher=teacher, ctx=rt.context(r, plugin=name, max_candidates=quota))
                    or [])[:quota]
    shares = {g: s for g, s in allocation.shares.items() if g in by_group and s > 0}
    if not shares:  # no case in any allocated group: spread evenly over the groups with cases
        shares = dict.fromkeys(by_group, 1.0)
    planned = split_quota(quota, shares)
    order = sorted(planned, key=lambda g: (planned[g], g))
    made: dict[str, list[Candidate]] = {}
    carry = 0
    for k, g in enumerate(order):
        rest = sum(shares[h] for h in order[k:])
        q = planned[g] + round(carry * shares[g] / rest) if rest else planned[g]
        carry -= q - planned[g]
        if q > 0 and teacher.left > 0:
            own = by_group[g]
            out = impl.function(cases=own, teacher=teacher, ctx=rt.context(r, plugin=name, max_candidates=q)) \
                if own.hard or own.easy else []
            made[g] = [_tagged(c, group=g) for c in list(out or [])[:q]]
            if fill_of.get(g) and len(made[g]) < q and teacher.left > 0:
                try:
                    more = impl.function(cases=Cases(round=r, hard=fill_of[g]), teacher=teacher,
                                         ctx=rt.context(r, plugin=name, max_candidates=q - len(made[g])))
                except Exception as err:  # noqa: BLE001 - reported; what the groups made is kept
                    _fill_failed(errors, name, err)
                    fill_of.clear()
                    more = []
                made[g] += [_tagged(c, group=g, fill="group") for c in list(more or [])[: q - len(made[g])]]
        counts[g] = counts.get(g, 0) + len(made.get(g, []))
        carry += q - len(made.get(g, []))
    # Interleave: candidate j of a group with n gets position (j + 0.5) / n.
    ranked = sorted(((j + 0.5) / len(c), g, j) for g, c in made.items() for j in range(len(c)))
    return [made[g][j] for _, g, j in ranked]


def _filled(rt: Runtime, r: int, impl: Any, name: str, cases: Cases, teacher: BudgetedTeacher, quota: int,
            allocation: Allocation | None) -> list[Candidate]:
    """Up to `quota` candidates of one generator on the fill cases, tagged `fill: uniform` and, under
    an allocation, with their parent's group (so what each group bought counts them too)."""
    if not cases.hard:
        return []
    out = list(impl.function(cases=cases, teacher=teacher, ctx=rt.context(r, plugin=name, max_candidates=quota)) or [])
    if allocation is None:
        return [_tagged(c, fill="uniform") for c in out[:quota]]
    return [_tagged(c, fill="uniform", group=allocation.groups.get(c.instruction.parent_id or "")
                    or c.instruction.task or NO_GROUP) for c in out[:quota]]


def _tagged(cand: Candidate, **meta: str) -> Candidate:
    """The candidate with `meta` added to its instruction's: the group whose share paid for it, the
    fill it came from."""
    ins = replace(cand.instruction, meta={**cand.instruction.meta, **meta})
    return replace(cand, instruction=ins)


def round_money(quotas: dict[str, tuple[int, int]] | None, pacing: dict[str, Any] | None) -> dict[str, float] | None:
    """Under a cost budget, each generator's part of the round's money (by its candidate quota).

    The quotas come from a candidate's price, which before any round has been measured is a guess
    (the plan's calls per candidate at the mean price of the bootstrap's answers: a rewrite costs
    five of those, and the first round spent the whole budget). With its money capped as well, a
    round cannot spend more than its part on rewrites whatever the guess."""
    if not quotas or not pacing or pacing.get("unit") != "cost":
        return None
    total = sum(q for q, _ in quotas.values())
    return {name: pacing["round_budget"] * q / total for name, (q, _) in quotas.items()} if total else None


def generate_stage(rt: Runtime, r: int) -> dict[str, Any]:
    cases = select_cases(rt, r)
    allocation = allocate(rt, r)
    if allocation is not None and rt.cfg.generate.allocation.within == "frontier":
        cases.hard = frontier_first(rt, cases.hard, allocation.groups, r)
    quotas, pacing = paced_quotas(rt, r)
    fill = None
    if quotas is not None and rt.cfg.generate.fill != "none" and referee_selects(rt.cfg):
        judged = {c.instruction.id for c in cases.hard + cases.easy}
        fill = functools.cache(lambda: uniform_cases(rt, r, exclude=judged))
    out = run_generators(rt, r, cases, allocation, quotas, fill, round_money(quotas, pacing))
    result = {"candidates": len(out.candidates), "by_generator": out.by_generator, "plugin_errors": out.errors,
              "filled": out.filled,
              "teacher_failures": len(out.failures),
              "hard_cases": len(cases.hard), "easy_cases": len(cases.easy), "calls_by_generator": out.calls}
    metrics: dict[str, Any] = {"generate": result}
    if pacing is not None:
        metrics["pacing"] = pacing
    if allocation is not None:
        alloc = allocation.metrics()
        for g, n in out.by_group.items():
            alloc["groups"].setdefault(g, {})["candidates"] = n
        metrics["allocation"] = alloc
    with rt.pool.transaction():
        rt.pool.replace_candidates(r, out.candidates)
        rt.pool.add_failures(r, "generate", out.failures)
        rt.finish_stage(r, "generate", result, metrics)
    return result
