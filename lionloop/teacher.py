"""The teacher: typed requests through a backend, every call cached and accounted for."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from lionloop.requests import ParseError, TeacherRequest
from lionloop.stores.cache import CallCache, cache_key

log = logging.getLogger(__name__)


@dataclass
class Reply:
    """What a backend returns for one request: raw text (LLMs) or a ready output (oracle)."""

    text: str | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """A way to reach a teacher model. Registered by plugins through `lionloop_register`."""

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
    """One answered request: a parsed output, or the reason there is none."""

    request: TeacherRequest
    output: BaseModel | None = None
    error: str | None = None
    cached: bool = False
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return self.output is not None


@dataclass
class Accounting:
    """In-memory counters; paid calls are read back from the cache, which survives crashes."""

    hits: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    failures: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    paid_now: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))


class Teacher:
    """Sends typed requests to a backend through the content-addressed cache.

    `ask` never raises for a failed call: the failure comes back as a Result with its reason,
    so a bad reply becomes data and never a made-up answer.
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
        results: list[Result | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        paid = 0
        for attempt in range(self.parse_retries + 1):
            if not pending:
                break
            misses: list[int] = []
            keys: dict[int, str] = {}
            for i in pending:
                req = requests[i]
                key = cache_key(
                    self.backend.name, self.backend.model, self.backend.params(),
                    self.backend.prompt_for(req, attempt),
                )
                keys[i] = key
                hit = self.cache.get(key)
                if hit is None:
                    misses.append(i)
                    continue
                self._count("hits")
                results[i] = self._finish(req, hit["response"], cached=True)
                if progress and (results[i].ok or attempt == self.parse_retries):
                    progress(1)
            # Budget: refuse what would overspend, record it as a failure with its reason.
            left = self._budget_left()
            caps = [c for c in (left, None if limit is None else limit - paid) if c is not None]
            cap = max(0, min(caps)) if caps else None
            if cap is not None and len(misses) > cap:
                for i in misses[cap:]:
                    results[i] = Result(requests[i], error="teacher budget exhausted")
                    self._count("failures")
                    if progress:
                        progress(1)
                misses = misses[:cap]
            if misses:
                batch = [requests[i] for i in misses]
                for j, reply in self.backend.complete(batch, attempt):
                    i = misses[j]
                    req = requests[i]
                    if reply.error is not None:
                        results[i] = Result(req, error=reply.error)
                        self._count("failures")
                    else:
                        response = {"text": reply.text, "output": reply.output}
                        self.cache.put(
                            keys[i], backend=self.backend.name, model=self.backend.model,
                            request=self.backend.prompt_for(req, attempt), response=response,
                            usage=reply.usage, run_id=self.run_id, round=self.round, stage=self.stage,
                        )
                        paid += 1
                        self._count("paid_now")
                        results[i] = self._finish(req, response, cached=False)
                    if progress and (results[i].ok or attempt == self.parse_retries):
                        progress(1)
            # Unparseable replies are re-asked (a new attempt is a new prompt and a new key).
            pending = [
                i for i in pending
                if results[i] is not None and not results[i].ok
                and (results[i].error or "").startswith("parse:")
            ]
        for r in results:
            if r is not None and not r.ok:
                log.debug("teacher %s failed: %s", r.request.kind, r.error)
        return [r if r is not None else Result(requests[i], error="not answered") for i, r in enumerate(results)]

    def _finish(self, req: TeacherRequest, response: dict[str, Any], cached: bool) -> Result:
        try:
            if response.get("output") is not None:
                out = req.Output.model_validate(response["output"])
            else:
                out = req.parse(response.get("text") or "")
        except (ParseError, ValidationError) as err:
            self._count("failures")
            msg = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
            return Result(req, error=f"parse: {msg}", cached=cached, raw=response.get("text"))
        return Result(req, output=out, cached=cached, raw=response.get("text"))

    def _count(self, what: str) -> None:
        with self._lock:
            getattr(self.acct, what)[(self.round, self.stage)] += 1

    def stats(self) -> dict[tuple[int, str], dict[str, float]]:
        """Per (round, stage): paid calls and tokens (from the cache), hits and failures."""
        out: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
        for k, v in self.cache.paid(self.run_id).items():
            out[k].update(v)
        for k, v in self.acct.hits.items():
            out[k]["hits"] = v
        for k, v in self.acct.failures.items():
            out[k]["failures"] = v
        return dict(out)
