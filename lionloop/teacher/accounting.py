"""What a teacher's calls are counted as: in-memory counters per (round, stage), beside the paid
calls, tokens and cost the cache holds (which survive crashes)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

BUDGET_ERROR = "teacher budget exhausted"


def _counter() -> defaultdict[tuple[int, str], int]:
    return defaultdict(int)


@dataclass
class Accounting:
    """In-memory counters per (round, stage); paid calls, tokens and cost are read back from the
    cache, which survives crashes.

    Every request asked ends as exactly one of `answered` or `failures`; `reasks` counts the
    re-asks after unparseable replies, `reasons` the failures by kind (parse, transport, ...).
    `hits` are replies the cache held before the stage started (another stage, round or run);
    `resumed` the ones this very stage paid in an earlier, interrupted process: so a stage's
    figures after a crash and resume read as they would have without the crash.
    """

    requests: dict[tuple[int, str], int] = field(default_factory=_counter)
    answered: dict[tuple[int, str], int] = field(default_factory=_counter)
    hits: dict[tuple[int, str], int] = field(default_factory=_counter)
    failures: dict[tuple[int, str], int] = field(default_factory=_counter)
    reasks: dict[tuple[int, str], int] = field(default_factory=_counter)
    paid_now: dict[tuple[int, str], int] = field(default_factory=_counter)
    resumed: dict[tuple[int, str], int] = field(default_factory=_counter)
    resumed_cost: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    paid_keys: set[str] = field(default_factory=set)  # cache keys this process paid
    # Wall time spent waiting on the backend (not on the cache or parsing): the "teacher" share
    # of a stage in the loop-overhead benchmark.
    seconds: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    reasons: dict[tuple[int, str], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # Per request type (judge, rewrite, answer, ...): requests, parsed, rejected (read, but failed
    # the request's check), parse_failures (a reply that could not be read, after its re-asks),
    # other failures (transport, budget), re-asks.
    kinds: dict[tuple[int, str], dict[str, Counter[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Counter)))

    def figures(self, paid: dict[tuple[int, str], dict[str, Any]], of_round: int | None = None
                ) -> dict[tuple[int, str], dict[str, Any]]:
        """Per (round, stage) (of one round when given): `paid` (calls, tokens and cost, read from
        the cache) with this process's requests, answers, hits, failures, re-asks, failure reasons,
        seconds and figures by request kind; every count present (0 where none)."""
        out: dict[tuple[int, str], dict[str, Any]] = defaultdict(dict)
        for k, v in paid.items():
            out[k].update(v)
        mine = (lambda k: True) if of_round is None else (lambda k: k[0] == of_round)  # noqa: E731
        for name in ("requests", "answered", "hits", "resumed", "failures", "reasks"):
            for k, v in getattr(self, name).items():
                if mine(k):
                    out[k][name] = v
        for k, v in self.reasons.items():
            if mine(k):
                out[k]["failure_reasons"] = dict(v)
        for k, v in self.seconds.items():
            if mine(k):
                out[k]["seconds"] = round(v, 3)
        for k, by_kind in self.kinds.items():
            if mine(k):
                out[k]["kinds"] = {kind: dict(c) for kind, c in by_kind.items()}
        for v in out.values():
            for name in ("calls", "prompt_tokens", "completion_tokens", "requests", "answered", "hits",
                         "resumed", "failures", "reasks"):
                v.setdefault(name, 0)
        return dict(out)


def reason_kind(error: str) -> str:
    """The kind of a failure: the part of its message before the first colon."""
    return BUDGET_ERROR if error == BUDGET_ERROR else error.split(":", 1)[0].strip() or "unknown"
