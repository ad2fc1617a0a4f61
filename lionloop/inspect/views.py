"""Read-only views of a run's pool for `lionloop pool stats|list|show` (each inside one snapshot:
safe while the run writes). Lineage, search and diff have modules of their own; the export's rows
are built in `lionloop.inspect.export`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lionloop.inspect.queries import ALL_ROUNDS, COUNTS, LATEST, as_row, check_round, resolve_id
from lionloop.inspect.snapshot import PoolQueryError, snapshot
from lionloop.inspect.status import build, stats_view
from lionloop.records import SPLITS
from lionloop.rundir import RunDir

SORTS = ("gap", "round", "id")


# -- stats --------------------------------------------------------------------------------------


def pool_stats(run_dir: Path) -> dict[str, Any]:
    """Counts by round, split, origin, task; hard/easy per round; rejections; teacher calls."""
    with snapshot(run_dir) as pool:
        return stats_view(build(pool, RunDir(run_dir)))


# -- list ---------------------------------------------------------------------------------------


def list_instructions(
    run_dir: Path,
    *,
    round: int | None = None,
    origin: str | None = None,
    split: str | None = None,
    hard: bool | None = None,
    task: str | None = None,
    judged: int | None = None,
    sort: str = "gap",
    limit: int | None = 50,
) -> dict[str, Any]:
    """Instructions with their latest verdict (as of round `judged`, default: the last), filtered.

    `round` filters on the round an instruction was born in; `hard` on its latest verdict
    (instructions never judged match neither --hard nor --easy).
    """
    if sort not in SORTS:
        raise PoolQueryError(f"unknown sort {sort!r} (one of: {', '.join(SORTS)})")
    if limit is not None and limit < 0:
        raise PoolQueryError(f"--limit must be >= 0, got {limit}")
    if split is not None and split not in SPLITS:
        raise PoolQueryError(f"unknown split {split!r} (one of: {', '.join(SPLITS)})")
    with snapshot(run_dir) as pool:
        if round is not None:
            check_round(pool, round)
        if judged is not None:
            check_round(pool, judged, "judged round")
        where, params = [], []
        for col, val in (("i.round_born", round), ("i.origin", origin), ("i.split", split), ("i.task", task)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if hard is not None:
            where.append("v.hard = ?")
            params.append(int(hard))
        order = {
            "gap": "v.diff IS NULL, v.diff DESC, v.hard IS NULL, v.hard DESC, i.round_born, i.id",
            "round": "i.round_born, i.id",
            "id": "i.id",
        }[sort]
        sql = (
            "SELECT i.id, i.text, i.input, i.task, i.origin, i.parent_id, i.round_born, i.split,"
            " v.verdict_round, v.teacher_score, v.student_score, v.diff, v.hard,"
            " COALESCE(c.times_judged, 0) AS times_judged, COALESCE(c.times_hard, 0) AS times_hard"
            f" FROM instructions i LEFT JOIN ({LATEST}) v ON v.instruction_id = i.id"
            f" LEFT JOIN ({COUNTS}) c ON c.instruction_id = i.id"
            + (" WHERE " + " AND ".join(where) if where else "")
        )
        at = ALL_ROUNDS if judged is None else judged
        total = pool.query(f"SELECT COUNT(*) FROM ({sql})", (at, at, *params))[0][0]
        sql += f" ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = [as_row(r) for r in pool.query(sql, (at, at, *params))]
        return {"total": total, "shown": len(rows), "rows": rows}


# -- show ---------------------------------------------------------------------------------------


def show_instruction(run_dir: Path, ident: str) -> dict[str, Any]:
    """One instruction with every teacher/student answer by round, every verdict, its rows."""
    with snapshot(run_dir) as pool:
        iid = resolve_id(pool, ident)
        ins = as_row(pool.query("SELECT * FROM instructions WHERE id = ?", (iid,))[0])
        parent = None
        if ins["parent_id"]:
            rows = pool.query("SELECT id, text, input, origin, round_born FROM instructions WHERE id = ?",
                              (ins["parent_id"],))
            parent = dict(rows[0]) if rows else {"id": ins["parent_id"], "missing": True}
        return {
            "instruction": ins,
            "parent": parent,
            "children": [dict(r) for r in pool.query(
                "SELECT id, text, input, origin, round_born FROM instructions WHERE parent_id = ?"
                " ORDER BY round_born, id", (iid,))],
            "responses": [dict(r) for r in pool.query(
                "SELECT round, role, model, text, thinking FROM responses WHERE instruction_id = ?"
                " ORDER BY round, role DESC", (iid,))],
            "verdicts": [as_row(r) for r in pool.query(
                "SELECT round, teacher_score, student_score, diff, hard, raw FROM verdicts"
                " WHERE instruction_id = ? ORDER BY round", (iid,))],
            "examples": [dict(r) for r in pool.query(
                "SELECT id, kind, generator, round, weight, student, prompt, completion FROM examples"
                " WHERE instruction_id = ? ORDER BY round, kind, id", (iid,))],
            "candidates": [dict(r) for r in pool.query(
                "SELECT round, generator, status, reason FROM candidates WHERE id = ? ORDER BY round, seq",
                (iid,))],
            "failures": [dict(r) for r in pool.query(
                "SELECT round, stage, reason FROM failures WHERE item_id = ? ORDER BY round", (iid,))],
        }
