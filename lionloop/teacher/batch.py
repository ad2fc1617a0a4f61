"""Batch teacher backends: a stage's requests as one offline job (OpenAI Batch API, `vllm run-batch`).

A batch job is paid once it is created, answers hours later, and must never be created twice for
the same requests. So, for each `complete()`:

1. every request becomes one line of OpenAI's batch JSONL (`custom_id` = a hash of its body, so the
   same request has the same id in every process);
2. the ledger (tables `teacher_batches` / `teacher_batch_requests` in the run's pool) is asked for
   jobs that already hold some of these ids and were not collected yet: a resumed run waits on
   those instead of submitting them again;
3. the rest go out as new jobs: the job's tag and its ids are written to the ledger *before* it is
   created, its provider id right after; a crash between the two is repaired by the runner's
   `find(tag)` (the tag travels with the job: metadata of an API batch, the command line of a
   `vllm run-batch` process);
4. the jobs are polled until they end; each reply is yielded (and so cached by the teacher) as
   its job's results are read; then the job is marked collected.

A `BatchRunner` does the transport (upload, create, poll, read results); `BatchBackend` is the
`ChatBackend` that does the bookkeeping above.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lionloop.config import TeacherConfig
from lionloop.errors import LionloopError
from lionloop.rundir import RunDir
from lionloop.stores.connection import connect
from lionloop.teacher.chat import ChatBackend
from lionloop.teacher.client import Reply
from lionloop.teacher.requests import TeacherRequest

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
OPEN = ("submitting", "submitted")  # jobs whose results have not been collected yet
DONE = ("completed", "failed", "expired", "cancelled")  # provider states after which nothing changes


class BatchError(LionloopError, RuntimeError):
    """A batch job could not be submitted, polled or read; the message says why."""


class BatchGone(BatchError):
    """The provider does not know the job (any more): its requests fail and go out again later."""


@dataclass
class JobState:
    """What the provider says about one job."""

    status: str  # validating | in_progress | finalizing | completed | failed | expired | cancelled ...
    done: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # total / completed / failed
    detail: dict[str, Any] = field(default_factory=dict)  # provider specifics (output file ids, ...)


class BatchRunner(Protocol):
    """The transport of a batch backend."""

    name: str
    poll_s: float

    def submit(self, tag: str, lines: list[dict[str, Any]]) -> str:
        """Upload `lines` and create the job, tagged `tag`; returns the provider's job id."""

    def find(self, tag: str) -> str | None:
        """The id of a job created with this tag, if the provider has one (a crash lost its id)."""

    def poll(self, batch_id: str) -> JobState:
        """The job's state."""

    def results(self, batch_id: str, state: JobState) -> Iterator[dict[str, Any]]:
        """The job's output and error lines (OpenAI batch output format), once it is done."""


# -- the ledger -------------------------------------------------------------------------------------


class BatchLedger:
    """The jobs a run has created and what they hold, in the run's pool file or in `path` (an
    evaluation's own file); its own connection: a backend is built beside the loop's."""

    def __init__(self, run_dir: Path, path: Path | None = None) -> None:
        from lionloop.stores import migrations

        self.run_dir = RunDir(run_dir)
        self.path = Path(path) if path is not None else self.run_dir.pool
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = connect(self.path)
        migrations.migrate(self.conn, "pool" if self.path == self.run_dir.pool else "batches")

    def close(self) -> None:
        self.conn.close()

    def open_jobs(self, custom_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Jobs not collected yet holding any of these ids: tag -> {batch_id, status, ids (of these)}."""
        out: dict[str, dict[str, Any]] = {}
        ids = list(custom_ids)
        for k in range(0, len(ids), 900):
            part = ids[k : k + 900]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                "SELECT r.custom_id, b.tag, b.batch_id, b.status FROM teacher_batch_requests r"
                " JOIN teacher_batches b ON b.tag = r.tag"
                f" WHERE r.custom_id IN ({marks}) AND b.status IN ('submitting', 'submitted')"
                " ORDER BY b.created", part,
            ).fetchall()
            for cid, tag, batch_id, status in rows:
                job = out.setdefault(tag, {"batch_id": batch_id, "status": status, "ids": []})
                job["ids"].append(cid)
        # An id held by two open jobs (cannot happen through this class) waits on the oldest only.
        seen: set[str] = set()
        for job in out.values():
            job["ids"] = [c for c in job["ids"] if not (c in seen or seen.add(c))]
        return {t: j for t, j in out.items() if j["ids"]}

    def begin(self, tag: str, runner: str, model: str, custom_ids: Sequence[str]) -> None:
        """Record a job about to be created (before the provider hears of it)."""
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "INSERT INTO teacher_batches(tag, runner, model, requests, batch_id, status, created, updated)"
                " VALUES (?, ?, ?, ?, NULL, 'submitting', ?, ?)", (tag, runner, model, len(custom_ids), now, now))
            self.conn.executemany("INSERT OR IGNORE INTO teacher_batch_requests(custom_id, tag) VALUES (?, ?)",
                                  [(c, tag) for c in custom_ids])
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def update(self, tag: str, status: str, batch_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
        sets, params = ["status = ?", "updated = ?"], [status, time.time()]
        if batch_id is not None:
            sets.append("batch_id = ?")
            params.append(batch_id)
        if detail is not None:
            sets.append("detail = ?")
            params.append(json.dumps(detail))
        self.conn.execute(f"UPDATE teacher_batches SET {', '.join(sets)} WHERE tag = ?", (*params, tag))

    def files(self, tag: str) -> dict[str, Path]:
        """Where a job run on this machine (`vllm run-batch`) keeps its input, output and log."""
        d = self.run_dir.batches
        d.mkdir(parents=True, exist_ok=True)
        return {"input": d / f"{tag}.input.jsonl", "output": d / f"{tag}.output.jsonl",
                "partial": d / f"{tag}.output.jsonl.part", "log": d / f"{tag}.log"}

    def jobs(self) -> list[dict[str, Any]]:
        self.conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in self.conn.execute("SELECT * FROM teacher_batches ORDER BY created")]
        finally:
            self.conn.row_factory = None


# -- the backend ------------------------------------------------------------------------------------


def custom_id(body: dict[str, Any]) -> str:
    """The id of a request line: its body's hash (the same request has the same id after a crash)."""
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return "ll-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]


def reply_of(line: dict[str, Any]) -> Reply:
    """One output (or error) line of a batch as a Reply: the chat completion's text and usage, or
    the reason there is none."""
    resp = line.get("response") or {}
    err = line.get("error")
    status = resp.get("status_code")
    body = resp.get("body") if isinstance(resp, dict) else None
    if err or status != 200 or not isinstance(body, dict):
        if isinstance(err, dict):
            why = f"{err.get('code') or 'error'}: {err.get('message') or ''}".strip()
        elif isinstance(body, dict) and isinstance(body.get("error"), dict):
            why = f"http {status}: {body['error'].get('message', '')}"
        else:
            why = f"http {status}" if status else str(err or "no response")
        return Reply(error=f"batch: {why}"[:300])
    choices = body.get("choices") or []
    if not choices:
        return Reply(error="batch: malformed: response has no choices")
    choice = choices[0] or {}
    text = (choice.get("message") or {}).get("content")
    usage = {k: v for k, v in (body.get("usage") or {}).items() if k in ("prompt_tokens", "completion_tokens")
             and isinstance(v, int)}
    usage["finish_reason"] = choice.get("finish_reason")
    return Reply(text=text if isinstance(text, str) else "", usage=usage)


class BatchBackend(ChatBackend):
    """A `ChatBackend` whose `complete()` goes through batch jobs (see the module docstring).

    `runner` does the transport; `ledger` is the run's record of jobs; `discount` is the share of
    the list price (`cost_per_1k_*`) a batch costs: OpenAI's Batch API is half price, and what it
    saves is stored with each reply (`usage.saved`) for `lionloop status`.
    """

    name = "batch"

    def __init__(self, cfg: TeacherConfig, env: Any, runner: BatchRunner, ledger: BatchLedger,
                 discount: float = 1.0, max_requests: int = 50_000,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(cfg, env)
        self.runner = runner
        self.ledger = ledger
        self.discount = discount
        self.max_requests = max_requests
        self.list_price = (cfg.cost_per_1k_input, cfg.cost_per_1k_output)
        self.cost_per_1k = (self.list_price[0] * discount, self.list_price[1] * discount)
        self._sleep = sleep
        self.submitted: list[str] = []  # tags this process created (tests, logs)

    def extra_params(self) -> dict[str, Any]:
        # `options` configure the runner, not the requests: they stay out of the bodies and the key.
        return {}

    def body(self, prompt: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": prompt["messages"],
                                "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
        if prompt.get("response_format") is not None:
            body["response_format"] = prompt["response_format"]
        return body

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        lines: dict[str, dict[str, Any]] = {}
        where: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            body = self.body(self.prompt_for(req, attempt))
            cid = custom_id(body)
            lines.setdefault(cid, {"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body})
            where.setdefault(cid, []).append(i)
        jobs = self.ledger.open_jobs(list(lines))
        for tag, job in jobs.items():
            log.info("batch %s (%s): waiting on a job submitted before (%d of these requests)",
                     tag, job["batch_id"] or "id not recorded", len(job["ids"]))
        covered = {c for job in jobs.values() for c in job["ids"]}
        fresh = [c for c in lines if c not in covered]
        for k in range(0, len(fresh), self.max_requests):
            tag = f"lionloop-{uuid.uuid4().hex[:16]}"
            ids = fresh[k : k + self.max_requests]
            self.ledger.begin(tag, self.runner.name, self.model, ids)
            jobs[tag] = {"batch_id": None, "status": "submitting", "ids": ids}
        failed: dict[str, str] = {}
        for tag, job in jobs.items():
            if job["batch_id"] is None:
                try:
                    job["batch_id"] = self._create(tag, [lines[c] for c in job["ids"]])
                except BatchError as err:
                    self.ledger.update(tag, "failed", detail={"error": str(err)})
                    failed.update({c: f"batch: {err}" for c in job["ids"]})
        for cid, why in failed.items():
            for i in where[cid]:
                yield i, Reply(error=why)
        waiting = {t: j for t, j in jobs.items() if j["batch_id"] is not None}
        yield from self._collect(waiting, where)

    def _create(self, tag: str, lines: list[dict[str, Any]]) -> str:
        """The job's provider id: found (created before a crash lost its id) or created now."""
        batch_id = self.runner.find(tag)
        if batch_id is None:
            batch_id = self.runner.submit(tag, lines)
            self.submitted.append(tag)
            log.info("batch %s: submitted %d requests as %s", tag, len(lines), batch_id)
        else:
            log.info("batch %s: found job %s created before a crash", tag, batch_id)
        self.ledger.update(tag, "submitted", batch_id=batch_id)
        return batch_id

    def _collect(self, waiting: dict[str, dict[str, Any]], where: dict[str, list[int]]) -> Iterator[tuple[int, Reply]]:
        last_log = 0.0
        while waiting:
            for tag, job in list(waiting.items()):
                try:
                    state = self.runner.poll(job["batch_id"])
                except BatchGone as err:
                    state = JobState("failed", done=True, detail={"error": str(err)})
                except BatchError as err:
                    log.warning("batch %s: poll failed (%s); trying again", tag, err)
                    continue
                if not state.done:
                    if time.monotonic() - last_log > 60:
                        log.info("batch %s: %s %s", tag, state.status, state.counts)
                        last_log = time.monotonic()
                    continue
                self.ledger.update(tag, "submitted", detail={"state": state.status, **state.detail})
                answered: set[str] = set()
                mine = set(job["ids"])
                for line in self._results(tag, job["batch_id"], state):
                    cid = line.get("custom_id")
                    if cid not in where or cid not in mine or cid in answered:
                        continue  # not asked now (answered and cached before a crash), or a repeat
                    answered.add(cid)
                    reply = reply_of(line)
                    if reply.error is None:
                        reply.usage["saved"] = self._saving(reply.usage)
                    for i in where[cid]:
                        yield i, reply
                for cid in job["ids"]:
                    if cid not in answered:
                        for i in where[cid]:
                            yield i, Reply(error=f"batch: job {state.status} without a result for this request")
                # Collected only once every reply was handed over (and so cached by the teacher).
                self.ledger.update(tag, "collected" if state.status == "completed" else state.status)
                del waiting[tag]
            if waiting:
                self._sleep(self.runner.poll_s)

    def _results(self, tag: str, batch_id: str, state: JobState) -> Iterator[dict[str, Any]]:
        if "error" in state.detail and state.status == "failed":
            log.warning("batch %s: %s", tag, state.detail["error"])
            return
        try:
            yield from self.runner.results(batch_id, state)
        except BatchError as err:  # unreadable: the requests without a reply go out again later
            log.warning("batch %s: results unreadable (%s)", tag, err)
            state.status = "failed"

    def _saving(self, usage: dict[str, Any]) -> float:
        pin, pout = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        full = pin / 1000 * self.list_price[0] + pout / 1000 * self.list_price[1]
        return round(full * (1 - self.discount), 8)

    def close(self) -> None:
        self.ledger.close()
