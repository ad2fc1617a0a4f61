"""The teacher: typed requests through a backend, every call cached and accounted for."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from lionloop.stores.cache import CallCache, cache_key
from lionloop.teacher.accounting import BUDGET_ERROR, Accounting, reason_kind
from lionloop.teacher.packing import item_progress, pack, unpack
from lionloop.teacher.pricing import KindPrices
from lionloop.teacher.replies import plain_text_mismatch
from lionloop.teacher.requests import ParseError, Rejected, TeacherRequest
from lionloop.teacher.secrets import redact
from lionloop.thinking import split_reasoning

log = logging.getLogger(__name__)


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
class Spend:
    """What one `Teacher.ask` has been charged so far, counted against its `limit` and
    `money_limit`: calls paid now or by this stage before a crash (`resumed`), and their cost
    where priced."""

    paid: int = 0
    cost: float = 0.0


@dataclass
class Result:
    """One answered request: a parsed output, or the reason there is none (`raw`: the reply)."""

    request: TeacherRequest
    output: BaseModel | None = None
    error: str | None = None
    cached: bool = False
    raw: str | None = None
    rejected: bool = False  # the reply parsed but failed the request's own check
    thinking: str | None = None  # a reasoning model's thinking before the answer, split from `raw` (stripped; None: none)

    @property
    def ok(self) -> bool:
        return self.output is not None


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
        money_left: Callable[[], float | None] | None = None,
        acct: Accounting | None = None,
        max_reply_chars: int | None = None,
        rewrites_per_call: int = 1,
    ) -> None:
        self.backend = backend
        self.rewrites_per_call = rewrites_per_call
        # A longer reply is a faulty server, not an answer: 2 MB replies became training rows
        # and were carried by every later judge prompt.
        self.max_reply_chars = max_reply_chars
        self.cache = cache
        self.run_id = run_id
        self.parse_retries = parse_retries
        self._budget_left = budget or (lambda: None)
        # A cost budget's money left, and what each request kind's calls cost so far
        # (`lionloop.teacher.pricing`: chunks of calls are priced by their kinds).
        self._money_left = money_left or (lambda: None)
        self.prices = KindPrices()
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
        money_limit: float | None = None,
    ) -> list[Result]:
        """Answer every request (cache first), one result each; `limit` caps the paid calls of this
        batch and `money_limit` what they cost (calls priced by kind, as under a cost budget).
        Rewrites go `rewrites_per_call` to a call (`lionloop.teacher.packing`); an item of a read
        packed reply that fails its own check is asked again, packed with the others that did, as a
        single rewrite's rejected reply is (`parse_retries` times, each a re-ask prompt)."""
        sent, members = pack(requests, self.rewrites_per_call)
        if len(sent) == len(requests):
            return self._ask(requests, progress, limit, money_limit)
        spend = Spend()  # shared by the re-asks: the limits hold for the whole batch
        results, alone = unpack(requests, members,
                                self._ask(sent, item_progress(progress, len(requests), len(sent)), limit, money_limit,
                                          spend=spend))
        for attempt in range(1, self.parse_retries + 1):
            if not alone:
                break
            again = [requests[i] for i in alone]
            self._count_reasks(again)
            sent, members = pack(again, self.rewrites_per_call)
            answers, failed = unpack(again, members,
                                     self._ask(sent, None, limit, money_limit, first_attempt=attempt, spend=spend))
            for i, res in zip(alone, answers, strict=True):
                if res.error != BUDGET_ERROR:  # unpaid, an item keeps the reason it failed for
                    results[i] = res
            alone = [alone[j] for j in failed]
        return results

    def _ask(
        self,
        requests: Sequence[TeacherRequest],
        progress: Callable[[int], None] | None = None,
        limit: int | None = None,
        money_limit: float | None = None,
        first_attempt: int = 0,
        spend: Spend | None = None,
    ) -> list[Result]:
        spend = spend if spend is not None else Spend()
        n = len(requests)
        self._count("requests", n)
        results: list[Result | None] = [None] * n
        pending = list(range(n))
        params = self.backend.params()
        for attempt in range(first_attempt, self.parse_retries + 1):
            if not pending:
                break
            last = attempt == self.parse_retries
            misses: list[int] = []
            keys: dict[int, str] = {}
            prompts: dict[int, Any] = {}
            # One call per distinct prompt: a request repeated in one batch (a seed row given
            # twice) is answered by the first one's call, never paid again.
            sent_for: dict[str, int] = {}
            copies: dict[int, int] = {}
            for i in pending:
                prompts[i] = self.backend.prompt_for(requests[i], attempt)
                keys[i] = cache_key(self.backend.name, self.backend.model, params, prompts[i])
                if keys[i] in sent_for:
                    copies[i] = sent_for[keys[i]]
                    continue
                hit = self.cache.get(keys[i])
                if hit is None:
                    sent_for[keys[i]] = i
                    misses.append(i)
                    continue
                if self._count_hit(keys[i], hit):
                    # Paid by this stage before a crash: it counts against the batch's limits, and
                    # prices its kind, as it did then: the resumed stage buys what the first would.
                    spend.paid += 1
                    cost = (hit["usage"] or {}).get("cost")
                    if cost is not None:
                        spend.cost += cost
                        self.prices.add(requests[i].kind, cost)
                results[i] = self._finish(requests[i], hit["response"], cached=True, usage=hit["usage"])
                if progress and (results[i].ok or last):
                    progress(1)
            # Budget: refuse what would overspend, record it as a failure with its reason. The
            # calls go in chunks the budget allows, each sized after paying the one before (a cost
            # budget knows its calls' price only once some are paid).
            while misses:
                left = self._budget_left()
                money = self._money_left()
                if money_limit is not None:
                    money = money_limit - spend.cost if money is None else min(money, money_limit - spend.cost)
                afford = None if money is None else self.prices.affordable([requests[i].kind for i in misses], money)
                caps = [c for c in (left, None if limit is None else limit - spend.paid, afford) if c is not None]
                cap = max(0, min(caps)) if caps else None
                if cap == 0:
                    for i in misses:
                        results[i] = Result(requests[i], error=BUDGET_ERROR)
                        if progress:
                            progress(1)
                    break
                chunk, misses = (misses, []) if cap is None else (misses[:cap], misses[cap:])
                batch = [requests[i] for i in chunk]
                loop_t0 = time.perf_counter()
                body = 0.0
                for j, reply in self.backend.complete(batch, attempt):
                    body_t0 = time.perf_counter()
                    i = chunk[j]
                    req = requests[i]
                    if reply.error is not None:
                        results[i] = Result(req, error=redact(str(reply.error)))
                    else:
                        response = self._screen(reply)
                        usage = dict(reply.usage)
                        cost = estimate_cost(self.backend, usage)
                        if cost is not None:
                            usage["cost"] = cost
                            spend.cost += cost
                            self.prices.add(req.kind, cost)
                        self.cache.put(
                            keys[i], backend=self.backend.name, model=self.backend.model,
                            request=prompts[i], response=response, usage=usage,
                            run_id=self.run_id, round=self.round, stage=self.stage,
                        )
                        spend.paid += 1
                        self._count("paid_now")
                        with self._lock:
                            self.acct.paid_keys.add(keys[i])
                        results[i] = self._finish(req, response, cached=False, usage=usage)
                    if progress and (results[i].ok or last):
                        progress(1)
                    body += time.perf_counter() - body_t0
                with self._lock:
                    self.acct.seconds[(self.round, self.stage)] += time.perf_counter() - loop_t0 - body
            for i, j in copies.items():
                first = results[j]
                if first is not None and first.error != BUDGET_ERROR:
                    self._count("hits")
                results[i] = Result(requests[i], output=first.output, error=first.error, cached=True,
                                    raw=first.raw, thinking=first.thinking) if first is not None else None
                if progress and results[i] is not None and (results[i].ok or last):
                    progress(1)
            # Unparseable replies are re-asked (a new attempt is a new prompt and a new key).
            pending = [
                i for i in pending
                if results[i] is not None and not results[i].ok
                and (results[i].error or "").startswith("parse:")
            ]
            if pending and not last:
                self._count_reasks([requests[i] for i in pending])
        out = [r if r is not None else Result(requests[i], error="not answered") for i, r in enumerate(results)]
        with self._lock:
            kinds = self.acct.kinds[(self.round, self.stage)]
            for r in out:
                k = kinds[r.request.kind]
                k["requests"] += 1
                k["parsed" if r.ok else "rejected" if r.rejected
                  else "parse_failures" if (r.error or "").startswith("parse:") else "failures"] += 1
        for r in out:
            if r.ok:
                self._count("answered")
            else:
                self._count("failures")
                with self._lock:
                    self.acct.reasons[(self.round, self.stage)][reason_kind(r.error or "")] += 1
                log.debug("teacher %s failed: %s", r.request.kind, r.error)
        return out

    def _count_reasks(self, requests: Sequence[TeacherRequest]) -> None:
        self._count("reasks", len(requests))
        with self._lock:
            kinds = self.acct.kinds[(self.round, self.stage)]
            for req in requests:
                kinds[req.kind]["reasks"] += 1

    def _count_hit(self, key: str, hit: dict[str, Any]) -> bool:
        """A cache hit, or a reply this very stage paid before a crash (`resumed`: True). A resumed
        reply counts as paid by this process from then on, as it was by the one that paid it: asked
        again, it is a hit."""
        mine = (hit.get("run_id"), hit.get("round"), hit.get("stage")) == (self.run_id, self.round, self.stage)
        with self._lock:
            resumed = mine and key not in self.acct.paid_keys
            if resumed:
                self.acct.paid_keys.add(key)
                self.acct.resumed_cost[(self.round, self.stage)] += float((hit.get("usage") or {}).get("cost") or 0.0)
        self._count("resumed" if resumed else "hits")
        return resumed

    def _screen(self, reply: Reply) -> dict[str, Any]:
        """A paid reply as the cache keeps it: secrets masked; a reply of the wrong type or past
        `max_reply_chars` only as its reason (paid once, so cached and never paid again, but never
        parsed nor trained on)."""
        text, output = reply.text, reply.output
        if text is not None and not isinstance(text, str):
            return {"text": None, "output": None,
                    "rejected": f"type: the backend returned a {type(text).__name__} as reply text"}
        if output is not None and not isinstance(output, dict):
            return {"text": None, "output": None,
                    "rejected": f"type: the backend returned a {type(output).__name__} as output"}
        size = len(text or "") + (len(json.dumps(output, default=str)) if output is not None else 0)
        if self.max_reply_chars is not None and size > self.max_reply_chars:
            return {"text": None, "output": None, "rejected": self._oversize(size)}
        return {"text": redact(text, credentials=False) if text else text, "output": output}

    def _oversize(self, size: int) -> str:
        return f"oversize: a reply of {size:,} characters (teacher.max_reply_chars: {self.max_reply_chars:,})"

    def _finish(self, req: TeacherRequest, response: dict[str, Any], cached: bool,
                usage: dict[str, Any] | None = None) -> Result:
        if response.get("rejected"):
            return Result(req, error=str(response["rejected"]), cached=cached)
        raw = response.get("text")
        if self.max_reply_chars is not None and isinstance(raw, str) and len(raw) > self.max_reply_chars:
            return Result(req, error=self._oversize(len(raw)), cached=cached)  # from an older cache
        # A reasoning model's thinking is kept in the cache and as `raw`, never parsed or learnt from.
        thinking, text = split_reasoning(raw) if isinstance(raw, str) else (None, raw)
        if response.get("output") is None and not req.structured and (why := plain_text_mismatch(req, text)):
            return Result(req, error=f"type: {why}", cached=cached, raw=raw)
        cut = (usage or {}).get("finish_reason") == "length"
        try:
            if response.get("output") is not None:
                out = req.Output.model_validate(response["output"])
            elif not text and thinking is not None:
                raise ParseError(f"{req.kind}: the reply is thinking with no answer after it"
                                 + (" (cut off at max_tokens: a reasoning model needs room to think and answer)"
                                    if cut else ""))
            else:
                out = req.parse(text or "")
        except Exception as err:  # noqa: BLE001 - a plugin's parser may raise anything; never a crash
            if isinstance(err, ValidationError):
                msg = err.errors()[0]["msg"]
            elif isinstance(err, ParseError):
                msg = str(err)
            else:
                msg = f"{req.kind}: parser raised {type(err).__name__}: {err}"
            if cut and "max_tokens" not in msg:
                msg += " (the reply was cut off at max_tokens)"
            return Result(req, error=redact(f"parse: {msg}"), cached=cached, raw=raw,
                          rejected=isinstance(err, Rejected))
        return Result(req, output=out, cached=cached, raw=raw, thinking=(thinking or "").strip() or None)

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            getattr(self.acct, what)[(self.round, self.stage)] += n

    def stats(self, of_round: int | None = None) -> dict[tuple[int, str], dict[str, Any]]:
        """Per (round, stage) (of one round when given): paid calls, tokens and estimated cost (from
        the cache, so they survive crashes), plus this process's counts (`Accounting.figures`)."""
        return self.acct.figures(self.cache.paid(self.run_id, of_round), of_round)
