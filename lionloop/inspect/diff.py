"""`lionloop pool diff`: what changed in the pool between two rounds."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from lionloop.inspect.queries import NODE_COLS, as_hard, check_round
from lionloop.inspect.snapshot import PoolQueryError, snapshot


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
            f"SELECT {NODE_COLS} FROM instructions WHERE round_born > ? AND round_born <= ?"
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
        info = {r["id"]: dict(r) for r in pool.query(f"SELECT {NODE_COLS} FROM instructions")}
        cut = None if not limit else limit

        def rows(key: str) -> list[dict[str, Any]]:
            out = []
            for iid in groups[key]:
                b, a = before.get(iid, {}), after.get(iid, {})
                out.append({**info.get(iid, {"id": iid}), "diff_from": b.get("diff"), "diff_to": a.get("diff"),
                            "hard_from": as_hard(b.get("hard")), "hard_to": as_hard(a.get("hard"))})
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
