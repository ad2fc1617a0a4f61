"""The FAISS index past a size threshold: IVF or HNSW, persisted, caught up and rebuilt from the
stored vectors, with recall measured against exact search. Vectors are synthetic (a Gaussian
mixture on the unit sphere): what is tested is the index, not the embedding model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lionloop.config import IndexConfig
from lionloop.records import Instruction
from lionloop.stores.pool import Pool
from lionloop.stores.vectors import VectorIndex, to_id, to_labels

MODEL = "synthetic"
DIM = 32


def mixture(n: int, seed: int, centres: int = 50) -> np.ndarray:
    """n points of one fixed mixture (the same centres for every seed: queries and pool alike)."""
    c = np.random.default_rng(0).standard_normal((centres, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    x = c[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def store(pool: Pool, start: int, vectors: np.ndarray) -> list[str]:
    items = [Instruction(text=f"instruction {start + i}", task="t") for i in range(len(vectors))]
    pool.add_instructions(items)
    pool.add_embeddings(MODEL, {i.id: v.tobytes() for i, v in zip(items, vectors, strict=True)})
    return [i.id for i in items]


def exact_top1(base: np.ndarray, ids: list[str], queries: np.ndarray) -> list[str]:
    return [ids[j] for j in np.argmax(queries @ base.T, axis=1)]


def recall(index: VectorIndex, base: np.ndarray, ids: list[str], queries: np.ndarray) -> float:
    _, names = index.search(queries, 1)
    truth = exact_top1(base, ids, queries)
    return float(np.mean([n[0] == t for n, t in zip(names, truth, strict=True)]))


def test_labels_are_the_ids_themselves() -> None:
    ids = ["0000000000000000", "ffffffffffffffff"[:15] + "e", "8000000000000000", "0123456789abcdef"]
    assert [to_id(x) for x in to_labels(ids)] == ids


def test_flat_below_the_threshold_then_ivf_past_it(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool.sqlite")
    settings = IndexConfig(above=2_000, nprobe=8)
    base = mixture(6_000, 0)
    ids = store(pool, 0, base[:1_500])
    index = VectorIndex(pool, tmp_path, MODEL, DIM, settings)
    assert index.kind == "flat" and len(index) == 1_500
    assert recall(index, base[:1_500], ids, mixture(200, 1)) == 1.0  # exact
    # The pool grows past `above` through the writer's add: the index becomes IVF, trained on all.
    more = store(pool, 1_500, base[1_500:])
    index.add(more, base[1_500:])
    assert index.kind == "ivf" and len(index) == 6_000 and index.trained_on == 6_000
    r = recall(index, base, ids + more, mixture(500, 2))
    assert r >= 0.95, r
    meta = json.loads((tmp_path / "index.meta.json").read_text())
    assert meta["kind"] == "ivf" and meta["count"] == 6_000
    # Reopened: the file is loaded as it is (no retraining), with the settings of the config.
    again = VectorIndex(pool, tmp_path, MODEL, DIM, settings.model_copy(update={"nprobe": 1}))
    assert again.source == "index.faiss" and again.kind == "ivf"
    assert recall(again, base, ids + more, mixture(500, 2)) < r  # nprobe applies at once


def test_a_crash_before_the_index_save_costs_a_catch_up_not_a_rebuild(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool.sqlite")
    settings = IndexConfig(kind="ivf", nprobe=16)
    base = mixture(3_000, 3)
    ids = store(pool, 0, base[:2_000])
    VectorIndex(pool, tmp_path, MODEL, DIM, settings)
    # Vectors committed to the table, then a crash before the index heard of them.
    tail = store(pool, 2_000, base[2_000:])
    before = (tmp_path / "index.faiss").stat().st_mtime_ns
    reader = VectorIndex(pool, tmp_path, MODEL, DIM, settings, readonly=True)
    assert reader.source == "index.faiss + 1000 caught up" and len(reader) == 3_000
    assert (tmp_path / "index.faiss").stat().st_mtime_ns == before  # a reader never writes
    _, names = reader.search(base[2_500:2_501], 1)
    assert names[0][0] == tail[500]
    writer = VectorIndex(pool, tmp_path, MODEL, DIM, settings)
    assert writer.source.endswith("1000 caught up") and writer.trained_on == 2_000  # same training
    assert json.loads((tmp_path / "index.meta.json").read_text())["count"] == 3_000
    assert recall(writer, base, ids + tail, mixture(300, 4)) >= 0.95


def test_ivf_is_retrained_once_the_pool_has_grown_fourfold(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool.sqlite")
    settings = IndexConfig(kind="ivf")
    base = mixture(5_000, 5)
    ids = store(pool, 0, base[:1_000])
    index = VectorIndex(pool, tmp_path, MODEL, DIM, settings)
    assert index.trained_on == 1_000
    for k in range(1_000, 5_000, 1_000):
        new = store(pool, k, base[k : k + 1_000])
        index.add(new, base[k : k + 1_000])
        ids += new
    assert index.trained_on == 5_000  # 4x growth passed: retrained on everything stored
    assert recall(index, base, ids, mixture(300, 6)) >= 0.95


def test_hnsw_when_asked(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool.sqlite")
    base = mixture(3_000, 7)
    ids = store(pool, 0, base)
    index = VectorIndex(pool, tmp_path, MODEL, DIM, IndexConfig(kind="hnsw", ef_search=64))
    assert index.kind == "hnsw"
    assert recall(index, base, ids, mixture(300, 8)) >= 0.95


def test_anything_that_does_not_match_the_table_is_rebuilt(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool.sqlite")
    base = mixture(1_200, 9)
    ids = store(pool, 0, base)
    VectorIndex(pool, tmp_path, MODEL, DIM)
    meta_path = tmp_path / "index.meta.json"
    meta = json.loads(meta_path.read_text())
    # A row replaced under the index (its rowid changes): the count up to the saved rowid drops.
    pool.add_embeddings(MODEL, {ids[0]: base[0].tobytes()})
    assert VectorIndex(pool, tmp_path, MODEL, DIM).source.startswith("rebuilt")
    # Another model's index, a damaged meta, a damaged file, an old-format run: rebuilt.
    for broken in ({**meta, "model": "other"}, "not json", {**meta, "format": 1}):
        VectorIndex(pool, tmp_path, MODEL, DIM)
        meta_path.write_text(broken if isinstance(broken, str) else json.dumps(broken))
        again = VectorIndex(pool, tmp_path, MODEL, DIM)
        assert again.source.startswith("rebuilt") and len(again) == 1_200
    (tmp_path / "index.faiss").write_bytes(b"garbage")
    assert VectorIndex(pool, tmp_path, MODEL, DIM).source.startswith("rebuilt")
    (tmp_path / "index.ids.json").write_text("[]")
    (tmp_path / "index.meta.json").unlink()
    assert VectorIndex(pool, tmp_path, MODEL, DIM).source.startswith("rebuilt")
    assert not (tmp_path / "index.ids.json").exists()


def test_a_large_index_is_saved_when_a_tenth_is_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lionloop.stores.vectors as vectors

    monkeypatch.setattr(vectors, "SAVE_ALWAYS_BELOW", 100)
    pool = Pool(tmp_path / "pool.sqlite")
    base = mixture(1_300, 10)
    store(pool, 0, base[:1_000])
    index = VectorIndex(pool, tmp_path, MODEL, DIM)
    saved = lambda: json.loads((tmp_path / "index.meta.json").read_text())["count"]  # noqa: E731
    for k in range(1_000, 1_250, 50):
        index.add(store(pool, k, base[k : k + 50]), base[k : k + 50])
    # 1000 saved; at 1050 and 1100 the tail is under a tenth; saved at 1150 (150 >= 115); at 1200
    # and 1250 the tail (50, 100) is under a tenth again.
    assert saved() == 1_150 and len(index) == 1_250
    assert VectorIndex(pool, tmp_path, MODEL, DIM, readonly=True).source == "index.faiss + 100 caught up"
    index.flush()
    assert saved() == 1_250
