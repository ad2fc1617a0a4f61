"""Is a run running, stopped, crashed, failed or finished? Read from another process: the run's lock
(held by the one process writing it), the tail of its events.jsonl (the stage under way, its
progress, how the last process ended) and the pool's last `decide` marker (the stop reason)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lionloop.rundir import RunDir, lock_holder
from lionloop.stores.pool import Pool

TAIL_BYTES = 256 * 1024  # events of the current stage are at the end; a long run's log is not read whole
STATES = ("running", "finished", "stopped", "failed", "crashed", "new")


def tail_events(path: Path, max_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The last events of a run (a partial first line of the tail, or a torn last one, is skipped)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > max_bytes:
        lines = lines[1:]
    out = []
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            out.append(ev)
    return out


def run_state(files: RunDir, pool: Pool | None = None) -> dict[str, Any]:
    """The run's state: `status` (one of STATES), where it is or stopped (`round`, `stage`, `since`:
    when that stage started; `done` where the pool holds the stage as finished though its end was
    never logged: the process ended in between), the running process's `pid` and current
    `progress`, the `stop_reason` of a finished run, the `message` of a failed one, and the
    `resume` command."""
    holder = lock_holder(files)
    events = tail_events(files.events)
    stop = _last_stop(pool) if pool is not None else None
    out: dict[str, Any] = {"status": "new", "resume": f"lionloop resume {files.path}"}
    open_stage = _open_stage(events)
    if open_stage is not None:
        out.update(round=open_stage["round"], stage=open_stage["stage"], since=open_stage["t"])
        if pool is not None and _marked_since(pool, open_stage):
            out["done"] = True  # its work was committed; the process ended before it said so
        progress = [e for e in events if e.get("event") == "progress" and e.get("t", 0) >= open_stage["t"]
                    and (e.get("round"), e.get("stage")) == (open_stage["round"], open_stage["stage"])]
        if progress:
            p = progress[-1]
            out["progress"] = {k: p[k] for k in ("task", "done", "total", "note", "t") if k in p}
    if holder is not None:
        out.update(status="running", pid=holder.get("pid"), started=holder.get("since"))
        return out
    if stop is not None:
        out.update(status="finished", round=stop["round"], stop_reason=stop["reason"])
        for k in ("stage", "since", "progress"):
            out.pop(k, None)
        return out
    ended = next((e for e in reversed(events) if e.get("event") in ("interrupted", "error", "run_start")), None)
    if ended is None:
        out["status"] = "crashed" if events else "new"
    elif ended["event"] == "interrupted":
        out.update(status="stopped", at=ended.get("t"))
    elif ended["event"] == "error":
        out.update(status="failed", at=ended.get("t"), message=ended.get("message", ""))
    else:  # started and never said how it ended: killed, or the machine went down
        out["status"] = "crashed"
    return out


def _open_stage(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last stage that started and did not end (the one under way, or where a run stopped)."""
    for e in reversed(events):
        if e.get("event") == "stage_end":
            return None
        if e.get("event") == "stage_start":
            return e
    return None


def _marked_since(pool: Pool, stage: dict[str, Any]) -> bool:
    """Whether the stage's marker (written in the transaction with its rows) is newer than its start."""
    rows = pool.query("SELECT finished FROM stages WHERE round = ? AND stage = ?", (stage["round"], stage["stage"]))
    return bool(rows) and rows[0]["finished"] >= stage["t"]


def _last_stop(pool: Pool) -> dict[str, Any] | None:
    rows = pool.query("SELECT round, result FROM stages WHERE stage = 'decide' ORDER BY round DESC LIMIT 1")
    if not rows:
        return None
    reason = json.loads(rows[0]["result"] or "{}").get("stop_reason")
    return {"round": rows[0]["round"], "reason": reason} if reason else None
