"""The referee: Lion's rule on 1-10 scores, judged in both orders to cancel position bias."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lionloop.config import RefereeConfig
from lionloop.records import Instruction, Verdict
from lionloop.requests import Judge
from lionloop.teacher import Teacher


def lion_rule(teacher_score: float, student_score: float, tau: float) -> bool:
    """Hard when the teacher's answer beats the student's by at least tau."""
    return teacher_score - student_score >= tau


def judge_cases(
    referee: Teacher,
    items: Sequence[Instruction],
    teacher_answers: dict[str, str],
    student_answers: dict[str, str],
    round: int,
    cfg: RefereeConfig,
    progress: Callable[[int], None] | None = None,
) -> list[Verdict]:
    """One verdict per instruction. A judge reply that cannot be used gives a verdict with no
    scores and hard=None (recorded, skipped by generators), never a made-up score."""
    verdicts: list[Verdict] = []
    to_judge: list[Instruction] = []
    for ins in items:
        t, s = teacher_answers[ins.id], student_answers[ins.id]
        if cfg.skip_identical and t.strip() == s.strip():
            verdicts.append(Verdict(ins.id, round, None, None, False, raw="identical answers: easy, not judged"))
            if progress:
                progress(1)
        else:
            to_judge.append(ins)
    requests: list[Judge] = []
    for ins in to_judge:
        t, s = teacher_answers[ins.id], student_answers[ins.id]
        requests.append(Judge(instruction=ins.text, input=ins.input, task=ins.task, answer_1=t, answer_2=s))
        if cfg.both_orders:
            requests.append(Judge(instruction=ins.text, input=ins.input, task=ins.task, answer_1=s, answer_2=t))
    per = 2 if cfg.both_orders else 1
    step = (lambda n: progress(n / per)) if progress else None  # noqa: E731
    results = referee.ask(requests, step)
    for k, ins in enumerate(to_judge):
        first = results[k * per]
        if not first.ok:
            verdicts.append(Verdict(ins.id, round, None, None, None, raw=f"judge failed: {first.error}"))
            continue
        t_scores, s_scores = [first.output.score_1], [first.output.score_2]
        raw = [first.raw or first.output.explanation]
        if cfg.both_orders:
            second = results[k * per + 1]
            if not second.ok:
                verdicts.append(Verdict(ins.id, round, None, None, None, raw=f"judge failed (swapped order): {second.error}"))
                continue
            t_scores.append(second.output.score_2)
            s_scores.append(second.output.score_1)
            raw.append(second.raw or second.output.explanation)
        ts, ss = sum(t_scores) / len(t_scores), sum(s_scores) / len(s_scores)
        verdicts.append(Verdict(ins.id, round, ts, ss, lion_rule(ts, ss, cfg.tau), raw="\n---\n".join(raw)))
    return verdicts
