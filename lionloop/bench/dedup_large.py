"""Dedup at a million: the run's approximate FAISS index (IVF, HNSW) against exact search and
against Lion's ROUGE-L, for a pool too large to embed here.

Embedding a million instructions with MiniLM on 2 shared CPU cores takes hours, so the pool's
vectors are synthetic (`lionloop.bench.scale.Synth`: 384-d, normalised, topic clusters) and a third
of the candidates are re-wordings of pool instructions (cosine 0.93-0.995): the near-duplicates
the index must find. What the real model costs is measured on a sample: its throughput on the
grammar's instructions, and the candidates' own embedding (paid every round). ROUGE-L cannot run
against a million texts here either: it is timed on a sample of candidates against a slice of the
pool and extrapolated linearly in both (it compares every candidate with every pool text).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lionloop.bench.common import machine_line, md_table

DIM = 384


def _pool_vectors(n: int, seed: int, spread: float = 0.8) -> tuple[Any, np.ndarray]:
    from lionloop.bench.scale import Synth

    synth = Synth(seed=seed, spread=spread)
    x = np.empty((n, DIM), dtype=np.float32)
    for k in range(0, n, 100_000):  # in chunks: the float64 temporaries stay small
        x[k : k + 100_000] = synth.fresh(min(100_000, n - k))
    return synth, x


def _candidates(synth: Any, base: np.ndarray, n: int, dup_share: float) -> tuple[np.ndarray, np.ndarray]:
    """n candidate vectors: `dup_share` of them re-word a random pool vector, the rest are fresh."""
    rng = synth.rng
    q = synth.fresh(n)
    dups = rng.random(n) < dup_share
    src = rng.integers(0, len(base), int(dups.sum()))
    noise = rng.uniform(0.1, 0.4, len(src))
    near = base[src] + (noise[:, None] / np.sqrt(DIM)) * rng.standard_normal((len(src), DIM)).astype(np.float32)
    q[dups] = near / np.linalg.norm(near, axis=1, keepdims=True)
    return q, dups


def _rss() -> int:
    from lionloop.bench.scale import _rss as rss

    return rss()[0]


def build_index(kind: str, base: np.ndarray, settings: Any) -> tuple[Any, float]:
    """The index the run would hold for this pool (`lionloop.stores.vectors`' own constructor and
    search settings; labels are row numbers here), built and filled; returns it and the seconds."""
    from lionloop.stores.vectors import faiss_nlist, new_index, tune

    t0 = time.perf_counter()
    index = new_index(kind, DIM, settings, len(base))
    if kind == "ivf":  # trained as VectorIndex.rebuild trains it: on 64 vectors per list
        step = max(1, len(base) // (64 * faiss_nlist(index)))
        index.train(base[::step])
    index.add_with_ids(base, np.arange(len(base), dtype=np.int64)) if kind == "hnsw" else index.add(base)
    tune(index, settings)
    return index, time.perf_counter() - t0


def _index_bytes(index: Any) -> int:
    import faiss

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size


def _figures(sims: np.ndarray, labels: np.ndarray, exact_sims: np.ndarray, exact_labels: np.ndarray,
             threshold: float) -> dict[str, Any]:
    """recall@1 against exact search, and dedup's question: of the candidates exact search calls
    duplicates, how many the index calls so too (and how many it calls so wrongly)."""
    n = len(exact_labels)
    is_dup = exact_sims[:, 0] >= threshold
    found = sims[:n, 0] >= threshold
    return {"recall1": float((labels[:n, 0] == exact_labels[:, 0]).mean()), "dups": int(is_dup.sum()),
            "dup_recall": float(found[is_dup].mean()) if is_dup.any() else float("nan"),
            "false_dups": int((found & ~is_dup).sum())}


def measure_index(kind: str, base: np.ndarray, queries: np.ndarray, recall_n: int, threshold: float,
                  settings: Any, nprobes: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """One row for the index with the run's settings, then one per extra IVF `nprobes` (same index)."""
    import faiss

    from lionloop.loop.dedup import NEIGHBOURS

    before = _rss()
    index, build_s = build_index(kind, base, settings)
    grown = _rss() - before
    t0 = time.perf_counter()
    sims, labels = index.search(queries, NEIGHBOURS)  # what curate asks: the 4 nearest of each candidate
    search_s = time.perf_counter() - t0
    sub = queries[:recall_n]
    t0 = time.perf_counter()
    exact_sims, exact_labels = faiss.knn(sub, base, 1, metric=faiss.METRIC_INNER_PRODUCT)
    exact_s = time.perf_counter() - t0
    fresh = exact_sims[:, 0] < threshold
    row = {
        "kind": kind, "n": len(base), "build_s": build_s, "search_s": search_s, "queries": len(queries),
        # How crowded the neighbourhoods are: the nearest pool item's cosine for candidates that are no duplicate.
        "nn_cos": float(np.median(exact_sims[fresh, 0])) if fresh.any() else float("nan"),
        "recall_n": len(sub), **_figures(sims, labels, exact_sims, exact_labels, threshold), "exact_s": exact_s,
        "bytes": _index_bytes(index), "rss_grown": grown,
        "nlist": int(faiss.extract_index_ivf(index).nlist) if kind == "ivf" else None,
        "nprobe": settings.nprobe if kind == "ivf" else None,
        "ef_search": settings.ef_search if kind == "hnsw" else None, "hnsw_m": settings.hnsw_m if kind == "hnsw" else None,
    }
    rows = [row]
    for p in nprobes if kind == "ivf" else ():
        faiss.extract_index_ivf(index).nprobe = p
        t0 = time.perf_counter()
        sims, labels = index.search(queries, NEIGHBOURS)
        rows.append({**row, "nprobe": p, "search_s": time.perf_counter() - t0, "build_s": 0.0,
                     **_figures(sims, labels, exact_sims, exact_labels, threshold)})
    del index
    return rows


def embedding_cost(n_cands: int, sample: int, seed: int) -> dict[str, Any]:
    """MiniLM on this machine: the candidates' embedding (timed for all of them) and the pool's
    throughput (the same texts: what embedding a million would take, extrapolated)."""
    from lionloop.bench.dedup import TOPICS, _extra_topics, corpus
    from lionloop.config import DedupConfig
    from lionloop.embedding import Embedder

    rng = random.Random(seed)
    texts = corpus(n_cands, rng, TOPICS + _extra_topics(260, rng))
    embedder = Embedder(DedupConfig())
    embedder.encode(["warm up"])
    t0 = time.perf_counter()
    embedder.encode(texts[:sample])
    sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    embedder.encode(texts)
    cands_s = time.perf_counter() - t0
    return {"embed_cands_s": cands_s, "embed_sample": sample, "embed_sample_s": sample_s,
            "per_s": n_cands / cands_s, "texts": texts}


def rouge_cost(texts: list[str], pool_slice: int, sample: int, seed: int) -> dict[str, Any]:
    """ROUGE-L (Lion's filter) for `sample` candidates against `pool_slice` pool texts."""
    from lionloop.bench.dedup import TOPICS, _extra_topics, corpus, rouge_dups

    rng = random.Random(seed + 1)
    pool = corpus(pool_slice, rng, TOPICS + _extra_topics(260, rng))
    _, seconds = rouge_dups(texts[:sample], pool)
    return {"rouge_sample": sample, "rouge_pool": pool_slice, "rouge_s": seconds}


def run(pool_size: int = 1_000_000, n_cands: int = 6000, recall_n: int = 2000, hnsw_pool: int = 200_000,
        rouge_sample: int = 20, rouge_pool: int = 50_000, embed_sample: int = 1000, dup_share: float = 1 / 3,
        diffuse: float = 1.6, nprobes: tuple[int, ...] = (32, 64, 128), seed: int = 0) -> dict[str, Any]:
    """`diffuse` (0: skip) repeats the large pool's IVF measurement with wider topics (noise
    `diffuse` instead of 0.8 around each centre): neighbourhoods IVF's lists cut through more often;
    and searches that index again with each of `nprobes` lists (the recall/time knob)."""
    from lionloop.config import DedupConfig, IndexConfig

    settings = IndexConfig()
    threshold = DedupConfig().threshold
    synth, base = _pool_vectors(pool_size, seed)
    queries, _ = _candidates(synth, base, n_cands, dup_share)
    out: dict[str, Any] = {"pool": pool_size, "n_cands": n_cands, "dup_share": dup_share, "threshold": threshold,
                           "indexes": []}
    out["indexes"] += measure_index("ivf", base, queries, recall_n, threshold, settings)
    if hnsw_pool:
        sub = base[:hnsw_pool]
        q, _ = _candidates(synth, sub, n_cands, dup_share)
        out["indexes"] += measure_index("hnsw", sub, q, recall_n, threshold, settings)
        out["indexes"] += measure_index("ivf", sub, q, recall_n, threshold, settings)
    del base
    if diffuse:
        synth, base = _pool_vectors(pool_size, seed + 7, spread=diffuse)
        q, _ = _candidates(synth, base, n_cands, dup_share)
        out["indexes"] += [{**row, "spread": diffuse}
                           for row in measure_index("ivf", base, q, recall_n, threshold, settings, nprobes)]
        del base
    emb = embedding_cost(n_cands, embed_sample, seed)
    out.update({k: v for k, v in emb.items() if k != "texts"})
    out.update(rouge_cost(emb["texts"], rouge_pool, rouge_sample, seed))
    out["rouge_est_s"] = out["rouge_s"] * (pool_size / rouge_pool) * (n_cands / rouge_sample)
    return out


def report(d: dict[str, Any], command: str) -> str:
    ivf = d["indexes"][0]
    ours = d["embed_cands_s"] + ivf["search_s"]
    speedup = d["rouge_est_s"] / ours
    pool_embed_h = d["pool"] / d["per_s"] / 3600
    rows = []
    for x in d["indexes"]:
        setting = (f"IVF{x['nlist']}, nprobe {x['nprobe']}" if x["kind"] == "ivf"
                   else f"HNSW{x['hnsw_m']}, efSearch {x['ef_search']}")
        rows.append([f"{x['n']:,}", f"{x.get('spread', 0.8)} ({x['nn_cos']:.2f})", setting, f"{x['build_s']:.0f}" if x["build_s"] else "(same)", f"{x['search_s']:.2f}",
                     f"{x['exact_s'] * x['queries'] / x['recall_n']:.0f}",
                     f"**{x['recall1']:.3f}**", f"{x['dup_recall']:.3f} of {x['dups']:,}", x["false_dups"],
                     f"{x['bytes'] / 2**20:,.0f}", f"{x['rss_grown'] / 2**20:,.0f}"])
    return "\n".join([
        "### 2b. Dedup against a million instructions",
        "",
        f"Command: `{command}`. Machine: {machine_line()}.",
        "",
        f"{d['n_cands']:,} candidates against a pool of {d['pool']:,}. Embedding a million instructions with MiniLM",
        "on 2 shared CPU cores takes hours, so the pool's vectors are synthetic (384-d, normalised, in a",
        f"few thousand topic clusters) and {100 * d['dup_share']:.0f}% of the candidates are re-wordings of pool",
        "instructions (cosine 0.93-0.995): the near-duplicates the index must find. The indexes are built",
        "with the run's own constructor and settings (`lionloop.stores.vectors`, `dedup.index` defaults);",
        "recall is against exact search (`faiss.knn`) on the first",
        f"{ivf['recall_n']:,} candidates. “Duplicates found” = of the candidates exact search puts at cosine ≥",
        f"{d['threshold']} of a pool item, the share the index does too (dedup's own question). Topic spread: the",
        "noise around each of the 2,048 topic centres (0.8: two instructions of a topic at cosine ~0.6;",
        "1.6: ~0.3, neighbourhoods the IVF lists cut through); in brackets the median cosine of a",
        "non-duplicate candidate's nearest pool item, exact. Real MiniLM neighbourhoods of instructions",
        "were not measured at this size (the pool cannot be embedded here).",
        "",
        md_table(["pool", "topic spread (nearest cos.)", "index", "build s (once)", f"search {d['n_cands']:,} s", "exact search s", "recall@1",
                  "duplicates found", "false duplicates", "index MB", "RSS growth MB"], rows),
        "",
        f"Time for {d['n_cands']:,} candidates against {d['pool']:,}: embedding them with MiniLM "
        f"{d['embed_cands_s']:.1f} s ({d['per_s']:.0f}/s) + IVF search {ivf['search_s']:.2f} s = **{ours:.1f} s**. "
        f"Lion's ROUGE-L: measured {d['rouge_sample']} candidates × {d['rouge_pool']:,} pool texts in "
        f"{d['rouge_s']:.0f} s (2 processes), extrapolated linearly to {d['n_cands']:,} × {d['pool']:,}: "
        f"**{d['rouge_est_s'] / 3600:,.0f} h** ({d['rouge_est_s']:,.0f} s). Speed-up **{speedup:,.0f}×** (target ≥ 1000×).",
        f"Embedding the pool itself (once, as instructions enter; never by a round) would take "
        f"{pool_embed_h:.1f} h here at the measured {d['per_s']:.0f} instructions/s: not run.",
    ])
