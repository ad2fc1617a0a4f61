"""Deduplication: embeddings + FAISS against the pool, the eval split and the batch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lionloop.records import Instruction

log = logging.getLogger(__name__)

# Reasons, in the order they are checked.
DUP_POOL = "dup_pool"  # near an instruction already in the train/cache pool
DUP_EVAL = "dup_eval"  # near a held-out eval instruction: the contamination guard
DUP_BATCH = "dup_batch"  # near another candidate accepted earlier in the same round


@dataclass
class DedupResult:
    """Calls by position in the candidate list (the same instruction may be proposed twice)."""

    accepted: list[int] = field(default_factory=list)  # positions kept, in order
    vectors: np.ndarray | None = None  # rows align with `accepted`
    rejected: dict[int, str] = field(default_factory=dict)  # position -> reason

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for reason in self.rejected.values():
            out[reason] = out.get(reason, 0) + 1
        return out


NEIGHBOURS = 4  # enough to see an eval item behind a pool parent a looser threshold lets through


def batch_neighbours(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """For each candidate, the earlier candidates of the batch within reach of `threshold`.

    One range search over the batch instead of comparing each candidate with every one kept
    before it (that copied the kept vectors for each candidate: quadratic time and memory traffic,
    ~minutes at 10k candidates). The margin keeps borderline pairs; the caller decides on the
    exact similarity, computed as before.
    """
    import faiss

    n = len(vectors)
    out: list[list[int]] = [[] for _ in range(n)]
    if n < 2:
        return out
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    lims, _, found = index.range_search(x, float(threshold) - 1e-3)
    for i in range(n):
        out[i] = sorted(int(j) for j in found[lims[i] : lims[i + 1]] if j < i)
    return out


def deduplicate(
    candidates: Sequence[Instruction],
    vectors: np.ndarray,
    index_search: Callable[..., tuple[np.ndarray, list[list[str | None]]]],
    split_of: Callable[[str], str | None],
    threshold: float,
    pool_thresholds: Sequence[float | None] | None = None,
) -> DedupResult:
    """Keep candidates whose pool/eval neighbours and earlier batch mates are below threshold.

    `pool_thresholds` (one per candidate, None = `threshold`) loosens the pool and batch checks
    for generators whose candidates are near-duplicates by design; the eval guard always uses
    `threshold`. First come, first kept within the batch: generators' order decides which twin
    survives. An instruction already stored is rejected whatever the threshold.
    """
    res = DedupResult()
    sims, names = index_search(vectors, NEIGHBOURS)
    lowest = min([threshold, *[t for t in (pool_thresholds or []) if t is not None]])
    near = batch_neighbours(vectors, lowest)
    kept: set[int] = set()
    seen_ids: dict[str, int] = {}
    for i, cand in enumerate(candidates):
        cid = cand.id
        if cid in seen_ids:
            res.rejected[i] = DUP_BATCH
            continue
        seen_ids[cid] = i
        own_split = split_of(cid)
        if own_split is not None:  # the very same instruction is already stored
            res.rejected[i] = DUP_EVAL if own_split == "eval" else DUP_POOL
            continue
        own = threshold if pool_thresholds is None or pool_thresholds[i] is None else pool_thresholds[i]
        hit = None
        for nb, sim in zip(names[i], sims[i], strict=True):
            if nb is None:
                continue
            is_eval = split_of(nb) == "eval"
            if float(sim) >= (threshold if is_eval else own):
                hit = DUP_EVAL if is_eval else DUP_POOL
                break
        if hit is not None:
            res.rejected[i] = hit
            continue
        mates = [j for j in near[i] if j in kept]
        if mates and float((vectors[mates] @ vectors[i]).max()) >= own:
            res.rejected[i] = DUP_BATCH
            continue
        res.accepted.append(i)
        kept.add(i)
    res.vectors = vectors[res.accepted] if res.accepted else np.zeros((0, vectors.shape[1]), np.float32)
    return res
