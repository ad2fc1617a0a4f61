"""`lionloop pool search`: the nearest instructions to a text, through the run's FAISS index
(read, never written: a live run owns it)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from lionloop.errors import LionloopError
from lionloop.inspect.queries import ALL_ROUNDS, LATEST, as_row
from lionloop.inspect.snapshot import PoolQueryError, open_pool, snapshot
from lionloop.inspect.status import grouped
from lionloop.rundir import RunDir
from lionloop.stores.pool import Pool


def _index_settings(run_dir: Path) -> Any:
    try:
        return RunDir(run_dir).read()[0].dedup.index
    except (LionloopError, OSError):
        return None


def _embedder_for(run_dir: Path):  # noqa: ANN202 - Embedder is imported lazily (torch)
    from lionloop.config import DedupConfig
    from lionloop.embedding import Embedder

    try:
        cfg = RunDir(run_dir).read()[0].dedup
    except (LionloopError, OSError):
        cfg = DedupConfig()
    return Embedder(cfg)


def read_index(pool: Pool, run_dir: Path, model: str, settings: Any = None) -> tuple[Any, str]:
    """The run's FAISS index (loaded, plus the vectors stored since it was saved) or, when it does
    not match the stored embeddings, one built in memory. Never writes: a live run owns the files."""
    from lionloop.stores.vectors import VectorIndex

    count, top = pool.embedding_span(model)
    if not count:
        return None, "empty"
    dim = len(pool.query("SELECT vector FROM embeddings WHERE model = ? AND rowid = ?", (model, top))[0][0]) // 4
    index = VectorIndex(pool, run_dir, model, dim, settings, readonly=True)
    return index, index.source


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
        index, source = read_index(pool, run_dir, embedder.name, _index_settings(run_dir))
        query = embedder.encode([text])
        sims, names = index.search(query, min(k, len(index)))
        hits = [(i, float(s)) for i, s in zip(names[0], sims[0], strict=True) if i is not None]
        info = {r["id"]: as_row(r) for r in _by_ids(pool, [h[0] for h in hits])}
        return {
            "query": text,
            "model": embedder.name,
            "index": source,
            "indexed": len(index),
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
        f" v.verdict_round, v.diff, v.hard FROM instructions i LEFT JOIN ({LATEST}) v"
        f" ON v.instruction_id = i.id WHERE i.id IN ({marks})", (ALL_ROUNDS, *ids),
    )
