"""Is a run's SQLite file sound? Asked before a resumed run writes anything.

A corrupt `pool.sqlite` used to be found only after four stages had run on it (then a
traceback), and an emptied one ended in `ValueError: no training rows`. SQLite's own
integrity check finds damage in the file; the tables a lionloop writer creates first tell an
emptied or foreign file from a pool. Losing committed writes (a truncated WAL) leaves a sound but
older file: `lionloop.loop.runner` compares the pool's stage markers with the graph's checkpoint
for that.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lionloop.errors import RunError

# Tables the first migration of each schema creates (lionloop.stores.migrations).
REQUIRED = {"pool": ("instructions", "stages", "rounds", "examples"), "cache": ("llm_cache",)}


def check_store(path: Path, schemas: tuple[str, ...], what: str) -> None:
    """Raise RunError (one line, naming the file) unless `path` is a sound SQLite file holding
    the tables of `schemas`. Writes nothing of its own (SQLite may fold a WAL into the file)."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: the run's {what} is missing; restore it from a backup (nothing was written)")
    if path.stat().st_size == 0:
        raise RunError(f"{path}: the run's {what} is empty; restore it from a backup (nothing was written)")
    try:
        conn = sqlite3.connect(path, timeout=30)
    except sqlite3.Error as err:
        raise RunError(f"{path}: cannot open the run's {what} ({err})") from None
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        problems = [r[0] for r in rows if r[0] != "ok"]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:
        raise RunError(
            f"{path}: the run's {what} is damaged ({err}); restore it from a backup (nothing was written)"
        ) from None
    finally:
        conn.close()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RunError(
            f"{path}: the run's {what} failed SQLite's integrity check: {problems[0]}{more}; "
            "restore it from a backup (nothing was written)"
        )
    missing = [t for s in schemas for t in REQUIRED[s] if t not in tables]
    if missing:
        raise RunError(
            f"{path}: the run's {what} lacks its tables ({', '.join(missing)}): emptied or replaced; "
            "restore it from a backup (nothing was written)"
        )
