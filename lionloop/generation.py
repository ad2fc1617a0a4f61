"""The generate stage's work: which cases each generator sees, and what it may spend.

Generators are pluggy plugins (`lionloop_generate`); each gets the case kinds it declares it
consumes and a teacher capped at its share of the round's budget. A generator that raises is
reported by name and skipped; its candidates never reach the pool.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from lionloop.context import Runtime
from lionloop.hookspecs import GeneratorSpec
from lionloop.records import Candidate, Case, Cases, Verdict, content_id

log = logging.getLogger(__name__)


def load_cases(rt: Runtime, r: int) -> Cases:
    """The round's judged cases, split by the referee's call (unjudged ones are left out).

    With `generate.case_selection: uniform` every pool instruction is a "hard" case, in a
    seeded random order, and nothing is judged: the uniform-expansion baseline.
    """
    instructions = {i.id: i for i in rt.pool.instructions(["train", "cache"])}
    teacher = rt.pool.teacher_answers()
    student = rt.pool.student_answers(r)
    cases = Cases(round=r)
    if rt.cfg.generate.case_selection == "uniform":
        order = sorted(instructions)
        rt.context(r).rng("uniform-cases").shuffle(order)
        cases.hard = [
            Case(instructions[i], teacher.get(i, ""), student.get(i, ""),
                 Verdict(i, r, None, None, None, raw="uniform selection: not judged"))
            for i in order
        ]
        return cases
    for v in rt.pool.verdicts(r):
        ins = instructions.get(v.instruction_id)
        if ins is None or v.hard is None:
            continue
        case = Case(ins, teacher.get(ins.id, ""), student.get(ins.id, ""), v)
        (cases.hard if v.hard else cases.easy).append(case)
    cases.hard.sort(key=lambda c: (-(c.verdict.diff or 0), c.instruction.id))
    return cases


class BudgetedTeacher:
    """A generator's view of the teacher: at most `limit` paid calls; failed requests are kept
    (with their reason) for the failures table, so every request is accounted for."""

    def __init__(self, teacher: Any, limit: int, plugin: str) -> None:
        self._teacher = teacher
        self.left = limit
        self.plugin = plugin
        self.failures: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._teacher, name)

    def ask(self, requests: Any, progress: Any = None, limit: int | None = None) -> Any:
        before = self._teacher.cache.total_paid(self._teacher.run_id)
        cap = self.left if limit is None else min(limit, self.left)
        results = self._teacher.ask(requests, progress, limit=cap)
        self.left -= self._teacher.cache.total_paid(self._teacher.run_id) - before
        for res in results:
            if not res.ok:
                payload = json.dumps(res.request.payload(), sort_keys=True, ensure_ascii=False)
                key = f"{self.plugin}/{res.request.kind}/{content_id(payload)}"
                about = getattr(res.request, "instruction", "")
                self.failures[key] = f"{res.error}" + (f" | {about[:80]}" if about else "")
        return results


def generator_spec(rt: Runtime, plugin: str) -> GeneratorSpec:
    """What a generator plugin declares (its `lionloop_generator_spec`), or the defaults."""
    for impl in rt.pm.hook.lionloop_generator_spec.get_hookimpls():
        if impl.plugin_name == plugin:
            return impl.function() or GeneratorSpec()
    return GeneratorSpec()


@dataclass
class Generated:
    """One round's generator output and its accounting."""

    candidates: list[Candidate] = field(default_factory=list)
    by_generator: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def run_generators(rt: Runtime, r: int, cases: Cases) -> Generated:
    """Run every enabled generator plugin on the round's cases, each within its quota."""
    res = Generated()
    gcfg = rt.cfg.generate
    impls = {impl.plugin_name: impl for impl in rt.pm.hook.lionloop_generate.get_hookimpls()}
    for name, gen in gcfg.generators.items():
        if not gen.enabled:
            continue
        impl = impls.get(name)
        if impl is None:
            res.errors[name] = "enabled in generate.generators but no such generator plugin is loaded"
            log.error("generator %s: %s", name, res.errors[name])
            continue
        quota = int(gen.share * gcfg.max_new_per_round)
        if quota <= 0:
            continue
        ctx = rt.context(r, plugin=name, max_candidates=quota)
        t0 = time.perf_counter()
        try:
            spec = generator_spec(rt, name)
            # A generator sees only the case kinds it declares it consumes.
            mine = Cases(round=r, hard=cases.hard if "hard" in spec.consumes else [],
                         easy=cases.easy if "easy" in spec.consumes else [])
            # Paid calls are capped too, so a generator cannot spend past its share of the budget.
            limit = int(gen.options.get("max_calls", quota * spec.calls_per_candidate))
            teacher = BudgetedTeacher(rt.generator_teacher, limit=limit, plugin=name)
            out = impl.function(cases=mine, teacher=teacher, ctx=ctx) or []
        except Exception as err:  # noqa: BLE001 - a plugin failure is reported, never fatal
            res.errors[name] = f"{type(err).__name__}: {err}"
            log.error("generator plugin %r raised: %s", name, res.errors[name])
            continue
        out = list(out)[:quota]
        log.info("generator %s: %d candidates in %.1fs", name, len(out), time.perf_counter() - t0)
        res.by_generator[name] = len(out)
        res.calls[name] = limit - teacher.left
        res.failures.update(teacher.failures)
        res.candidates.extend(out)
    return res
