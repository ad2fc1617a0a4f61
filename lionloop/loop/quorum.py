"""Did the referee decide enough of a round's cases for its verdicts to mean anything?

When every judge call failed (an outage, HTTP 500 on 112 of 112), the round had no hard case and
the loop stopped as converged, exit 0; resuming then sent nothing. A referee that decides fewer
than `judge.min_decided` of the cases now stops the run with an error instead, before the stage
is marked done, so `lionloop resume` judges the round again (answered calls come from the cache).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lionloop.errors import RefereeError
from lionloop.records import Verdict
from lionloop.teacher.accounting import BUDGET_ERROR, reason_kind

_PREFIXES = ("judge failed (swapped order): ", "judge failed: ")


def failure_reasons(verdicts: Sequence[Verdict]) -> Counter[str]:
    """Unjudged verdicts by the kind of their failure (`http 500`, `parse`, ...)."""
    return Counter(reason_kind(raw) for raw in _failures(verdicts))


def _failures(verdicts: Sequence[Verdict]) -> list[str]:
    """Each unjudged verdict's failure, without the judge's prefix."""
    out = []
    for v in verdicts:
        if v.hard is None:
            raw = v.raw or ""
            for p in _PREFIXES:
                raw = raw.removeprefix(p)
            out.append(raw)
    return out


def require_decided(verdicts: Sequence[Verdict], min_decided: float, round: int, run_dir: Path) -> None:
    """Raise RefereeError when fewer than `min_decided` of the verdicts are decided."""
    if not verdicts:
        return
    decided = sum(1 for v in verdicts if v.hard is not None)
    raws = _failures(verdicts)
    failures = Counter(map(reason_kind, raws))
    # Cases the teacher budget ran out on are unjudged like an unsampled case, not an outage:
    # resuming could not judge them either (the spent budget ends the loop).
    if decided >= min_decided * (len(verdicts) - failures[BUDGET_ERROR]):
        return
    reasons = ", ".join(f"{k} x {n}" for k, n in failures.most_common(3))
    # One whole message of the commonest kind: a kind alone ('http 400') does not say what to mend.
    commonest = failures.most_common(1)[0][0]
    example = " ".join(next(r for r in raws if reason_kind(r) == commonest).split())[:300]
    raise RefereeError(
        f"round {round}: the referee decided {decided} of {len(verdicts)} cases (judge.min_decided: "
        f"{min_decided:.0%}); failures: {reasons} (one: {example}). The run stopped; once the referee answers "
        f"again, `lionloop resume {run_dir}` judges the round again (answered calls are not paid twice)"
    )
