"""The FAISS index of the pool (eval split included), persisted and rebuildable from the store.

The vectors live in the pool's `embeddings` table; `index.faiss` is a cache of them. Its labels
are the instructions' ids themselves (16 hex digits = 64 bits), so nothing maps index rows to
ids in memory, and `index.meta.json` says which stored vectors it holds: every row of the model
up to a rowid. Opening it loads the file and adds the rows stored since (a crash between the
embeddings commit and the index save costs a catch-up, not a rebuild); anything else that does
not match (another model, a row replaced or removed, an unreadable file) rebuilds it from the table.

Kinds (`dedup.index`): exact inner product (`flat`) while the pool is small; past `above` vectors
`auto` switches to IVF (k-means lists, `nprobe` of them searched per query), retrained from the
stored vectors each time the pool has grown 4x since the last training, so training costs stay
proportional to the pool (amortised). HNSW is the other approximate choice (no training, more
memory, CPU only). Flat and IVF move to the GPUs when FAISS sees any. Large indexes are saved
when a tenth of them is new, not after every round: a round's cost must not grow with the pool.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lionloop.config import IndexConfig
from lionloop.errors import LionloopError
from lionloop.rundir import RunDir
from lionloop.stores.pool import Pool

log = logging.getLogger(__name__)

FORMAT = 2  # index.meta.json version; files without it (index.ids.json era) are rebuilt
SAVE_ALWAYS_BELOW = 100_000  # vectors: saving a file this small after every add costs < 0.2 s
SAVE_TAIL = 0.1  # past that, save once the unsaved tail reaches this share of the index
RETRAIN_GROWTH = 4.0  # IVF: retrain once the pool is this many times the size it was trained on
CHUNK = 50_000  # vectors read from SQLite at a time (~75 MB at 384 dimensions)
IVF_MIN = 1_000  # fewer vectors than this cannot train useful lists: exact search until then


def to_labels(ids: Sequence[str]) -> np.ndarray:
    """FAISS labels (int64) of instruction ids: the id's 64 bits."""
    try:
        return np.array([int(i, 16) for i in ids], dtype=np.uint64).view(np.int64)
    except (ValueError, OverflowError) as err:
        raise LionloopError(f"embeddings: an instruction id is not 16 hex digits ({err})") from None


def to_id(label: int) -> str:
    return format(int(label) & 0xFFFF_FFFF_FFFF_FFFF, "016x")


def kind_for(settings: IndexConfig, n: int) -> str:
    kind = settings.kind if settings.kind != "auto" else ("ivf" if n > settings.above else "flat")
    return "flat" if kind == "ivf" and n < IVF_MIN else kind


def nlist_for(n: int) -> int:
    """IVF lists for n vectors: ~sqrt(n) (FAISS suggests 4-16 sqrt(n); sqrt keeps k-means short on
    a few CPU cores, and `nprobe` buys the recall back: docs/scaling.md)."""
    return int(min(65_536, max(16, round(math.sqrt(max(n, 1))))))


def new_index(kind: str, dim: int, settings: IndexConfig, n: int) -> Any:
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT  # inner product on normalised vectors = cosine
    if kind == "flat":
        return faiss.index_factory(dim, "IDMap,Flat", ip)
    if kind == "hnsw":
        index = faiss.index_factory(dim, f"IDMap,HNSW{settings.hnsw_m}", ip)
        faiss.downcast_index(index.index).hnsw.efConstruction = 40
        return index
    if kind == "ivf":
        index = faiss.index_factory(dim, f"IVF{nlist_for(n)},Flat", ip)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = 10  # k-means iterations: 10 move recall < 0.5% below FAISS's 25 here
        ivf.cp.max_points_per_centroid = 64
        return index
    raise LionloopError(f"dedup.index.kind: unknown index kind {kind!r}")


def kind_of(index: Any) -> str:
    import faiss

    if isinstance(index, faiss.IndexIVF) or faiss.try_extract_index_ivf(index) is not None:
        return "ivf"
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"


def tune(index: Any, settings: IndexConfig) -> None:
    """Search-time settings (not stored in the file's meaning: a config change applies at once)."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(settings.nprobe, ivf.nlist)
    elif isinstance(index, faiss.IndexIDMap):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = settings.ef_search


def _matrix(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)


class VectorIndex:
    """Normalised embeddings of every instruction of one model, searchable by cosine similarity.

    `readonly` (inspection commands; a live run owns the files) loads and catches up in memory
    and never writes.
    """

    def __init__(self, pool: Pool, run_dir: RunDir | Path, model: str, dim: int,
                 settings: IndexConfig | None = None, readonly: bool = False) -> None:
        self.pool = pool
        self.model = model
        self.dim = dim
        self.settings = settings or IndexConfig()
        self.readonly = readonly
        self.run_dir = run_dir = RunDir(run_dir)
        self.path = run_dir.index
        self.meta_path = run_dir.index_meta
        self.count = 0  # vectors held
        self.upto = 0  # every vector of the model with rowid <= upto is held
        self.trained_on = 0  # IVF: vectors when it was trained
        self.saved = 0  # vectors held by the file on disk
        self.source = ""  # how it was opened: "index.faiss", "+N caught up", "rebuilt"
        self.index = new_index("flat", dim, self.settings, 0)
        self._gpu: Any = None
        self._open()

    # -- opening ---------------------------------------------------------------------------------

    def _open(self) -> None:
        loaded = self._load()
        if loaded is None:
            self.rebuild()
            return
        self.index, meta = loaded
        self.count, self.upto, self.trained_on = meta["count"], meta["upto"], meta.get("trained_on", 0)
        self.saved = self.count
        self.source = self.path.name
        tail = self._catch_up()
        if self._stale():
            self.rebuild()
        elif tail:
            self.source += f" + {tail} caught up"
            self._maybe_save()
        self._to_gpu()

    def _load(self) -> tuple[Any, dict[str, Any]] | None:
        """The persisted index and its meta when they describe rows the table still holds, else None."""
        import faiss

        if not (self.path.exists() and self.meta_path.exists()):
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            if not (isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("model") == self.model
                    and meta.get("dim") == self.dim):
                log.info("FAISS index is of another model, size or format; rebuilding")
                return None
            count, _ = self.pool.embedding_span(self.model, upto=int(meta["upto"]))
            if count != int(meta["count"]):
                log.info("FAISS index does not match the stored embeddings (%d vs %d); rebuilding", meta["count"], count)
                return None
            index = faiss.read_index(str(self.path))
            if index.ntotal != count or index.d != self.dim:
                log.info("FAISS index file does not match its meta; rebuilding")
                return None
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            log.warning("FAISS index unreadable (%s); rebuilding from stored embeddings", err)
            return None
        tune(index, self.settings)
        return index, meta

    def _catch_up(self) -> int:
        """Add the vectors stored after the index was saved; returns how many."""
        added = 0
        for ids, blobs, last in self.pool.embedding_chunks(self.model, after=self.upto, size=CHUNK):
            self.index.add_with_ids(_matrix(blobs, self.dim), to_labels(ids))
            self.count += len(ids)
            self.upto = last
            added += len(ids)
        return added

    def _stale(self) -> bool:
        """Past a size threshold the kind changes; an IVF index far bigger than its training is retrained."""
        want, have = kind_for(self.settings, self.count), kind_of(self.index)
        if want != have:
            return True
        return have == "ivf" and self.count > RETRAIN_GROWTH * max(self.trained_on, 1)

    # -- building --------------------------------------------------------------------------------

    def rebuild(self) -> None:
        """A new index from every stored vector of the model (streamed: memory is the index itself)."""
        n, top = self.pool.embedding_span(self.model)
        kind = kind_for(self.settings, n)
        index = new_index(kind, self.dim, self.settings, n)
        if kind == "ivf":
            nlist = faiss_nlist(index)
            want = min(n, 64 * nlist)
            sample = [m for _, blobs, _ in self.pool.embedding_chunks(self.model, size=CHUNK, every=max(1, n // want))
                      for m in [_matrix(blobs, self.dim)]]
            x = np.concatenate(sample) if sample else np.zeros((0, self.dim), np.float32)
            log.info("training IVF%d on %d of %d vectors", nlist, len(x), n)
            index.train(x)
            del x, sample
        self.index = index
        tune(self.index, self.settings)
        self.count = self.upto = 0
        self.trained_on = n if kind == "ivf" else 0
        self._catch_up()
        self.source = f"rebuilt {'in memory ' if self.readonly else ''}from the embeddings table"
        if not self.readonly:
            self.save()
        self._gpu = None
        self._to_gpu()
        log.info("FAISS %s index of %d vectors (rowid <= %d)", kind, self.count, top)

    def _to_gpu(self) -> None:
        import faiss

        if not self.settings.gpu or kind_of(self.index) == "hnsw" or not hasattr(faiss, "get_num_gpus"):
            return
        if faiss.get_num_gpus() > 0:  # not exercised here: no GPU on the machine the tests ran on
            self._gpu = faiss.index_cpu_to_all_gpus(self.index)

    # -- persisting ------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the index and its meta (each atomically; the meta last: it vouches for the file)."""
        import faiss

        if self.readonly:
            return
        tmp = self.path.with_suffix(".faiss.tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, self.path)
        meta = {"format": FORMAT, "model": self.model, "dim": self.dim, "kind": kind_of(self.index),
                "count": self.count, "upto": self.upto, "trained_on": self.trained_on}
        tmp_meta = self.meta_path.with_suffix(".json.tmp")
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, self.meta_path)
        self.saved = self.count
        old_ids = self.run_dir.index_ids  # the previous format's id list: no longer read
        if old_ids.exists():
            old_ids.unlink()

    def _maybe_save(self) -> None:
        if self.count < SAVE_ALWAYS_BELOW or self.count - self.saved >= SAVE_TAIL * self.count:
            self.save()

    def flush(self) -> None:
        """Save what is not saved yet (end of a run: the next start needs no catch-up)."""
        if self.count != self.saved:
            self.save()

    # -- using -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.count

    @property
    def kind(self) -> str:
        return kind_of(self.index)

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add vectors already committed to the `embeddings` table (the caller's last commit)."""
        if not ids:
            return
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        labels = to_labels(ids)
        self.index.add_with_ids(x, labels)
        if self._gpu is not None:
            self._gpu.add_with_ids(x, labels)
        self.count += len(ids)
        n, top = self.pool.embedding_span(self.model)
        if n == self.count:
            self.upto = top
        else:  # the caller added vectors the table does not hold (or others were stored meanwhile)
            log.info("FAISS index and embeddings table disagree (%d vs %d); rebuilding", self.count, n)
            self.rebuild()
            return
        if self._stale():
            self.rebuild()
        else:
            self._maybe_save()

    def search(self, vectors: np.ndarray, k: int = 1) -> tuple[np.ndarray, list[list[str | None]]]:
        """Top-k cosine similarities and ids for each query vector."""
        if self.count == 0 or len(vectors) == 0:
            return np.zeros((len(vectors), k), dtype=np.float32), [[None] * k for _ in range(len(vectors))]
        index = self._gpu if self._gpu is not None else self.index
        sims, labels = index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        names = [[to_id(j) if j != -1 else None for j in row] for row in labels]
        return sims, names


def faiss_nlist(index: Any) -> int:
    import faiss

    return int(faiss.extract_index_ivf(index).nlist)
