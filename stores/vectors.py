"""The FAISS index of the pool (eval split included), persisted and rebuildable from the store."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from lionloop.rundir import RunDir
from lionloop.stores.pool import Pool

log = logging.getLogger(__name__)

HNSW_ABOVE = 200_000  # exact search is fast enough below this on 2 cores (~0.1 s per 1k queries at 50k)


def _new_index(dim: int, size_hint: int):  # noqa: ANN202 - faiss types are not importable stubs
    import faiss

    if size_hint > HNSW_ABOVE:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
        return index
    return faiss.IndexFlatIP(dim)  # inner product on normalised vectors = cosine


def load_persisted(run_dir: RunDir, ids: list[str]):  # noqa: ANN201
    """The persisted index when it holds exactly `ids` (the stored embeddings, in order), else None
    (missing, mid-write, stale or unreadable: the caller rebuilds). Never writes."""
    import faiss

    if not (run_dir.index.exists() and run_dir.index_ids.exists()):
        return None
    try:
        index = faiss.read_index(str(run_dir.index))
        if json.loads(run_dir.index_ids.read_text()) == ids and index.ntotal == len(ids):
            return index
        log.info("FAISS index does not match the stored embeddings; rebuilding")
    except (OSError, ValueError, RuntimeError) as err:
        log.warning("FAISS index unreadable (%s); rebuilding from stored embeddings", err)
    return None


def build_index(stored: list[tuple[str, bytes]], dim: int):  # noqa: ANN201
    """A new index holding the stored vectors (in memory)."""
    index = _new_index(dim, len(stored))
    if stored:
        index.add(np.stack([np.frombuffer(v, dtype=np.float32) for _, v in stored]))
    return index


class VectorIndex:
    """Normalised embeddings of every instruction, searchable by cosine similarity.

    The vectors themselves live in the pool's `embeddings` table (written in the same
    transaction as the instructions); `index.faiss` is a cache of them, rebuilt whenever it
    does not match the table, e.g. after a crash between the two writes.
    """

    def __init__(self, pool: Pool, run_dir: RunDir | Path, model: str, dim: int) -> None:
        self.pool = pool
        self.model = model
        self.dim = dim
        self.run_dir = run_dir = RunDir(run_dir)
        self.path = run_dir.index
        self.ids_path = run_dir.index_ids
        self.ids: list[str] = []
        self.index = _new_index(dim, 0)
        self._load_or_rebuild()

    def _stored(self) -> list[tuple[str, bytes]]:
        return self.pool.embeddings(self.model)

    def _load_or_rebuild(self) -> None:
        ids = self.pool.embedding_ids(self.model)
        index = load_persisted(self.run_dir, ids)
        if index is None:
            self.rebuild()
        else:
            self.ids, self.index = ids, index

    def rebuild(self, stored: list[tuple[str, bytes]] | None = None) -> None:
        stored = self._stored() if stored is None else stored
        self.index = build_index(stored, self.dim)
        self.ids = [k for k, _ in stored]
        self.save()

    def save(self) -> None:
        import faiss

        tmp = self.path.with_suffix(".faiss.tmp")
        faiss.write_index(self.index, str(tmp))
        tmp_ids = self.ids_path.with_suffix(".json.tmp")
        tmp_ids.write_text(json.dumps(self.ids))
        os.replace(tmp, self.path)
        os.replace(tmp_ids, self.ids_path)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add vectors already committed to the `embeddings` table, then persist the index."""
        if not ids:
            return
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.ids.extend(ids)
        self.save()

    def search(self, vectors: np.ndarray, k: int = 1) -> tuple[np.ndarray, list[list[str | None]]]:
        """Top-k cosine similarities and ids for each query vector."""
        if len(self) == 0 or len(vectors) == 0:
            return np.zeros((len(vectors), k), dtype=np.float32), [[None] * k for _ in range(len(vectors))]
        sims, idx = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        names = [[self.ids[j] if j >= 0 else None for j in row] for row in idx]
        return sims, names
