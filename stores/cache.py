"""The teacher-call cache: content-addressed, shared across rounds and across runs."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from lionloop.stores.pool import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_cache(
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    usage TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    round INTEGER NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    repaid INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS llm_cache_run ON llm_cache(run_id, round, stage);
"""


def cache_key(backend: str, model: str, params: dict[str, Any], prompt: Any) -> str:
    """Hash of everything that decides a reply: backend, model, sampling params, rendered prompt."""
    blob = json.dumps(
        {"backend": backend, "model": model, "params": params, "prompt": prompt},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallCache:
    """Every paid teacher call lands here at once, so a crash never pays for it twice.

    Each row remembers the run, round and stage that paid for it: paid-call accounting is
    read back from this table and so survives crashes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = connect(self.path)
        self.conn.executescript(SCHEMA)
        cols = {r["name"] for r in self.conn.execute("PRAGMA table_info(llm_cache)")}
        if "repaid" not in cols:  # caches written before the counter existed
            self.conn.execute("ALTER TABLE llm_cache ADD COLUMN repaid INTEGER NOT NULL DEFAULT 0")
        self._lock = threading.Lock()

    def close(self) -> None:
        self.conn.close()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.conn.execute(
                "SELECT response, usage FROM llm_cache WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return {"response": json.loads(row["response"]), "usage": json.loads(row["usage"])}

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

    def paid(self, run_id: str) -> dict[tuple[int, str], dict[str, float]]:
        """Paid calls, tokens and estimated cost (usage.cost) per (round, stage) for one run."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT round, stage, COUNT(*) AS calls,"
                " SUM(COALESCE(json_extract(usage, '$.prompt_tokens'), 0)) AS prompt_tokens,"
                " SUM(COALESCE(json_extract(usage, '$.completion_tokens'), 0)) AS completion_tokens,"
                " SUM(COALESCE(json_extract(usage, '$.cost'), 0)) AS cost"
                " FROM llm_cache WHERE run_id = ? GROUP BY round, stage",
                (run_id,),
            ).fetchall()
        return {
            (r["round"], r["stage"]): {
                "calls": r["calls"],
                "prompt_tokens": r["prompt_tokens"] or 0,
                "completion_tokens": r["completion_tokens"] or 0,
                "cost": round(float(r["cost"] or 0.0), 8),
            }
            for r in rows
        }

    def repaid(self, run_id: str | None = None) -> int:
        """Calls paid again for a key already cached (0 unless something is wrong)."""
        sql = "SELECT COALESCE(SUM(repaid), 0) AS n FROM llm_cache"
        params: tuple[str, ...] = ()
        if run_id is not None:
            sql, params = sql + " WHERE run_id = ?", (run_id,)
        with self._lock:
            return int(self.conn.execute(sql, params).fetchone()["n"])

    def total_paid(self, run_id: str) -> int:
        with self._lock:
            row = self.conn.execute(
                "SELECT COUNT(*) AS n FROM llm_cache WHERE run_id = ?", (run_id,)
            ).fetchone()
        return int(row["n"])
