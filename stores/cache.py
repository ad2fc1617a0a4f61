"""The teacher-call cache: content-addressed, shared across rounds and across runs."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from lionloop.stores import migrations
from lionloop.stores.connection import connect


def cache_key(backend: str, model: str, params: dict[str, Any], prompt: Any) -> str:
    """Hash of everything that decides a reply: backend, model, sampling params, rendered prompt."""
    blob = json.dumps(
        {"backend": backend, "model": model, "params": params, "prompt": prompt},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# -- paid-call accounting, for the cache's writer and for read-only readers ---------------------

_PAID = (
    "SELECT round, stage, COUNT(*) AS calls, COALESCE(SUM(repaid), 0) AS repaid,"
    " SUM(COALESCE(json_extract(usage, '$.prompt_tokens'), 0)) AS prompt_tokens,"
    " SUM(COALESCE(json_extract(usage, '$.completion_tokens'), 0)) AS completion_tokens,"
    " SUM(COALESCE(json_extract(usage, '$.cost'), 0)) AS cost,"
    # What a discounted channel (a batch API at half price) saved against the list price.
    " SUM(COALESCE(json_extract(usage, '$.saved'), 0)) AS saved"
    " FROM llm_cache WHERE run_id = ?{where} GROUP BY round, stage"
)


def _paid_rows(conn: sqlite3.Connection, run_id: str, of_round: int | None = None) -> list[sqlite3.Row]:
    if of_round is None:
        return conn.execute(_PAID.format(where=""), (run_id,)).fetchall()
    # One round only (uses the run/round index): a stage's figures must not cost a scan of the run.
    return conn.execute(_PAID.format(where=" AND round = ?"), (run_id, of_round)).fetchall()


def paid_by_stage(conn: sqlite3.Connection, run_id: str, of_round: int | None = None) -> dict[tuple[int, str], dict[str, float]]:
    """Per (round, stage) of one run (of one round when given): paid calls, tokens and estimated
    cost (usage.cost, rounded to 8 places), and `saved` where a discounted channel saved anything.
    `conn` may be read-only (`connect(path, readonly=True)`)."""
    return {
        (r["round"], r["stage"]): {
            "calls": r["calls"],
            "prompt_tokens": r["prompt_tokens"] or 0,
            "completion_tokens": r["completion_tokens"] or 0,
            "cost": round(float(r["cost"] or 0.0), 8),
            **({"saved": round(float(r["saved"]), 8)} if r["saved"] else {}),
        }
        for r in _paid_rows(conn, run_id, of_round)
    }


def paid_totals(path: Path, run_id: str) -> dict[str, Any]:
    """A run's paid calls as the cache file at `path` records them (survives crashes), read-only:
    paid, repaid, prompt and completion tokens, cost (rounded to 6 places). Zeros when the file or
    its table does not exist yet (no call made)."""
    out: dict[str, Any] = {"paid": 0, "repaid": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0,
                           "saved": 0.0}
    if not Path(path).exists():
        return out
    conn = connect(Path(path), readonly=True)
    try:
        rows = _paid_rows(conn, run_id)
    except sqlite3.OperationalError:  # no llm_cache table: no call made yet
        return out
    finally:
        conn.close()
    for r in rows:
        out["paid"] += r["calls"]
        out["repaid"] += r["repaid"]
        out["prompt_tokens"] += int(r["prompt_tokens"] or 0)
        out["completion_tokens"] += int(r["completion_tokens"] or 0)
        out["cost"] += float(r["cost"] or 0.0)
        out["saved"] += float(r["saved"] or 0.0)
    out["cost"] = round(out["cost"], 6)
    out["saved"] = round(out["saved"], 6)
    return out


class CallCache:
    """Every paid teacher call lands here at once, so a crash never pays for it twice.

    Each row remembers the run, round and stage that paid for it: paid-call accounting is
    read back from this table and so survives crashes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = connect(self.path)
        migrations.migrate(self.conn, "cache")
        self._lock = threading.Lock()

    def close(self) -> None:
        self.conn.close()

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached reply and usage, and which run, round and stage paid for it."""
        with self._lock:
            row = self.conn.execute(
                "SELECT response, usage, run_id, round, stage FROM llm_cache WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return {"response": json.loads(row["response"]), "usage": json.loads(row["usage"]),
                "run_id": row["run_id"], "round": row["round"], "stage": row["stage"]}

    def put(
        self,
        key: str,
        *,
        backend: str,
        model: str,
        request: Any,
        response: Any,
        usage: dict[str, Any] | None = None,
        run_id: str = "",
        round: int = 0,
        stage: str = "",
    ) -> None:
        with self._lock:
            self.conn.execute(
                # A second payment for a key we hold is a bug (or two runs racing on one cache):
                # keep the first reply and count the repayment, so it can be reported.
                "INSERT INTO llm_cache(key, backend, model, request, response, usage,"
                " created, run_id, round, stage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET repaid = repaid + 1",
                (
                    key,
                    backend,
                    model,
                    json.dumps(request, ensure_ascii=False),
                    json.dumps(response, ensure_ascii=False),
                    json.dumps(usage or {}),
                    time.time(),
                    run_id,
                    round,
                    stage,
                ),
            )

    def paid(self, run_id: str, of_round: int | None = None) -> dict[tuple[int, str], dict[str, float]]:
        """Paid calls, tokens and estimated cost (usage.cost) per (round, stage) for one run."""
        with self._lock:
            return paid_by_stage(self.conn, run_id, of_round)

    def repaid(self, run_id: str | None = None) -> int:
        """Calls paid again for a key already cached (0 unless something is wrong)."""
        sql = "SELECT COALESCE(SUM(repaid), 0) AS n FROM llm_cache"
        params: tuple[str, ...] = ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id = ?", (run_id,)
        with self._lock:
            return int(self.conn.execute(sql, params).fetchone()["n"])

    def total_cost(self, run_id: str) -> float:
        """Estimated cost of one run's paid calls (usage.cost; calls without a price count 0)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT SUM(COALESCE(json_extract(usage, '$.cost'), 0)) AS cost FROM llm_cache WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        return float(row["cost"] or 0.0)

    def total_paid(self, run_id: str) -> int:
        with self._lock:
            row = self.conn.execute(
                "SELECT COUNT(*) AS n FROM llm_cache WHERE run_id = ?", (run_id,)
            ).fetchone()
        return int(row["n"])
