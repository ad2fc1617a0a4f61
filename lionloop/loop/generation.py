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

from lionloop.loop.runtime import Runtime
from lionloop.loop.selection import select_cases
from lionloop.records import Candidate, Cases, content_id

log = logging.getLogger(__name__)


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
    impls = {impl.plugin_name: impl for impl in rt.pm.hook.lionloop_generate.get_hookimpls()}
    for planned in rt.plan:
        name, quota = planned.name, planned.quota
        if quota <= 0:
            continue
        impl = impls[name]  # the plan holds only loaded generator plugins
        ctx = rt.context(r, plugin=name, max_candidates=quota)
        t0 = time.perf_counter()
        # A generator sees only the case kinds it declares it consumes, and a teacher capped at
        # its share of the budget.
        mine = Cases(round=r, hard=cases.hard if "hard" in planned.spec.consumes else [],
                     easy=cases.easy if "easy" in planned.spec.consumes else [])
        teacher = BudgetedTeacher(rt.generator_teacher, limit=planned.max_calls, plugin=name)
        try:
            out = impl.function(cases=mine, teacher=teacher, ctx=ctx) or []
        except Exception as err:  # noqa: BLE001 - a plugin failure is reported, never fatal
            res.errors[name] = f"{type(err).__name__}: {err}"
            log.error("generator plugin %r raised: %s", name, res.errors[name])
            continue
        out = list(out)[:quota]
        log.info("generator %s: %d candidates in %.1fs", name, len(out), time.perf_counter() - t0)
        res.by_generator[name] = len(out)
        res.calls[name] = planned.max_calls - teacher.left
        res.failures.update(teacher.failures)
        res.candidates.extend(out)
    return res


def generate_stage(rt: Runtime, r: int) -> dict[str, Any]:
    cases = select_cases(rt, r)
    out = run_generators(rt, r, cases)
    result = {"candidates": len(out.candidates), "by_generator": out.by_generator, "plugin_errors": out.errors,
              "teacher_failures": len(out.failures),
              "hard_cases": len(cases.hard), "easy_cases": len(cases.easy), "calls_by_generator": out.calls}
    with rt.pool.transaction():
        rt.pool.replace_candidates(r, out.candidates)
        rt.pool.add_failures(r, "generate", out.failures)
        rt.finish_stage(r, "generate", result, {"generate": result})
    return result
