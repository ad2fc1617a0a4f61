"""What a run tells the people watching it: the reporter interface (the CLI plugs in a Rich one),
and the run's own record of its progress in events.jsonl, which `lionloop status` reads from
another process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# How often the current task's progress is written to events.jsonl (seconds): often enough for
# `lionloop status` to look live, rare enough to keep the log small.
PROGRESS_EVERY_S = 2.0

Advance = Callable[..., None]  # advance(n, note=None): n more done; `note` a short status (e.g. the loss)


class Reporter:
    """Progress and round summaries; the CLI swaps in a Rich one. This one only logs."""

    def stage_start(self, round: int, stage: str) -> None:
        log.info("round %d: %s", round, stage)

    def stage_end(self, round: int, stage: str, seconds: float) -> None:
        log.info("round %d: %s done in %.1fs", round, stage, seconds)

    def task(self, description: str, total: int | None) -> Advance:
        """Start a progress bar; the returned `advance(n, note=None)` moves it (and shows `note`)."""
        return lambda n, note=None: None

    def task_done(self) -> None:
        """Close the last progress bar."""

    def notice(self, message: str) -> None:
        """Something the user must see (rows the teacher could not answer, ...): one line."""
        log.warning("%s", message)

    def round_end(self, summary: dict[str, Any]) -> None:
        log.info("round %s finished: %s", summary.get("round"), summary.get("eval", {}))


class Watched(Reporter):
    """Forwards everything to `inner` and logs the current task's progress and every notice to
    events.jsonl through `event(**fields)`, with the round and stage `where()` names."""

    def __init__(self, inner: Reporter, event: Callable[..., None], where: Callable[[], dict[str, Any]],
                 every_s: float = PROGRESS_EVERY_S) -> None:
        self.inner = inner
        self._event = event
        self._where = where
        self.every_s = every_s
        self._last: dict[str, Any] | None = None  # the current task's progress, last written or not

    def stage_start(self, round: int, stage: str) -> None:
        self.inner.stage_start(round, stage)

    def stage_end(self, round: int, stage: str, seconds: float) -> None:
        self.inner.stage_end(round, stage, seconds)

    def task(self, description: str, total: int | None) -> Advance:
        self._flush()
        inner = self.inner.task(description, total)
        state = {"task": description, "done": 0, "total": total, "note": None, "written": 0, "at": time.monotonic()}
        self._last = state
        self._write(state)

        def advance(n: int, note: str | None = None) -> None:
            inner(n, note)
            state["done"] += n
            if note is not None:
                state["note"] = note
            if time.monotonic() - state["at"] >= self.every_s:
                self._write(state)

        return advance

    def task_done(self) -> None:
        self._flush()
        self.inner.task_done()

    def notice(self, message: str) -> None:
        self._event(event="notice", message=message, **self._where())
        self.inner.notice(message)

    def round_end(self, summary: dict[str, Any]) -> None:
        self.inner.round_end(summary)

    def _write(self, state: dict[str, Any]) -> None:
        state["at"], state["written"] = time.monotonic(), state["done"]
        fields = {k: state[k] for k in ("task", "done", "total")}
        if state["note"]:
            fields["note"] = state["note"]
        self._event(event="progress", **fields, **self._where())

    def _flush(self) -> None:
        """The last figures of the task that ends, if newer than what was written."""
        if self._last is not None and self._last["done"] != self._last["written"]:
            self._write(self._last)
        self._last = None
