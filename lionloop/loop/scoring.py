"""How the held-out set is scored, and the arithmetic of the figures: accuracy by verifier, Lion's
relative score by referee, and how well the LLM referee's hard/easy calls agree with a verifier.

Metric names travel with the figures (`eval.metric` in the round metrics): "accuracy" (share of
eval rows the verifier finds right) or "relative score" (the student's total referee score over the
teacher's, Lion's and Vicuna's metric)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lionloop.config import RunConfig
from lionloop.errors import ConfigError
from lionloop.plugin.taskpack import pack_has_verifier, pack_scoring
from lionloop.records import Instruction, Verdict

ACCURACY = "accuracy"
RELATIVE = "relative score"


@dataclass(frozen=True)
class Scoring:
    """Which scorers the evaluate stage runs; the primary one names `eval.overall`."""

    verifier: bool
    referee: bool

    @property
    def metric(self) -> str:
        return ACCURACY if self.verifier else RELATIVE


def resolve_scoring(cfg: RunConfig, pack: Any) -> Scoring:
    """`evaluate.scoring` for this pack (auto: the pack's own choice)."""
    want = cfg.evaluate.scoring
    if want == "auto":
        want = pack_scoring(pack)
    return Scoring(verifier=want in ("verifier", "both"), referee=want in ("referee", "both"))


def check_scoring(cfg: RunConfig, pack: Any, eval_set: list[Instruction]) -> Scoring:
    """The run's scoring and judge mode checked against what the pack can verify (preflight)."""
    scoring = resolve_scoring(cfg, pack)
    verifiable = pack_has_verifier(pack)
    name = getattr(pack, "name", "?")
    if cfg.judge.mode != "llm" and not verifiable:
        raise ConfigError(f"judge.mode: {cfg.judge.mode!r} needs a verifier, and the task pack {name!r} has none "
                          "(e.g. task.options.verifier.kind: none)")
    if scoring.verifier:
        # An empty answer is a cheap probe: a row the pack can check gives False, one it cannot gives None.
        checkable = sum(pack.verify(ins, "") is not None for ins in eval_set) if verifiable else 0
        if not checkable:
            raise ConfigError(
                f"evaluate.scoring: the verifier cannot check any of the {len(eval_set)} eval rows of task pack "
                f"{name!r} (no reference answers?): score them by referee (evaluate.scoring: referee)"
            )
    return scoring


# -- accuracy ---------------------------------------------------------------------------------------


def accuracy(checks: Iterable[tuple[str, bool | None]]) -> dict[str, Any]:
    """(task, right?) pairs -> overall and per-task accuracy over the checkable ones."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for task, ok in checks:
        if ok is not None:
            per_task[task].append(ok)
    checked = [x for v in per_task.values() for x in v]
    return {
        "overall": round(sum(checked) / len(checked), 4) if checked else None,
        "per_skill": {k: round(sum(v) / len(v), 4) for k, v in sorted(per_task.items())},
        "n": len(checked),
    }


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% (Wilson score) interval of an accuracy p measured on n instructions: unlike p ± 1.96 se
    it stays inside [0, 1] and is not zero wide at 0% or 100%."""
    if n == 0:
        return 0.0, 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(a: Mapping[str, bool | None], b: Mapping[str, bool | None], z: float = 1.96) -> dict[str, Any]:
    """Two students' verdicts on the same instructions (by id), compared pair by pair: accuracy A −
    accuracy B on the instructions both answers could be checked on, its 95% interval (Newcombe's
    square-and-add interval for paired proportions, 1998, method 10: Wilson intervals of the two
    accuracies combined with the pairs' correlation), and the exact McNemar test on the
    disagreements (`a_only`: A right and B wrong; `b_only`: the reverse; p two-sided)."""
    ids = [k for k, v in a.items() if v is not None and b.get(k) is not None]
    n = len(ids)
    both = sum(bool(a[k]) and bool(b[k]) for k in ids)
    a_only = sum(bool(a[k]) and not b[k] for k in ids)
    b_only = sum(not a[k] and bool(b[k]) for k in ids)
    neither = n - both - a_only - b_only
    out: dict[str, Any] = {"n": n, "both": both, "a_only": a_only, "b_only": b_only, "neither": neither,
                           "a": None, "b": None, "diff": None, "interval_95": None, "p_mcnemar": None}
    if n == 0:
        return out
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    (l1, u1), (l2, u2) = wilson_interval(p1, n, z), wilson_interval(p2, n, z)
    # The pairs' correlation (phi) with Newcombe's continuity adjustment: no more than its sign's share.
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    cross = both * neither - a_only * b_only
    adjusted = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0)
    phi = adjusted / math.sqrt(margins) if margins else 0.0
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = d + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    out.update(a=p1, b=p2, diff=d, interval_95=[max(-1.0, low), min(1.0, high)], p_mcnemar=mcnemar_exact(a_only, b_only))
    return out


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the disagreements b and c as a fair coin's Binomial(b + c, 1/2)."""
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1)) / 2 ** m
    return min(1.0, 2 * tail)


# -- Lion's relative score --------------------------------------------------------------------------


def relative_score(verdicts: Iterable[Verdict], task_of: Mapping[str, str]) -> dict[str, Any]:
    """Lion's relative score from referee verdicts on the eval set: the student's total score over
    the teacher's, overall and per task, and win/tie/loss counts.

    A verdict with both scores is judged (win: student > teacher, tie: equal, loss: below). An
    identical pair (easy, no scores: the referee was not asked) is a tie and adds the same amount
    to both totals, the judged items' mean teacher score (10 when nothing was judged), so it weighs
    like an average item. A failed judgement (hard is None) counts in `unjudged` only.
    """
    judged: list[tuple[str, float, float]] = []
    identical: list[str] = []
    unjudged = 0
    for v in verdicts:
        task = task_of.get(v.instruction_id, "")
        if v.teacher_score is not None and v.student_score is not None:
            judged.append((task, float(v.teacher_score), float(v.student_score)))
        elif v.hard is False:
            identical.append(task)
        else:
            unjudged += 1
    stand_in = sum(t for _, t, _ in judged) / len(judged) if judged else 10.0

    def ratio(rows: list[tuple[str, float, float]], same: int) -> float | None:
        teacher = sum(t for _, t, _ in rows) + same * stand_in
        return round((sum(s for _, _, s in rows) + same * stand_in) / teacher, 4) if teacher else None

    tasks = sorted({t for t, _, _ in judged} | set(identical))
    wins = sum(s > t for _, t, s in judged)
    losses = sum(s < t for _, t, s in judged)
    return {
        "overall": ratio(judged, len(identical)),
        "per_skill": {k: ratio([j for j in judged if j[0] == k], identical.count(k)) for k in tasks},
        "n": len(judged) + len(identical),
        "wins": wins, "ties": len(judged) - wins - losses + len(identical), "losses": losses,
        "identical": len(identical), "unjudged": unjudged,
        "teacher_mean": round(sum(t for _, t, _ in judged) / len(judged), 3) if judged else None,
        "student_mean": round(sum(s for _, _, s in judged) / len(judged), 3) if judged else None,
    }


# -- the LLM referee audited by a verifier --------------------------------------------------------------


def identical(teacher_answer: str, student_answer: str) -> bool:
    """The student said what the teacher said (up to surrounding whitespace): easy without a judge
    call under `judge.skip_identical`, and what the cache accuracy tells judged answers apart by."""
    return teacher_answer.strip() == student_answer.strip()


def agreement(llm: Iterable[Verdict], verifier_right: Mapping[str, bool | None]) -> dict[str, Any]:
    """How the referee's hard/easy calls agree with the verifier's (hard = the student is wrong).

    Only calls the referee made count: verdicts it did not give (identical answers, easy without a
    call; failed judgements) and cases the verifier cannot check are counted apart. Precision of
    "hard": of the cases the referee called hard, the share the verifier finds wrong; recall: of
    the cases the verifier finds wrong, the share the referee called hard.
    """
    tp = fp = fn = tn = 0
    identical = unchecked = 0
    for v in llm:
        if v.hard is None:
            continue
        if v.teacher_score is None:
            identical += 1
            continue
        right = verifier_right.get(v.instruction_id)
        if right is None:
            unchecked += 1
            continue
        wrong = not right
        tp += int(v.hard and wrong)
        fp += int(v.hard and not wrong)
        fn += int(not v.hard and wrong)
        tn += int(not v.hard and not wrong)
    n = tp + fp + fn + tn
    return {
        "n": n, "agree": tp + tn,
        "agreement": round((tp + tn) / n, 4) if n else None,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "identical": identical, "unchecked": unchecked,
    }


def wrong_answer(ins: Instruction, reference: Any, answer: str, thinking: list[str | None] | None,
                 k: int) -> dict[str, Any]:
    """One wrong answer as `evaluate --wrong` shows it; with the thinking the student wrote before
    it where it learns thinking (None: it wrote no block)."""
    out = {"id": ins.id, "task": ins.task, "instruction": ins.text, "input": ins.input, "reference": reference,
           "answer": answer}
    if thinking is not None:
        out["thinking"] = thinking[k]
    return out
