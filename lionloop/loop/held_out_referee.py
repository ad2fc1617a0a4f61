"""`lionloop evaluate --referee`: held-out answers judged against the teacher's by the run's referee,
for data without reference answers (or where a verifier cannot say what a good answer is).

A student's answer counts as good where the referee does not call it hard (Lion's rule: the
teacher's score above the student's by more than `judge.tau`; an answer identical to the teacher's
is good without a call under `judge.skip_identical`), so the share of good answers, its interval and
the paired comparison read as the verifier's accuracy does; Lion's relative score (student score
over teacher score) and win/tie/loss are given beside it.

These are paid calls: the teacher's answers to rows the run never had answered (an eval file's new
rows), and the judgements (two per row in both orders). They go to the run's evaluation cache
(`RunDir.evaluations`; a batch teacher's jobs are recorded there too), never to its pool or its own
call cache, so the run is left as it was and a second evaluation of the same answers pays nothing.
`max_calls` caps what one evaluation pays: the cases are taken in a seeded random order, a chunk at
a time that the calls left surely pay for (teacher answer and judgements together), so a cap buys
judged cases, a random sample of all, not teacher answers for cases it cannot judge.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lionloop.config import RunConfig
from lionloop.loop.preflight import check_servers, resolve_backend, teacher_sections
from lionloop.loop.referee import judge_cases
from lionloop.loop.reporting import Reporter
from lionloop.loop.runtime import build_teacher
from lionloop.loop.scoring import accuracy, relative_score, wilson_interval, wrong_answer
from lionloop.plugin.manager import get_plugin_manager
from lionloop.records import Instruction, Verdict
from lionloop.rundir import RunDir
from lionloop.stores.cache import CallCache
from lionloop.stores.pool import Pool
from lionloop.teacher.accounting import BUDGET_ERROR
from lionloop.teacher.client import Teacher
from lionloop.teacher.requests import Answer


@dataclass
class Judging:
    """The run's teacher and referee on the evaluation cache, with the teacher's answers to judge by."""

    rd: RunDir
    cfg: RunConfig
    pack: Any
    max_calls: int | None = None

    def __post_init__(self) -> None:
        registry = get_plugin_manager().build_registry()
        # The servers may have changed since the run (another model, a shorter context): say so here,
        # as `lionloop run` does at start-up, rather than in a refusal per judge call.
        sections = [(path, tcfg) for path, tcfg in teacher_sections(self.cfg) if path != "generator_teacher"]
        check_servers(self.cfg, [(path, resolve_backend(registry, tcfg, path)) for path, tcfg in sections], judges=True)
        self.cache = CallCache(self.rd.evaluations)
        self.run_id = f"evaluate-{uuid.uuid4().hex[:12]}"  # this evaluation's paid calls
        limits = {"budget": self.calls_left}

        def client(section: str) -> Teacher:
            tcfg = getattr(self.cfg, section)
            return build_teacher(registry, tcfg, section, self.pack, self.rd.path, self.cache, self.run_id,
                                 jobs=self.rd.evaluations, **limits).at(0, "evaluate")

        self.teacher = client("teacher")
        self.referee = client("referee") if self.cfg.referee else self.teacher
        self.failures: dict[str, str] = {}

    def calls_left(self) -> int | None:
        return None if self.max_calls is None else max(0, self.max_calls - self.paid())

    def paid(self) -> int:
        return self.cache.total_paid(self.run_id)

    def close(self) -> None:
        self.cache.close()

    def start(self, items: list[Instruction], subjects: int, reporter: Reporter) -> tuple[int, int]:
        """Put the cases in a seeded random order (where max_calls ends the judging, those judged are a
        random sample of all) and get the teacher's answers for the first of them: (how many cases,
        how many of them have an answer to judge by; 0 is said before any student answers)."""
        self.order = list(items)
        random.Random(f"{self.cfg.seed}:evaluate").shuffle(self.order)
        self.subjects, self.pos = subjects, 0
        with Pool(self.rd.pool, readonly=True) as pool:  # the run's own: its eval rows were answered at bootstrap
            self.known: dict[str, str] = pool.teacher_answers(i.id for i in items)
        self.chunk = self._next_chunk(reporter)
        return len(self.chunk), sum(i.id in self.known for i in self.chunk)

    def _next_chunk(self, reporter: Reporter | None = None) -> list[Instruction]:
        """The next cases in the order that the calls left surely pay for (all of them without a cap):
        each at most a teacher answer, where there is none yet, and a judgement per subject (two calls
        in both orders); at least one (free where its answers are identical). Their teacher answers
        are asked for here (those the teacher could not give are in `failures`)."""
        rest = self.order[self.pos:]
        left = self.calls_left()
        if left is not None:
            per_case = (2 if self.cfg.judge.both_orders else 1) * self.subjects
            cost, n = 0, 0
            for ins in rest:
                cost += per_case + (ins.id not in self.known)
                if cost > left and n:
                    break
                n += 1
            rest = rest[:n]
        self.pos += len(rest)
        missing = [i for i in rest if i.id not in self.known]
        if missing:
            advance = reporter.task(f"teacher answers {len(missing)} instructions the run never had answered",
                                    len(missing)) if reporter else None
            results = self.teacher.ask([Answer(instruction=i.text, input=i.input, task=i.task) for i in missing],
                                       advance)
            if reporter:
                reporter.task_done()
            for ins, res in zip(missing, results, strict=True):
                if res.ok:
                    self.known[ins.id] = res.output.text
                else:
                    self.failures[ins.id] = f"teacher: {res.error or 'no answer'}"
        return rest

    def judge(self, runs: list[tuple[Any, list[str], int, list[str | None] | None]], items: list[Instruction],
              reporter: Reporter, show_wrong: int = 0) -> list[dict[str, Any]]:
        """Each (subject, answers, truncated, thinking) judged against the teacher's answers, a chunk of the
        order at a time (`start` first), while calls are left: `held_out.scored`'s figures per subject
        with the referee's verdicts in place of the verifier's (good = not called hard), and Lion's
        relative score and win/tie/loss as `relative`."""
        by_id = [{i.id: a for i, a in zip(items, answers, strict=True)} for _, answers, _, _ in runs]
        verdicts: list[list[Verdict]] = [[] for _ in runs]
        judged: list[Instruction] = []  # the cases with a teacher answer, in the order
        who = " and ".join(subj.who for subj, *_ in runs)
        advance = reporter.task(f"referee judges {who}'s answers", len(items) * len(runs))
        chunk = self.chunk
        while chunk:
            have = [i for i in chunk if i.id in self.known]
            judged += have
            unpaid = any(BUDGET_ERROR in self.failures.get(i.id, "") for i in chunk)
            for k, (subj, *_) in enumerate(runs):
                new = judge_cases(self.referee, have, self.known, by_id[k], subj.round, self.cfg.judge, advance)
                verdicts[k] += new
                unpaid = unpaid or any(v.hard is None and BUDGET_ERROR in v.raw for v in new)
            chunk = [] if unpaid else self._next_chunk()
        reporter.task_done()
        for ins in self.order[self.pos:]:  # the calls ran out before these
            self.failures.setdefault(ins.id, f"left out: {BUDGET_ERROR}")
        return [self._scored(subj, items, by_id[k], truncated, thinking, verdicts[k], judged,
                             show_wrong if k == 0 else 0)
                for k, (subj, _, truncated, thinking) in enumerate(runs)]

    def _scored(self, subj: Any, items: list[Instruction], by_id: dict[str, str], truncated: int,
                thinking: list[str | None] | None, verdicts: list[Verdict], judged: list[Instruction],
                show_wrong: int) -> dict[str, Any]:
        # Where max_calls ran out inside a chunk, the cases after the first one left unjudged are
        # left out too, those an identical answer made free among them: the judged stay a random
        # sample, not one tilted to the answers that needed no call.
        order = {i.id: k for k, i in enumerate(judged)}
        cut = min((order[v.instruction_id] for v in verdicts if v.hard is None and BUDGET_ERROR in v.raw),
                  default=len(judged))
        verdicts = [v if order[v.instruction_id] < cut else
                    Verdict(v.instruction_id, v.round, None, None, None, raw=f"left out: {BUDGET_ERROR}")
                    for v in verdicts]
        good: dict[str, bool | None] = {i.id: None for i in items}
        good.update({v.instruction_id: None if v.hard is None else not v.hard for v in verdicts})
        acc = accuracy((i.task, good[i.id]) for i in items)
        overall = acc["overall"]
        wrong = [wrong_answer(i, self.known.get(i.id), by_id[i.id], thinking, k)
                 for k, i in enumerate(items) if good[i.id] is False][:show_wrong]
        unjudged = {v.instruction_id: v.raw for v in verdicts if v.hard is None}
        return {
            "run_id": subj.run_id, "round": subj.round, "who": subj.who, "student": str(subj.student),
            "overall": overall, "per_skill": acc["per_skill"], "n": acc["n"], "asked": len(items),
            "interval_95": None if overall is None else list(wilson_interval(overall, acc["n"])),
            "truncated": truncated, "right": good, "answers": by_id, "wrong": wrong,
            "relative": relative_score(verdicts, {i.id: i.task for i in judged}),
            "not_judged": {**{k: v for k, v in self.failures.items() if k in good}, **unjudged},
        }


def why_not_judged(reasons: dict[str, str], shown: int = 2) -> str:
    """The commonest reasons answers went unjudged, with their counts: 'judge failed: transport:
    connection refused (398), ...'."""
    counts = Counter(" ".join(r.split())[:160] for r in reasons.values())
    return "; ".join(f"{r} ({n})" for r, n in counts.most_common(shown)) + (
        f"; {len(counts) - shown} other reasons" if len(counts) > shown else "")
