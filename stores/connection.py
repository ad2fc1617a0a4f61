"""One way to open the project's SQLite files (the pool, the call cache, the batch store): WAL mode,
migrated on write, read as current when read-only."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from lionloop.stores import migrations


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """Open a SQLite file in WAL mode (readers never block the writer).

    A read-only connection reads a file an older lionloop wrote as if it were migrated
    (`migrations.read_as_current`); a writer migrates it (`Pool`, `CallCache`).
    """
    if readonly:
        # A URI, so its path is quoted: a run folder named `loop%60-0` or `a#b` is a file name, not
        # an escape or a fragment.
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        migrations.read_as_current(conn)
    else:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        _wal(conn)
        # NORMAL is durable across process crashes in WAL mode (only an OS crash can lose the tail).
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _wal(conn: sqlite3.Connection, wait: float = 30.0) -> None:
    """Switch the file to WAL mode, waiting while another connection holds it.

    Changing the journal mode takes an exclusive lock, and SQLite answers "database is locked"
    at once (without its busy handler) while a second connection opens a fresh file: retry.
    """
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
