"""Lineage: an instruction's ancestors and descendants with their verdicts (`lionloop pool
lineage`, the report's hardest cases), and every instruction's root and depth (the export)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from lionloop.inspect.queries import NODE_COLS, as_hard, resolve_id
from lionloop.inspect.snapshot import snapshot
from lionloop.stores.pool import Pool


def _verdicts_of(pool: Pool, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for r in pool.query(
            f"SELECT instruction_id, round, diff, hard FROM verdicts WHERE instruction_id IN ({marks})"
            " ORDER BY round", chunk,
        ):
            out[r["instruction_id"]].append({"round": r["round"], "diff": r["diff"], "hard": as_hard(r["hard"])})
    return out


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
        rows = pool.query(f"SELECT {NODE_COLS} FROM instructions WHERE id = ?", (cur,))
        if not rows:
            chain.append({"id": cur, "missing": True})
            break
        chain.append(dict(rows[0]))
        cur = rows[0]["parent_id"]
    chain.reverse()
    desc = [dict(r) for r in pool.query(
        f"WITH RECURSIVE d(id) AS (SELECT id FROM instructions WHERE parent_id = ?"
        f" UNION SELECT i.id FROM instructions i JOIN d ON i.parent_id = d.id)"
        f" SELECT {NODE_COLS} FROM instructions WHERE id IN (SELECT id FROM d)"
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
