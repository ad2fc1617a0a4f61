from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lionloop.config import RefereeConfig
from lionloop.loop.referee import judge_cases, lion_rule, position_bias
from lionloop.records import Instruction
from lionloop.stores.cache import CallCache
from lionloop.teacher.client import Reply, Teacher
from lionloop.teacher.requests import Judge, TeacherRequest


class BiasedJudge:
    """A referee double that prefers whatever answer comes first by `bias` points."""

    name = "biased"
    model = "m"

    def __init__(self, bias: float, garbage_for: set[str] = frozenset()) -> None:
        self.bias = bias
        self.garbage_for = garbage_for
        self.calls = 0

    def params(self) -> dict[str, Any]:
        return {}

    def prompt_for(self, request: TeacherRequest, attempt: int) -> Any:
        return {**request.payload(), "attempt": attempt}

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        for i, r in enumerate(requests):
            self.calls += 1
            assert isinstance(r, Judge)
            if r.instruction in self.garbage_for:
                yield i, Reply(text="I refuse to give numbers. Score of Assistant 1: 11")
                continue
            q1 = 9.0 if r.answer_1.strip() == "right" else 4.0
            q2 = 9.0 if r.answer_2.strip() == "right" else 4.0
            s1, s2 = min(10.0, q1 + self.bias), q2
            yield i, Reply(text=f'{{"explanation": "ok", "score_1": {s1}, "score_2": {s2}}}')


def _teacher(tmp_path: Path, backend: Any) -> Teacher:
    return Teacher(backend, CallCache(tmp_path / "c.sqlite"), "run", parse_retries=1)


def test_lion_rule_threshold() -> None:
    assert lion_rule(8, 7, 1.0) and not lion_rule(8, 7.5, 1.0) and lion_rule(8, 8, 0.0)


def test_both_orders_cancel_position_bias(tmp_path: Path) -> None:
    items = [Instruction(text="q1", task="t"), Instruction(text="q2", task="t")]
    teacher = {items[0].id: "right", items[1].id: "right"}
    student = {items[0].id: "right ", items[1].id: "wrong"}  # first one equal up to space
    cfg = RefereeConfig(tau=1.0, skip_identical=False)
    verdicts = judge_cases(_teacher(tmp_path, BiasedJudge(bias=2.0)), items, teacher, student, 1, cfg)
    v_same, v_wrong = verdicts
    # Equal answers: the first-position bias cancels out exactly when averaged over both orders.
    assert v_same.teacher_score == v_same.student_score == 9.5 and v_same.hard is False
    # (9+2 capped at 10, and 9) for the teacher; (4+2, 4) for the student -> 9.5 vs 5.0.
    assert v_wrong.teacher_score == 9.5 and v_wrong.student_score == 5.0 and v_wrong.hard is True


def test_both_orders_measure_the_judges_position_bias(tmp_path: Path) -> None:
    items = [Instruction(text="q1", task="t"), Instruction(text="q2", task="t")]
    teacher = {items[0].id: "right", items[1].id: "right"}
    student = {items[0].id: "right ", items[1].id: "wrong"}
    cfg = RefereeConfig(tau=1.0, skip_identical=False)
    orders: list[tuple[float, bool]] = []
    judge_cases(_teacher(tmp_path, BiasedJudge(bias=1.0)), items, teacher, student, 1, cfg, orders=orders)
    # Equal answers: 10 vs 9 in either order, so each order alone calls a different side hard;
    # right vs wrong: 10 - 4 and 5 - 9, the first slot +1 either way, and both orders call it hard.
    assert orders == [(1.0, True), (1.0, False)]
    assert position_bias(orders) == {"first_slot_points": 1.0, "order_flips": 0.5, "n": 2}
    unbiased: list[tuple[float, bool]] = []
    judge_cases(_teacher(tmp_path / "u", BiasedJudge(bias=0.0)), items, teacher, student, 1, cfg, orders=unbiased)
    assert position_bias(unbiased) == {"first_slot_points": 0.0, "order_flips": 0.0, "n": 2}
    one: list[tuple[float, bool]] = []
    judge_cases(_teacher(tmp_path / "o", BiasedJudge(bias=1.0)), items, teacher, student, 1,
                RefereeConfig(tau=1.0, skip_identical=False, both_orders=False), orders=one)
    assert one == [] and position_bias(one) is None  # one order measures no bias


def test_single_order_keeps_the_bias(tmp_path: Path) -> None:
    items = [Instruction(text="q", task="t")]
    ans = {items[0].id: "right"}
    cfg = RefereeConfig(tau=1.0, both_orders=False, skip_identical=False)
    (v,) = judge_cases(_teacher(tmp_path, BiasedJudge(bias=2.0)), items, ans, dict(ans), 1, cfg)
    assert v.hard is True  # the biased judge alone calls identical answers "hard"


def test_identical_answers_skip_the_judge(tmp_path: Path) -> None:
    backend = BiasedJudge(0)
    items = [Instruction(text="q", task="t")]
    ans = {items[0].id: "right"}
    (v,) = judge_cases(_teacher(tmp_path, backend), items, ans, dict(ans), 1, RefereeConfig())
    assert v.hard is False and v.teacher_score is None and backend.calls == 0


def test_unparseable_verdict_is_recorded_not_invented(tmp_path: Path) -> None:
    backend = BiasedJudge(0, garbage_for={"bad"})
    items = [Instruction(text="bad", task="t"), Instruction(text="good", task="t")]
    teacher = {i.id: "right" for i in items}
    student = {i.id: "wrong" for i in items}
    verdicts = judge_cases(_teacher(tmp_path, backend), items, teacher, student, 1, RefereeConfig())
    bad, good = verdicts
    assert bad.hard is None and bad.teacher_score is None and "judge failed" in bad.raw
    assert good.hard is True
    # One re-ask per order for the garbage one: 2 orders x 2 attempts, plus 2 for the good one.
    assert backend.calls == 6


def test_a_run_records_its_referees_position_bias(micro_run: Path) -> None:
    from lionloop.inspect.status import run_status

    judged = [r["judge_position"] for r in run_status(micro_run)["rounds"] if r.get("judge_position")]
    assert judged, "no round recorded the referee's position bias"
    for pos in judged:
        # The offline oracle scores each answer by itself, whichever slot it is in.
        assert pos["n"] > 0 and pos["first_slot_points"] == 0 and pos["order_flips"] == 0


def test_progress_counts_whole_cases_in_both_orders(tmp_path: Path) -> None:
    """The bar moves a case at a time (before: half a case per call, '19.5/280' on the screen); an
    identical answer, judged without a call, counts at once; a garbage reply re-asked still ends at
    one step for its case."""
    items = [Instruction(text=f"q{k}", task="t") for k in range(5)]
    teacher = {i.id: "right" for i in items}
    student = {i.id: a for i, a in zip(items, ["right", "wrong", "wrong", "right ", "wrong"], strict=True)}
    steps: list[Any] = []
    cfg = RefereeConfig(tau=1.0, skip_identical=True)
    judge_cases(_teacher(tmp_path, BiasedJudge(bias=0.0, garbage_for={"q2"})), items, teacher, student, 1, cfg,
                steps.append)
    assert all(isinstance(n, int) and n >= 1 for n in steps) and sum(steps) == len(items)
