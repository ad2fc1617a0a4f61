"""Read-only views of a run's pool for the CLI and reports (safe while the run writes)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from lionloop.context import POOL_FILE
from lionloop.errors import RunError
from lionloop.stores.pool import Pool


def open_pool(run_dir: Path) -> Pool:
    path = Path(run_dir) / POOL_FILE
    if not path.exists():
        raise RunError(f"{run_dir}: no {POOL_FILE} (not a lionloop run directory?)")
    return Pool(path, readonly=True)


def _grouped(pool: Pool, sql: str) -> dict[str, int]:
    return {str(r[0]): r[1] for r in pool.query(sql)}


def pool_stats(run_dir: Path) -> dict[str, Any]:
    """Counts by round, split, origin, task; verdicts; rejections by reason; teacher calls."""
    pool = open_pool(run_dir)
    try:
        rejected: dict[str, int] = defaultdict(int)
        for r in pool.query("SELECT reason FROM candidates WHERE status != 'accepted'"):
            rejected[(r["reason"] or "unknown").split(":")[0]] += 1
        teacher: dict[str, float] = defaultdict(float)
        for r in pool.rounds():
            for v in r["metrics"].get("teacher", {}).values():
                for k in ("calls", "hits", "failures", "prompt_tokens", "completion_tokens"):
                    teacher[k] += v.get(k, 0)
        return {
            "by_split": _grouped(pool, "SELECT split, COUNT(*) FROM instructions GROUP BY split"),
            "by_round_born": _grouped(pool, "SELECT round_born, COUNT(*) FROM instructions WHERE split != 'eval' GROUP BY round_born"),
            "by_origin": _grouped(pool, "SELECT origin, COUNT(*) FROM instructions WHERE split != 'eval' GROUP BY origin"),
            "by_task": _grouped(pool, "SELECT task, COUNT(*) FROM instructions WHERE split != 'eval' GROUP BY task"),
            "examples_by_kind": _grouped(pool, "SELECT kind, COUNT(*) FROM examples GROUP BY kind"),
            "verdicts": _grouped(
                pool,
                "SELECT CASE hard WHEN 1 THEN 'hard' WHEN 0 THEN 'easy' ELSE 'unjudged' END AS h,"
                " COUNT(*) FROM verdicts GROUP BY h",
            ),
            "rejections": dict(rejected),
            "teacher": {k: int(v) for k, v in teacher.items()},
        }
    finally:
        pool.close()
