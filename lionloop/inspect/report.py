"""`lionloop report`: one self-contained HTML file of a run's curves, score gaps, pool map and hardest cases.

Plotly draws every chart (its JS is inlined, so the file opens with no network); the 2-D map of the
pool is a projection (t-SNE, or PCA on large pools) of the embeddings the run stored for dedup.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from lionloop.inspect.lineage import lineage_of
from lionloop.inspect.queries import latest_verdicts, verdict_counts
from lionloop.inspect.snapshot import PoolQueryError, snapshot
from lionloop.inspect.status import build, stats_view
from lionloop.rundir import RunDir
from lionloop.stores.pool import Pool

log = logging.getLogger(__name__)

PROJECTIONS = ("auto", "tsne", "pca")
TSNE_UP_TO = 3000  # t-SNE takes ~4 s at 2k points on 2 cores; past this, PCA keeps the report fast
MAP_POINTS = 20_000  # plot at most this many points (a deterministic sample above it; the about text says 20,000)


# -- data ---------------------------------------------------------------------------------------


def collect(run_dir: Path, projection: str = "auto", top: int = 25) -> dict[str, Any]:
    """Everything the report shows, read from one snapshot of the pool."""
    if projection not in PROJECTIONS:
        raise PoolQueryError(f"unknown projection {projection!r} (one of: {', '.join(PROJECTIONS)})")
    with snapshot(run_dir) as pool:
        stats = stats_view(build(pool, RunDir(run_dir)))
        metrics = {r["round"]: r["metrics"] for r in pool.rounds()}
        rounds = sorted(metrics)
        # Pool size by origin after each round: instructions born at or before it (eval excluded).
        born = defaultdict(lambda: defaultdict(int))
        for r in pool.query("SELECT origin, round_born, COUNT(*) AS n FROM instructions"
                            " WHERE split != 'eval' GROUP BY 1, 2"):
            born[r["origin"]][r["round_born"]] += r["n"]
        by_origin = {o: [sum(n for b, n in per.items() if b <= rnd) for rnd in rounds] for o, per in sorted(born.items())}
        gaps = defaultdict(list)
        identical = defaultdict(int)
        for r in pool.query("SELECT round, diff, hard FROM verdicts"):
            if r["diff"] is not None:
                gaps[r["round"]].append(r["diff"])
            elif r["hard"] == 0:
                identical[r["round"]] += 1
        latest = latest_verdicts(pool)
        hardest = _hardest(pool, latest, top)
        emb = _embedding_map(pool, latest, projection)
    return {
        "run": {"run_id": RunDir(run_dir).run_id(), "created": RunDir(run_dir).info().get("created"),
                "run_dir": str(run_dir)},
        "stats": stats,
        "rounds": rounds,
        "metrics": metrics,
        "pool_by_origin": by_origin,
        "gaps": {k: gaps[k] for k in sorted(gaps)},
        "identical": dict(identical),
        "hardest": hardest,
        "map": emb,
    }


def _instruction_rows(pool: Pool, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The report's columns of these instructions, by id (by primary key: the report reads only
    the instructions it shows, never the whole pool)."""
    out: dict[str, dict[str, Any]] = {}
    for k in range(0, len(ids), 900):  # SQLite's default limit on bound parameters is 999
        part = ids[k : k + 900]
        out.update({r["id"]: dict(r) for r in pool.query(
            "SELECT id, text, input, task, origin, parent_id, round_born, split FROM instructions"
            f" WHERE id IN ({','.join('?' * len(part))})", part)})
    return out


def _hardest(pool: Pool, latest: dict[str, dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """Instructions whose latest verdict is hard, largest gap first, then hard in the most rounds."""
    counts = verdict_counts(pool)
    times_hard = {k: v["times_hard"] for k, v in counts.items()}
    times_judged = {k: v["times_judged"] for k, v in counts.items()}
    hard = [v for v in latest.values() if v["hard"] == 1]
    hard.sort(key=lambda v: (-(v["diff"] or 0), -times_hard.get(v["instruction_id"], 0), v["instruction_id"]))
    # Verdicts whose instruction is gone are skipped: read a few more than shown.
    info = _instruction_rows(pool, [v["instruction_id"] for v in hard[: 2 * top + 10]])
    hard = [v for v in hard if v["instruction_id"] in info]
    out = []
    for v in hard[:top]:
        iid = v["instruction_id"]
        answers = {(r["role"]): r["text"] for r in pool.query(
            "SELECT role, text FROM responses WHERE instruction_id = ? AND (role = 'teacher' OR round = ?)"
            " ORDER BY round", (iid, v["verdict_round"]))}
        lin = lineage_of(pool, iid, max_nodes=200)
        out.append({
            **info[iid], "diff": v["diff"], "verdict_round": v["verdict_round"],
            "times_hard": times_hard.get(iid, 0), "times_judged": times_judged.get(iid, 0),
            "teacher_answer": answers.get("teacher", ""), "student_answer": answers.get("student", ""),
            "lineage": lin,
        })
    return out


def map_sample(pool: Pool, model: str, limit: int | None = None) -> list[tuple[str, bytes]]:
    """The stored vectors the map shows: all of them up to `limit`, else a deterministic sample of
    `limit`, read by rowid so that only the sample's vectors leave SQLite (a million-instruction
    pool holds ~1.5 GB of them; its rowids are 8 MB)."""
    import numpy as np

    limit = MAP_POINTS if limit is None else limit
    rowids = [r[0] for r in pool.query("SELECT rowid FROM embeddings WHERE model = ? ORDER BY rowid", (model,))]
    if len(rowids) > limit:
        keep = np.random.default_rng(0).choice(len(rowids), limit, replace=False)
        rowids = [rowids[k] for k in sorted(keep)]
    out: list[tuple[str, bytes]] = []
    for k in range(0, len(rowids), 900):
        part = rowids[k : k + 900]
        out += [(r[0], r[1]) for r in pool.query(
            f"SELECT instruction_id, vector FROM embeddings WHERE rowid IN ({','.join('?' * len(part))}) ORDER BY rowid",
            part)]
    return out


def _embedding_map(pool: Pool, latest: dict[str, dict[str, Any]], projection: str) -> dict[str, Any]:
    import numpy as np

    models = pool.query("SELECT model, COUNT(*) AS n FROM embeddings GROUP BY model ORDER BY n DESC")
    if not models:
        return {"points": [], "method": None, "note": "no embeddings stored yet"}
    model, total = models[0]["model"], models[0]["n"]
    sample = map_sample(pool, model)
    info = _instruction_rows(pool, [i for i, _ in sample])
    stored = [(i, v) for i, v in sample if i in info]
    if len(stored) < 3:
        return {"points": [], "method": None, "note": f"only {len(stored)} embeddings stored"}
    X = np.stack([np.frombuffer(v, dtype=np.float32) for _, v in stored])
    method = projection if projection != "auto" else ("tsne" if len(X) <= TSNE_UP_TO else "pca")
    t0 = time.perf_counter()
    xy = _project(X, method)
    log.info("projected %d embeddings with %s in %.1fs", len(X), method, time.perf_counter() - t0)
    points = []
    for (iid, _), (x, y) in zip(stored, xy, strict=True):
        ins, v = info[iid], latest.get(iid)
        if ins["split"] == "eval":
            status = "eval (held out)"
        elif v is None or v["hard"] is None:
            status = "not judged yet"
        else:
            status = "hard" if v["hard"] else "easy"
        points.append({"id": iid, "x": float(x), "y": float(y), "round": ins["round_born"], "split": ins["split"],
                       "status": status, "text": ins["text"], "task": ins["task"], "origin": ins["origin"]})
    note = f"a sample of {len(points):,} of {total:,} stored embeddings" if total > len(sample) else ""
    return {"points": points, "method": method, "model": model, "note": note, "total": total}


def _project(X: Any, method: str) -> Any:
    from sklearn.decomposition import PCA

    if method == "pca" or len(X) < 10:
        return PCA(n_components=2, random_state=0).fit_transform(X)
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(50, X.shape[1], len(X) - 1), random_state=0).fit_transform(X)
    perplexity = float(min(30, max(2, (len(X) - 1) / 3)))
    return TSNE(n_components=2, init="pca", random_state=0, perplexity=perplexity, max_iter=500).fit_transform(reduced)


# -- figures ------------------------------------------------------------------------------------


def figures(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's charts: id, title, a sentence on how to read it, and the Plotly figure (or None)."""
    from lionloop.inspect.figures import (
        accuracy_figure,
        agreement_figure,
        allocation_figure,
        curate_figure,
        gap_figure,
        map_figure,
        metric_name,
        pool_figure,
        referee_figure,
        replies_figure,
        teacher_figure,
        training_figure,
    )

    metric = metric_name(data)
    about = {
        "accuracy": "Student accuracy on the held-out eval split after each round's training (the verifier's "
                    "check against the references), overall and per task.",
        "relative score": "Lion's relative score on the held-out eval split: the student's total referee score "
                          "over the teacher's (both orders), overall and per task.",
    }[metric]
    audit = agreement_figure(data)
    return [
        {"id": "accuracy", "title": f"Eval {metric} by round", "about": about
         + (" Dashed: the referee's relative score." if metric == "accuracy" and data["stats"]["rounds"]
            and any(r.get("eval_relative") for r in data["stats"]["rounds"]) else ""),
         "fig": accuracy_figure(data)},
        {"id": "referee", "title": "Referee: hard and easy cases",
         "about": "The referee's calls on the train and cache pools each round; the line is the hard ratio.",
         "fig": referee_figure(data)},
        *([{"id": "agreement", "title": "Referee audited by the verifier",
            "about": "judge.mode both: the share of the referee's hard/easy calls the verifier agrees with, and "
                     "the precision and recall of its 'hard' (identical answers, easy without a call, left out).",
            "fig": audit}] if audit is not None else []),
        {"id": "allocation", "title": "Where the new data went",
         "about": "New instructions accepted per task (or cluster) each round, as the allocation shared out the "
                  "round; dotted lines: each group's learning progress on the cache pool, the signal it followed.",
         "fig": allocation_figure(data)},
        {"id": "pool", "title": "Pool size by origin",
         "about": "Instructions in the train and cache pools after each round, by who wrote them (eval excluded).",
         "fig": pool_figure(data)},
        {"id": "teacher", "title": "Teacher calls and tokens",
         "about": "Paid teacher calls per round by stage (round 0 = bootstrap); cache hits and tokens as lines.",
         "fig": teacher_figure(data)},
        {"id": "replies", "title": "Teacher replies by request type",
         "about": "Every teacher request of the run by type: parsed, unreadable after its re-asks (the parse-failure rate above each bar), or failed otherwise.",
         "fig": replies_figure(data)},
        {"id": "training", "title": "Training loss by round",
         "about": "The student's completion loss in each round's imitate stage: the mean over the round's steps and the last value logged.",
         "fig": training_figure(data)},
        {"id": "gaps", "title": "Referee score gaps",
         "about": "Teacher score minus student score for every judged case, per round (identical answers are easy and not scored).",
         "fig": gap_figure(data)},
        {"id": "curate", "title": "Candidates: accepted and rejected",
         "about": "What the generators proposed each round and why candidates were dropped (filters, dedup against the pool and the eval set, teacher failures).",
         "fig": curate_figure(data)},
        {"id": "map", "title": "The pool's embedding map",
         "about": "Every stored instruction embedding (past 20,000 a fixed random sample of them) projected to 2-D, "
                  "coloured by the round it entered and by its latest verdict.",
         "fig": map_figure(data), "wide": True},
    ]


# -- HTML ---------------------------------------------------------------------------------------


def render(data: dict[str, Any], figs: list[dict[str, Any]]) -> str:
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    from lionloop.inspect.template import page

    config = {"displaylogo": False, "responsive": True}
    charts = []
    for f in figs:
        html = None
        if f["fig"] is not None:
            html = pio.to_html(f["fig"], full_html=False, include_plotlyjs=False, div_id=f"plot-{f['id']}",
                               config=config, default_width="100%")
        charts.append({**{k: v for k, v in f.items() if k != "fig"}, "html": html})
    return page(data, charts, get_plotlyjs())


def build_report(run_dir: Path, out: Path, projection: str = "auto", top: int = 25) -> dict[str, Any]:
    """Write the report for `run_dir` to `out`; returns what was written and how long it took."""
    t0 = time.perf_counter()
    data = collect(run_dir, projection, top)
    html = render(data, figures(data))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return {
        "out": str(out), "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 2),
        "rounds": len([r for r in data["rounds"] if r > 0]), "points": len(data["map"]["points"]),
        "projection": data["map"]["method"], "hardest": len(data["hardest"]),
    }
