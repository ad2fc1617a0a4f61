"""The teacher: typed requests through a backend, every call cached and accounted for."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from lionloop.stores.cache import CallCache, cache_key
from lionloop.teacher.requests import ParseError, TeacherRequest

log = logging.getLogger(__name__)

BUDGET_ERROR = "teacher budget exhausted"


@dataclass
class Reply:
    """What a backend returns for one request: raw text (LLMs) or a ready output (oracle).

    `error` is a transport failure (nothing was paid for, nothing is cached); `usage` holds
    token counts (`prompt_tokens`, `completion_tokens`) and anything else worth keeping.
    """

    text: str | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """A way to reach a teacher model. Registered by plugins through `lionloop_register`.

    Optional: `cost_per_1k = (input, output)` prices per 1k tokens, for cost estimates.
    """

    name: str
    model: str

    def params(self) -> dict[str, Any]:
        """Sampling parameters that change replies (part of the cache key)."""

    def prompt_for(self, request: TeacherRequest, attempt: int) -> Any:
        """What is sent for this request: the rendered prompt (part of the cache key)."""

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        """Answer requests, yielding (index, reply) as each finishes (any order)."""


@dataclass
class Result:
    """One answered request: a parsed output, or the reason there is none (`raw`: the reply)."""

    request: TeacherRequest
    output: BaseModel | None = None
    error: str | None = None
    cached: bool = False
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return self.output is not None


def _counter() -> defaultdict[tuple[int, str], int]:
    return defaultdict(int)


@dataclass
class Accounting:
    """In-memory counters per (round, stage); paid calls, tokens and cost are read back from the
    cache, which survives crashes.

    Every request asked ends as exactly one of `answered` or `failures`; `reasks` counts the
    re-asks after unparseable replies, `reasons` the failures by kind (parse, transport, ...).
    """

    requests: dict[tuple[int, str], int] = field(default_factory=_counter)
    answered: dict[tuple[int, str], int] = field(default_factory=_counter)
    hits: dict[tuple[int, str], int] = field(default_factory=_counter)
    failures: dict[tuple[int, str], int] = field(default_factory=_counter)
    reasks: dict[tuple[int, str], int] = field(default_factory=_counter)
    paid_now: dict[tuple[int, str], int] = field(default_factory=_counter)
    # Wall time spent waiting on the backend (not on the cache or parsing): the "teacher" share
    # of a stage in the loop-overhead benchmark.
    seconds: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    reasons: dict[tuple[int, str], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


def reason_kind(error: str) -> str:
    """The kind of a failure: the part of its message before the first colon."""
    return BUDGET_ERROR if error == BUDGET_ERROR else error.split(":", 1)[0].strip() or "unknown"


def estimate_cost(backend: Any, usage: dict[str, Any]) -> float | None:
    """Price of one call from its token counts and the backend's `cost_per_1k`; None if unknown."""
    rates = getattr(backend, "cost_per_1k", None)
    if not rates or not any(rates):
        return None
    pin, pout = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(pin, (int, float)) or not isinstance(pout, (int, float)):
        return None
    return round(pin / 1000 * rates[0] + pout / 1000 * rates[1], 8)


class Teacher:
    """Sends typed requests to a backend through the content-addressed cache.

    `ask` never raises for a failed call: the failure comes back as a Result with its reason,
    so a bad reply becomes data and never a made-up answer. Each paid reply is written to the
    cache the moment the backend yields it, so a crash never pays for it twice. A reply that
    cannot be parsed is re-asked (`parse_retries` times; a re-ask is a new prompt, so a new key).
    """

    def __init__(
        self,
        backend: Backend,
        cache: CallCache,
        run_id: str,
        *,
        parse_retries: int = 1,
        budget: Callable[[], int | None] | None = None,
        acct: Accounting | None = None,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.run_id = run_id
        self.parse_retries = parse_retries
        self._budget_left = budget or (lambda: None)
        self.round = 0
        self.stage = ""
        self.acct = acct or Accounting()  # teachers of one run share their counters
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.backend.name}:{self.backend.model}"

    def at(self, round: int, stage: str) -> Teacher:
        """Label the calls that follow with a round and stage (for accounting)."""
        self.round, self.stage = round, stage
        return self

    def ask(
        self,
        requests: Sequence[TeacherRequest],
        progress: Callable[[int], None] | None = None,
        limit: int | None = None,
    ) -> list[Result]:
        """Answer every request (cache first); `limit` caps the paid calls of this batch."""
        n = len(requests)
        self._count("requests", n)
        results: list[Result | None] = [None] * n
        pending = list(range(n))
        paid = 0
        params = self.backend.params()
        for attempt in range(self.parse_retries + 1):
            if not pending:
                break
            last = attempt == self.parse_retries
            misses: list[int] = []
            keys: dict[int, str] = {}
            prompts: dict[int, Any] = {}
            for i in pending:
                prompts[i] = self.backend.prompt_for(requests[i], attempt)
                keys[i] = cache_key(self.backend.name, self.backend.model, params, prompts[i])
                hit = self.cache.get(keys[i])
                if hit is None:
                    misses.append(i)
                    continue
                self._count("hits")
                results[i] = self._finish(requests[i], hit["response"], cached=True, usage=hit["usage"])
                if progress and (results[i].ok or last):
                    progress(1)
            # Budget: refuse what would overspend, record it as a failure with its reason.
            left = self._budget_left()
            caps = [c for c in (left, None if limit is None else limit - paid) if c is not None]
            cap = max(0, min(caps)) if caps else None
            if cap is not None and len(misses) > cap:
                for i in misses[cap:]:
                    results[i] = Result(requests[i], error=BUDGET_ERROR)
                    if progress:
                        progress(1)
                misses = misses[:cap]
            if misses:
                batch = [requests[i] for i in misses]
                loop_t0 = time.perf_counter()
                body = 0.0
                for j, reply in self.backend.complete(batch, attempt):
                    body_t0 = time.perf_counter()
                    i = misses[j]
                    req = requests[i]
                    if reply.error is not None:
                        results[i] = Result(req, error=reply.error)
                    else:
                        response = {"text": reply.text, "output": reply.output}
                        usage = dict(reply.usage)
                        cost = estimate_cost(self.backend, usage)
                        if cost is not None:
                            usage["cost"] = cost
                        self.cache.put(
                            keys[i], backend=self.backend.name, model=self.backend.model,
                            request=prompts[i], response=response, usage=usage,
                            run_id=self.run_id, round=self.round, stage=self.stage,
                        )
                        paid += 1
                        self._count("paid_now")
                        results[i] = self._finish(req, response, cached=False, usage=usage)
                    if progress and (results[i].ok or last):
                        progress(1)
                    body += time.perf_counter() - body_t0
                with self._lock:
                    self.acct.seconds[(self.round, self.stage)] += time.perf_counter() - loop_t0 - body
            # Unparseable replies are re-asked (a new attempt is a new prompt and a new key).
            pending = [
                i for i in pending
                if results[i] is not None and not results[i].ok
                and (results[i].error or "").startswith("parse:")
            ]
            if pending and not last:
                self._count("reasks", len(pending))
        out = [r if r is not None else Result(requests[i], error="not answered") for i, r in enumerate(results)]
        for r in out:
            if r.ok:
                self._count("answered")
            else:
                self._count("failures")
                with self._lock:
                    self.acct.reasons[(self.round, self.stage)][reason_kind(r.error or "")] += 1
                log.debug("teacher %s failed: %s", r.request.kind, r.error)
        return out

    def _finish(self, req: TeacherRequest, response: dict[str, Any], cached: bool,
                usage: dict[str, Any] | None = None) -> Result:
        try:
            if response.get("output") is not None:
                out = req.Output.model_validate(response["output"])
            else:
                out = req.parse(response.get("text") or "")
        except Exception as err:  # noqa: BLE001 - a plugin's parser may raise anything; never a crash
            if isinstance(err, ValidationError):
                msg = err.errors()[0]["msg"]
            elif isinstance(err, ParseError):
                msg = str(err)
            else:
                msg = f"{req.kind}: parser raised {type(err).__name__}: {err}"
            if (usage or {}).get("finish_reason") == "length":
                msg += " (the reply was cut off at max_tokens)"
            return Result(req, error=f"parse: {msg}", cached=cached, raw=response.get("text"))
        return Result(req, output=out, cached=cached, raw=response.get("text"))

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            getattr(self.acct, what)[(self.round, self.stage)] += n

    def stats(self, of_round: int | None = None) -> dict[tuple[int, str], dict[str, Any]]:
        """Per (round, stage) (of one round when given): paid calls, tokens and estimated cost (from
        the cache, so they survive crashes), plus this process's requests, answers, hits, failures
        and re-asks."""
        out: dict[tuple[int, str], dict[str, Any]] = defaultdict(dict)
        for k, v in self.cache.paid(self.run_id, of_round).items():
            out[k].update(v)
        mine = (lambda k: True) if of_round is None else (lambda k: k[0] == of_round)  # noqa: E731
        for name in ("requests", "answered", "hits", "failures", "reasks"):
            for k, v in getattr(self.acct, name).items():
                if mine(k):
                    out[k][name] = v
        for k, v in self.acct.reasons.items():
            if mine(k):
                out[k]["failure_reasons"] = dict(v)
        for k, v in self.acct.seconds.items():
            if mine(k):
                out[k]["seconds"] = round(v, 3)
        for v in out.values():
            for name in ("calls", "prompt_tokens", "completion_tokens", "requests", "answered", "hits",
                         "failures", "reasks"):
                v.setdefault(name, 0)
        return dict(out)
