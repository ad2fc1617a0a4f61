from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lionloop.config import DedupConfig
from lionloop.embedding import Embedder, embed_text
from lionloop.loop.dedup import DUP_BATCH, DUP_EVAL, DUP_POOL, deduplicate
from lionloop.records import Instruction
from lionloop.stores.pool import Pool
from lionloop.stores.vectors import VectorIndex


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(DedupConfig())


def test_embeddings_are_normalised_and_semantic(embedder: Embedder) -> None:
    v = embedder.encode(["What is the capital of France?", "Name the capital city of France.", "How do I bake bread?"])
    assert v.shape == (3, embedder.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > 0.8 > v[0] @ v[2]


def _index(tmp_path: Path, embedder: Embedder, items: list[Instruction]) -> tuple[Pool, VectorIndex]:
    pool = Pool(tmp_path / "pool.sqlite")
    pool.add_instructions(items)
    vecs = embedder.encode([embed_text(i) for i in items])
    pool.add_embeddings(embedder.name, {i.id: v.tobytes() for i, v in zip(items, vecs, strict=True)})
    return pool, VectorIndex(pool, tmp_path, embedder.name, embedder.dim)


def test_rejects_pool_eval_and_batch_duplicates(tmp_path: Path, embedder: Embedder) -> None:
    pool_items = [
        Instruction(text="What is the capital of France?", task="geo"),
        Instruction(text="Explain how photosynthesis works in plants.", task="bio", split="eval"),
    ]
    pool, index = _index(tmp_path, embedder, pool_items)
    cands = [
        Instruction(text="What is the capital of France?", task="geo", origin="lion"),  # exact pool dup
        Instruction(text="Explain how photosynthesis works in plants", task="bio", origin="lion"),  # eval guard
        Instruction(text="Write a haiku about autumn leaves.", task="poem", origin="lion"),
        Instruction(text="Write a haiku about autumn leaves!", task="poem", origin="lion"),  # batch twin
        Instruction(text="How many bones are in the human hand?", task="bio", origin="lion"),
    ]
    vecs = embedder.encode([embed_text(c) for c in cands])
    splits = {i.id: i.split for i in pool.instructions()}
    res = deduplicate(cands, vecs, index.search, splits.get, threshold=0.9)
    assert res.rejected == {0: DUP_POOL, 1: DUP_EVAL, 3: DUP_BATCH}
    assert res.accepted == [2, 4]
    assert res.vectors.shape == (2, embedder.dim)
    assert res.counts() == {DUP_POOL: 1, DUP_EVAL: 1, DUP_BATCH: 1}
    # Past any similarity threshold, an instruction already stored is still rejected.
    res_loose = deduplicate(cands, vecs, index.search, splits.get, threshold=1.01)
    assert res_loose.rejected == {0: DUP_POOL} and len(res_loose.accepted) == 4
    # A looser pool threshold for one candidate lets a near-twin of a pool item through, but the
    # eval guard keeps the run's threshold.
    near_pool = Instruction(text="What is the capital of France", task="geo2", origin="disco")
    near_eval = Instruction(text="Explain how photosynthesis works in plants", task="bio", origin="disco")
    v2 = embedder.encode([embed_text(near_pool), embed_text(near_eval)])
    assert v2[0] @ embedder.encode(["What is the capital of France?"])[0] < 0.999
    own = deduplicate([near_pool, near_eval], v2, index.search, splits.get, threshold=0.9, pool_thresholds=[0.999, 0.999])
    assert own.accepted == [0] and own.rejected == {1: DUP_EVAL}
    # The same instruction proposed twice in one round: the second copy is a batch duplicate.
    twice = deduplicate([cands[2], cands[2]], vecs[[2, 2]], index.search, splits.get, threshold=1.01)
    assert twice.accepted == [0] and twice.rejected == {1: DUP_BATCH}


def test_index_persists_and_rebuilds_when_stale(tmp_path: Path, embedder: Embedder) -> None:
    items = [Instruction(text=f"instruction number {i}", task="t") for i in range(5)]
    pool, index = _index(tmp_path, embedder, items)
    assert len(index) == 5 and (tmp_path / "index.faiss").exists()
    # Reload: read from disk.
    assert len(VectorIndex(pool, tmp_path, embedder.name, embedder.dim)) == 5
    # A crash between the embeddings commit and the index save: the index is rebuilt.
    extra = Instruction(text="one more", task="t")
    pool.add_instructions([extra])
    pool.add_embeddings(embedder.name, {extra.id: embedder.encode(["one more"])[0].tobytes()})
    again = VectorIndex(pool, tmp_path, embedder.name, embedder.dim)
    assert len(again) == 6
    sims, names = again.search(embedder.encode(["one more"]), k=1)
    assert names[0][0] == extra.id and sims[0][0] > 0.99
    # A corrupt index file is rebuilt, not fatal.
    (tmp_path / "index.faiss").write_bytes(b"garbage")
    assert len(VectorIndex(pool, tmp_path, embedder.name, embedder.dim)) == 6
