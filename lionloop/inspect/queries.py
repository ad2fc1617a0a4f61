"""The read queries the views share: round and id checks, each instruction's latest verdict,
rows as plain dicts (used inside a `snapshot`)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from lionloop.inspect.snapshot import PoolQueryError
from lionloop.stores.pool import Pool

# The instruction columns a view shows of a node (lineage, diff).
NODE_COLS = "id, text, input, task, origin, parent_id, round_born, split"


def as_hard(v: Any) -> bool | None:
    """A verdict's `hard` column as True / False / None (not judged)."""
    return None if v is None else bool(v)


def rounds_known(pool: Pool) -> list[int]:
    return [r["round"] for r in pool.query("SELECT round FROM rounds ORDER BY round")]


def check_round(pool: Pool, round: int, what: str = "round") -> int:
    known = rounds_known(pool)
    if round not in known:
        span = f"rounds {known[0]}..{known[-1]}" if known else "no rounds yet"
        raise PoolQueryError(f"{what} {round} is not in this run ({span})")
    return round


def resolve_id(pool: Pool, prefix: str) -> str:
    """The full id of the instruction whose id is or starts with `prefix` (must be unambiguous)."""
    prefix = prefix.strip().lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise PoolQueryError(f"{prefix!r} is not an instruction id (hex digits expected)")
    rows = pool.query("SELECT id FROM instructions WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                      (prefix, prefix + "g"))
    if not rows:
        raise PoolQueryError(f"no instruction with id {prefix!r}")
    exact = [r["id"] for r in rows if r["id"] == prefix]
    if exact:
        return exact[0]
    if len(rows) > 1:
        shown = ", ".join(r["id"] for r in rows[:5])
        raise PoolQueryError(f"id prefix {prefix!r} is ambiguous: {shown}{', ...' if len(rows) > 5 else ''}")
    return rows[0]["id"]


# The latest verdict of each instruction (at or before a round): the pool's current hard/easy call.
LATEST = """
SELECT v.instruction_id, v.round AS verdict_round, v.teacher_score, v.student_score, v.diff, v.hard
FROM verdicts v JOIN (
    SELECT instruction_id, MAX(round) AS r FROM verdicts WHERE round <= ? GROUP BY instruction_id
) m ON m.instruction_id = v.instruction_id AND m.r = v.round
"""
COUNTS = """
SELECT instruction_id, COUNT(*) AS times_judged, SUM(hard = 1) AS times_hard
FROM verdicts WHERE round <= ? GROUP BY instruction_id
"""
ALL_ROUNDS = 1 << 30


def latest_verdicts(pool: Pool, at: int | None = None) -> dict[str, dict[str, Any]]:
    """Each judged instruction's latest verdict at or before round `at` (default: the last)."""
    rows = pool.query(LATEST, (ALL_ROUNDS if at is None else at,))
    return {r["instruction_id"]: dict(r) for r in rows}


def verdict_counts(pool: Pool, at: int | None = None) -> dict[str, dict[str, Any]]:
    """Per judged instruction: rounds it was judged in and judged hard in (up to round `at`)."""
    rows = pool.query(COUNTS, (ALL_ROUNDS if at is None else at,))
    return {r["instruction_id"]: dict(r) for r in rows}


def as_row(r: sqlite3.Row) -> dict[str, Any]:
    """A row as a dict: `meta` parsed, `hard` as True / False / None."""
    d = dict(r)
    if "meta" in d and isinstance(d["meta"], str):
        d["meta"] = json.loads(d["meta"] or "{}")
    if "hard" in d:
        d["hard"] = as_hard(d["hard"])
    return d
