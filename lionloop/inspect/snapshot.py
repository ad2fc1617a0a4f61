"""Reading a run read-only: one consistent snapshot of its pool, safe while the loop writes.

Every view opens the pool read-only and reads inside one transaction, so it sees one commit even
while the loop commits rounds (SQLite WAL: readers never block the writer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lionloop.errors import LionloopError, RunError
from lionloop.rundir import RunDir
from lionloop.stores.pool import Pool


class PoolQueryError(LionloopError, LookupError):
    """A pool query names an instruction, round or option the run does not have."""


def open_pool(run_dir: Path) -> Pool:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    path = RunDir(run_dir).pool
    if not path.exists():
        raise RunError(f"{run_dir}: no {path.name} (not a lionloop run directory?)")
    try:
        return Pool(path, readonly=True)
    except sqlite3.Error as err:
        raise RunError(f"{path}: cannot open read-only: {err}") from err


@contextmanager
def snapshot(run_dir: Path) -> Iterator[Pool]:
    """The pool, read-only, inside one read transaction: all queries see the same commit."""
    pool = open_pool(run_dir)
    try:
        pool.conn.execute("BEGIN")
        yield pool
    except sqlite3.DatabaseError as err:
        raise RunError(f"{pool.path}: {err}") from err
    finally:
        try:
            pool.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        pool.close()
