"""Read-only views of a run's pool for `lionloop pool ...`, the export and the report: list, show,
lineage, search, diff (each inside one snapshot: safe while the run writes)."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from lionloop.errors import LionloopError
from lionloop.inspect.snapshot import PoolQueryError, open_pool, snapshot
from lionloop.inspect.status import build, grouped, stats_view
from lionloop.records import SPLITS
from lionloop.rundir import RunDir
from lionloop.stores.pool import Pool

SORTS = ("gap", "round", "id")


# -- small helpers ------------------------------------------------------------------------------


def _hard(v: Any) -> bool | None:
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
_LATEST = """
SELECT v.instruction_id, v.round AS verdict_round, v.teacher_score, v.student_score, v.diff, v.hard
FROM verdicts v JOIN (
    SELECT instruction_id, MAX(round) AS r FROM verdicts WHERE round <= ? GROUP BY instruction_id
) m ON m.instruction_id = v.instruction_id AND m.r = v.round
"""
_COUNTS = """
SELECT instruction_id, COUNT(*) AS times_judged, SUM(hard = 1) AS times_hard
FROM verdicts WHERE round <= ? GROUP BY instruction_id
"""
_ALL_ROUNDS = 1 << 30


def latest_verdicts(pool: Pool, at: int | None = None) -> dict[str, dict[str, Any]]:
    """Each judged instruction's latest verdict at or before round `at` (default: the last)."""
    rows = pool.query(_LATEST, (_ALL_ROUNDS if at is None else at,))
    return {r["instruction_id"]: dict(r) for r in rows}


def _row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    if "meta" in d and isinstance(d["meta"], str):
        d["meta"] = json.loads(d["meta"] or "{}")
    if "hard" in d:
        d["hard"] = _hard(d["hard"])
    return d


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
            f" FROM instructions i LEFT JOIN ({_LATEST}) v ON v.instruction_id = i.id"
            f" LEFT JOIN ({_COUNTS}) c ON c.instruction_id = i.id"
            + (" WHERE " + " AND ".join(where) if where else "")
        )
        at = _ALL_ROUNDS if judged is None else judged
        total = pool.query(f"SELECT COUNT(*) FROM ({sql})", (at, at, *params))[0][0]
        sql += f" ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = [_row(r) for r in pool.query(sql, (at, at, *params))]
        return {"total": total, "shown": len(rows), "rows": rows}


# -- show ---------------------------------------------------------------------------------------


def show_instruction(run_dir: Path, ident: str) -> dict[str, Any]:
    """One instruction with every teacher/student answer by round, every verdict, its rows."""
    with snapshot(run_dir) as pool:
        iid = resolve_id(pool, ident)
        ins = _row(pool.query("SELECT * FROM instructions WHERE id = ?", (iid,))[0])
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
                "SELECT round, role, model, text FROM responses WHERE instruction_id = ?"
                " ORDER BY round, role DESC", (iid,))],
            "verdicts": [_row(r) for r in pool.query(
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


# -- lineage ------------------------------------------------------------------------------------


def _verdicts_of(pool: Pool, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for r in pool.query(
            f"SELECT instruction_id, round, diff, hard FROM verdicts WHERE instruction_id IN ({marks})"
            " ORDER BY round", chunk,
        ):
            out[r["instruction_id"]].append({"round": r["round"], "diff": r["diff"], "hard": _hard(r["hard"])})
    return out


_NODE_COLS = "id, text, input, task, origin, parent_id, round_born, split"


def lineage(run_dir: Path, ident: str, max_nodes: int = 2000) -> dict[str, Any]:
    """Ancestors (root first) and the tree of descendants, each node with its verdicts by round."""
    with snapshot(run_dir) as pool:
        return lineage_of(pool, resolve_id(pool, ident), max_nodes)


def lineage_of(pool: Pool, iid: str, max_nodes: int = 2000) -> dict[str, Any]:
    """`lineage` on an open pool, for a full instruction id."""
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    cur: str | None = iid
    while cur and cur not in seen:  # parents can be missing (foreign seeds); cycles cannot loop
        seen.add(cur)
        rows = pool.query(f"SELECT {_NODE_COLS} FROM instructions WHERE id = ?", (cur,))
        if not rows:
            chain.append({"id": cur, "missing": True})
            break
        chain.append(dict(rows[0]))
        cur = rows[0]["parent_id"]
    chain.reverse()
    desc = [dict(r) for r in pool.query(
        f"WITH RECURSIVE d(id) AS (SELECT id FROM instructions WHERE parent_id = ?"
        f" UNION SELECT i.id FROM instructions i JOIN d ON i.parent_id = d.id)"
        f" SELECT {_NODE_COLS} FROM instructions WHERE id IN (SELECT id FROM d)"
        f" ORDER BY round_born, id LIMIT ?", (iid, max_nodes),
    )]
    verdicts = _verdicts_of(pool, [n["id"] for n in chain + desc if not n.get("missing")])
    for n in chain + desc:
        n["verdicts"] = verdicts.get(n["id"], [])
    kids: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in desc:
        kids[n["parent_id"]].append(n)

    def tree(node_id: str, depth: int) -> list[dict[str, Any]]:
        out = []
        for n in kids.get(node_id, []):
            out.append({**n, "children": tree(n["id"], depth + 1) if depth < 64 else []})
        return out

    node = chain[-1]
    return {
        "id": iid,
        "node": node,
        "ancestors": chain[:-1],
        "descendants": tree(iid, 0),
        "descendant_count": len(desc),
        "truncated": len(desc) >= max_nodes,
    }


def lineage_columns(pool: Pool) -> dict[str, dict[str, Any]]:
    """For every instruction: its root ancestor, depth and ancestor path (root first)."""
    parent = {r["id"]: r["parent_id"] for r in pool.query("SELECT id, parent_id FROM instructions")}
    out: dict[str, dict[str, Any]] = {}

    def resolve(i: str) -> dict[str, Any]:
        path: list[str] = []
        cur, seen = parent.get(i), {i}
        while cur and cur not in seen:
            seen.add(cur)
            if cur in out:  # reuse what is known of the ancestor
                path = out[cur]["lineage"] + [cur] + path
                break
            path.insert(0, cur)
            cur = parent.get(cur)
        return {"root_id": path[0] if path else i, "depth": len(path), "lineage": path}

    for i in parent:
        out[i] = resolve(i)
    return out


# -- search -------------------------------------------------------------------------------------


def _embedder_for(run_dir: Path):  # noqa: ANN202 - Embedder is imported lazily (torch)
    from lionloop.config import DedupConfig
    from lionloop.embedding import Embedder

    try:
        cfg = RunDir(run_dir).read()[0].dedup
    except (LionloopError, OSError):
        cfg = DedupConfig()
    return Embedder(cfg)


def read_index(pool: Pool, run_dir: Path, model: str) -> tuple[Any, list[str], str]:
    """The run's FAISS index if it matches the stored embeddings, else one built in memory.

    Never writes: a live run owns `index.faiss`; a reader only loads it.
    """
    from lionloop.stores.vectors import build_index, load_persisted

    ids = pool.embedding_ids(model)
    if not ids:
        return None, [], "empty"
    index = load_persisted(RunDir(run_dir), ids)
    if index is not None:
        return index, ids, "index.faiss"
    stored = pool.embeddings(model)
    dim = len(stored[0][1]) // 4  # float32 vectors
    return build_index(stored, dim), ids, "rebuilt in memory from the embeddings table"


def search(run_dir: Path, text: str, k: int = 10) -> dict[str, Any]:
    """Nearest instructions to `text` by cosine similarity, through the run's FAISS index."""
    if not text.strip():
        raise PoolQueryError("search text is empty")
    if k < 1:
        raise PoolQueryError(f"-k must be >= 1, got {k}")
    open_pool(run_dir).close()  # fail on a bad run dir before loading the embedding model
    embedder = _embedder_for(run_dir)
    with snapshot(run_dir) as pool:
        models = grouped(pool, "SELECT model, COUNT(*) FROM embeddings GROUP BY model")
        if embedder.name not in models:
            raise PoolQueryError(
                f"the pool has no embeddings from model {embedder.name!r}"
                + (f" (it has: {', '.join(models)})" if models else " (no embeddings yet)")
            )
        index, ids, source = read_index(pool, run_dir, embedder.name)
        query = embedder.encode([text])
        sims, idx = index.search(query, min(k, len(ids)))
        hits = [(ids[j], float(s)) for j, s in zip(idx[0], sims[0], strict=True) if j >= 0]
        info = {r["id"]: _row(r) for r in _by_ids(pool, [h[0] for h in hits])}
        return {
            "query": text,
            "model": embedder.name,
            "index": source,
            "indexed": len(ids),
            "neighbours": [
                {"rank": n + 1, "similarity": round(s, 4), **info.get(i, {"id": i, "missing": True})}
                for n, (i, s) in enumerate(hits)
            ],
        }


def _by_ids(pool: Pool, ids: list[str]) -> list[sqlite3.Row]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return pool.query(
        "SELECT i.id, i.text, i.input, i.task, i.origin, i.parent_id, i.round_born, i.split,"
        f" v.verdict_round, v.diff, v.hard FROM instructions i LEFT JOIN ({_LATEST}) v"
        f" ON v.instruction_id = i.id WHERE i.id IN ({marks})", (_ALL_ROUNDS, *ids),
    )


# -- diff ---------------------------------------------------------------------------------------


def pool_diff(run_dir: Path, r_from: int, r_to: int, limit: int | None = 20) -> dict[str, Any]:
    """Between two rounds: what entered the pool, what became easy, what stayed (or became) hard.

    The pool "at round R" is what exists once round R is done (born in rounds <= R); verdicts
    are compared between the referee's calls of exactly those two rounds.
    """
    if r_from >= r_to:
        raise PoolQueryError(f"--from ({r_from}) must be before --to ({r_to})")
    if limit is not None and limit < 0:
        raise PoolQueryError(f"--limit must be >= 0, got {limit}")
    with snapshot(run_dir) as pool:
        check_round(pool, r_from, "--from round")
        check_round(pool, r_to, "--to round")
        entered = [dict(r) for r in pool.query(
            f"SELECT {_NODE_COLS} FROM instructions WHERE round_born > ? AND round_born <= ?"
            " AND split != 'eval' ORDER BY round_born, id", (r_from, r_to))]
        before = {r["instruction_id"]: dict(r) for r in pool.query(
            "SELECT instruction_id, diff, hard FROM verdicts WHERE round = ?", (r_from,))}
        after = {r["instruction_id"]: dict(r) for r in pool.query(
            "SELECT instruction_id, diff, hard FROM verdicts WHERE round = ?", (r_to,))}
        groups: dict[str, list[str]] = {k: [] for k in (
            "became_easy", "stayed_hard", "became_hard", "stayed_easy", "new_hard", "new_easy",
            "unjudged", "dropped")}
        for iid, a in after.items():
            b = before.get(iid)
            if a["hard"] is None:
                groups["unjudged"].append(iid)
            elif b is None or b["hard"] is None:
                groups["new_hard" if a["hard"] else "new_easy"].append(iid)
            elif b["hard"]:
                groups["stayed_hard" if a["hard"] else "became_easy"].append(iid)
            else:
                groups["became_hard" if a["hard"] else "stayed_easy"].append(iid)
        groups["dropped"] = sorted(set(before) - set(after))  # judged before, not at `to` (sampling)
        info = {r["id"]: dict(r) for r in pool.query(f"SELECT {_NODE_COLS} FROM instructions")}
        cut = None if not limit else limit

        def rows(key: str) -> list[dict[str, Any]]:
            out = []
            for iid in groups[key]:
                b, a = before.get(iid, {}), after.get(iid, {})
                out.append({**info.get(iid, {"id": iid}), "diff_from": b.get("diff"), "diff_to": a.get("diff"),
                            "hard_from": _hard(b.get("hard")), "hard_to": _hard(a.get("hard"))})
            out.sort(key=lambda r: (-(r["diff_to"] if r["diff_to"] is not None else -1e9), r["id"]))
            return out[:cut]

        metrics = {r["round"]: r["metrics"] for r in pool.rounds()}
        ev_a, ev_b = metrics.get(r_from, {}).get("eval", {}), metrics.get(r_to, {}).get("eval", {})
        skills = sorted(set(ev_a.get("per_skill", {})) | set(ev_b.get("per_skill", {})))
        by_origin: dict[str, int] = defaultdict(int)
        by_task: dict[str, int] = defaultdict(int)
        for r in entered:
            by_origin[r["origin"]] += 1
            by_task[r["task"]] += 1
        return {
            "from": r_from,
            "to": r_to,
            "counts": {"entered": len(entered), **{k: len(v) for k, v in groups.items()}},
            "entered_by_origin": dict(sorted(by_origin.items())),
            "entered_by_task": dict(sorted(by_task.items())),
            "eval": {
                "from": ev_a.get("overall"), "to": ev_b.get("overall"),
                "per_skill": {s: [ev_a.get("per_skill", {}).get(s), ev_b.get("per_skill", {}).get(s)] for s in skills},
            },
            "entered": entered[:cut],
            "became_easy": rows("became_easy"),
            "stayed_hard": rows("stayed_hard"),
            "became_hard": rows("became_hard"),
            "new_hard": rows("new_hard"),
        }


# -- rows for export ----------------------------------------------------------------------------


def export_rows(run_dir: Path, what: str = "examples", split: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Training rows (`examples`) or `instructions`, each with lineage columns; plus the stats."""
    if what not in ("examples", "instructions"):
        raise PoolQueryError(f"unknown export kind {what!r} (examples or instructions)")
    if split is not None and split not in SPLITS:
        raise PoolQueryError(f"unknown split {split!r} (one of: {', '.join(SPLITS)})")
    with snapshot(run_dir) as pool:
        lin = lineage_columns(pool)
        latest = latest_verdicts(pool)
        counts = {r["instruction_id"]: dict(r) for r in pool.query(_COUNTS, (_ALL_ROUNDS,))}
        params: tuple[Any, ...] = ()
        if what == "examples":
            # What the student trains on: rows of train-split instructions (as Pool.examples()).
            sql = ("SELECT e.id, e.instruction_id, e.kind, e.prompt, e.completion, e.generator, e.round,"
                   " e.weight, e.student, i.text AS instruction, i.input, i.task, i.origin, i.parent_id, i.round_born,"
                   " i.split FROM examples e JOIN instructions i ON i.id = e.instruction_id"
                   " WHERE i.split = 'train'")
            if split not in (None, "train"):
                raise PoolQueryError("training rows exist only for the train split")
            sql += " ORDER BY e.round, e.id"
        else:
            sql = ("SELECT i.id AS instruction_id, i.text AS instruction, i.input, i.task, i.origin,"
                   " i.parent_id, i.round_born, i.split, i.meta, t.text AS teacher_answer"
                   " FROM instructions i LEFT JOIN (SELECT instruction_id, text, MAX(round) FROM responses"
                   " WHERE role = 'teacher' GROUP BY instruction_id) t ON t.instruction_id = i.id")
            if split is not None:
                sql += " WHERE i.split = ?"
                params = (split,)
            sql += " ORDER BY i.round_born, i.id"
        rows = []
        for r in pool.query(sql, params):
            d = dict(r)
            iid = d["instruction_id"]
            lv, cv = latest.get(iid, {}), counts.get(iid, {})
            d.update(lin.get(iid, {"root_id": iid, "depth": 0, "lineage": []}))
            d.update({
                "latest_verdict_round": lv.get("verdict_round"),
                "latest_diff": lv.get("diff"),
                "latest_hard": _hard(lv.get("hard")),
                "times_judged": cv.get("times_judged", 0),
                "times_hard": cv.get("times_hard", 0) or 0,
            })
            rows.append(d)
        return rows, stats_view(build(pool, RunDir(run_dir)))
