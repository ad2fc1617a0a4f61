"""How much of a round's candidates each group of the pool gets: the allocation Lion lacks.

Lion's referee says *which* instructions are hard; left alone, the generators then pour the round
into whatever the student fails most, learnable or not (on the offline pack, half the budget went
to multi-digit addition, which the tiny student never learns). Here each group of the pool — a task,
or an embedding cluster where instructions carry no task label — gets a share of the round by its
**learning progress**: how much its accuracy on the cache pool moved per example spent on it in
recent rounds (Teacher-Student Curriculum Learning, Matiisen et al. 2017; Graves et al. 2017), plus
an exploration share spread evenly so a stalled group is retried now and then.

Progress is measured on the cache pool only (instructions the student never trains on), from the
referee's verdicts: held-out eval accuracy never steers generation, or the eval set would leak into
the data. The magnitude of a change counts (as in Matiisen et al.): a group being forgotten is
worth training again.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lionloop.config import AllocationConfig
from lionloop.loop.runtime import Runtime
from lionloop.records import Instruction

log = logging.getLogger(__name__)

NO_GROUP = "-"  # instructions with neither a task label nor a stored vector


@dataclass
class Allocation:
    """One round's allocation: each group's share of the candidates and the figures behind it."""

    group_by: str  # "task" or "cluster"
    shares: dict[str, float]
    figures: dict[str, dict[str, Any]]  # per group: acc, judged, spent, progress, share
    groups: dict[str, str] = field(default_factory=dict)  # instruction id -> group

    def group_of(self, ins: Instruction) -> str:
        return self.groups.get(ins.id) or ins.task or NO_GROUP

    def metrics(self) -> dict[str, Any]:
        return {"group_by": self.group_by, "groups": self.figures}


# -- groups ----------------------------------------------------------------------------------------


def group_mode(acfg: AllocationConfig, pool: list[Instruction]) -> str:
    if acfg.group_by != "auto":
        return acfg.group_by
    return "task" if pool and all(i.task for i in pool) else "cluster"


def pool_groups(rt: Runtime, acfg: AllocationConfig) -> tuple[str, dict[str, str]]:
    """(group_by, instruction id -> group) for the train and cache pools."""
    pool = rt.pool.instructions(["train", "cache"])
    mode = group_mode(acfg, pool)
    if mode == "task":
        return mode, {i.id: i.task or NO_GROUP for i in pool}
    return mode, clusters(rt, pool, acfg.clusters)


def clusters(rt: Runtime, pool: list[Instruction], k: int) -> dict[str, str]:
    """Each instruction's nearest of k centroids, fitted (FAISS k-means, seeded) on the vectors of
    the bootstrap pool: the same centroids every round, so a cluster's accuracy is comparable
    across rounds."""
    import faiss

    stored = dict(rt.pool.embeddings(rt.embedder.name))
    ids = [i.id for i in pool if i.id in stored]
    if not ids:
        return {}
    vecs = np.stack([np.frombuffer(stored[i], dtype=np.float32) for i in ids])
    base = np.array([k_ for k_, i in enumerate(pool) if i.id in stored and i.round_born == 0])
    fit = vecs[base] if len(base) else vecs
    k = max(1, min(k, len(fit) // 4))  # faiss wants a few points per centroid
    km = faiss.Kmeans(vecs.shape[1], k, niter=20, seed=rt.cfg.seed, verbose=False)
    km.train(np.ascontiguousarray(fit))
    _, nearest = km.index.search(np.ascontiguousarray(vecs), 1)
    return {i: f"c{int(n[0])}" for i, n in zip(ids, nearest, strict=True)}


# -- measurements ------------------------------------------------------------------------------------


def cache_accuracy(rt: Runtime, r: int, groups: dict[str, str]) -> dict[str, tuple[float, int]]:
    """Per group: (share of its judged cache-pool instructions the referee found easy, how many),
    in round r. Cache instructions are never trained on: a generalisation probe, not memory."""
    cache = {i.id for i in rt.pool.instructions(["cache"])}
    easy: Counter[str] = Counter()
    judged: Counter[str] = Counter()
    for v in rt.pool.verdicts(r):
        if v.instruction_id in cache and v.hard is not None:
            g = groups.get(v.instruction_id, NO_GROUP)
            judged[g] += 1
            easy[g] += not v.hard
    return {g: (easy[g] / n, n) for g, n in judged.items()}


def spent(rt: Runtime, r: int, groups: dict[str, str]) -> dict[str, int]:
    """Per group: new train instructions accepted in round r (the group that paid for each)."""
    rows = rt.pool.query(
        "SELECT id, task, json_extract(meta, '$.group') AS g FROM instructions"
        " WHERE round_born = ? AND origin != 'seed' AND split = 'train'", (r,))
    out: Counter[str] = Counter()
    for row in rows:
        out[row["g"] or groups.get(row["id"]) or row["task"] or NO_GROUP] += 1
    return dict(out)


def progress(accs: list[dict[str, tuple[float, int]]], spends: list[dict[str, int]],
             window: int) -> dict[str, float]:
    """Per group: mean |accuracy change| per example spent, over the last `window` round pairs.

    `accs[k]` is round k+1's cache accuracy by group, `spends[k]` what round k+1 bought (trained on
    in round k+2). A group that got few examples is not credited with a jump it did not pay for:
    each change is divided by its examples plus a pseudo-count of the mean spend per group.
    """
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    pairs = [(k - 1, k) for k in range(1, len(accs)) if accs[k] and accs[k - 1]][-window:]
    for a, b in pairs:
        spend = spends[a] if a < len(spends) else {}
        prior = sum(spend.values()) / max(1, len(accs[b]))
        for g, (acc, _) in accs[b].items():
            if g in accs[a]:
                sums[g] += abs(acc - accs[a][g][0]) / (spend.get(g, 0) + prior + 1)
                counts[g] += 1
    return {g: sums[g] / counts[g] for g in sums}


# -- shares --------------------------------------------------------------------------------------------


def shares_from(scores: dict[str, float], exploration: float) -> dict[str, float]:
    """(1 - exploration) in proportion to the scores, the rest evenly; even when no score is positive."""
    if not scores:
        return {}
    total = sum(max(0.0, s) for s in scores.values())
    even = 1 / len(scores)
    if total <= 0:
        return dict.fromkeys(scores, even)
    return {g: (1 - exploration) * max(0.0, s) / total + exploration * even for g, s in scores.items()}


def prior_scores(acfg: AllocationConfig, acc: dict[str, tuple[float, int]]) -> dict[str, float]:
    if acfg.prior == "uniform":
        return dict.fromkeys(acc, 1.0)
    if acfg.prior == "errors":
        return {g: (1 - a) * n for g, (a, n) in acc.items()}
    return {g: a * (1 - a) for g, (a, _) in acc.items()}  # frontier


def allocate(rt: Runtime, r: int) -> Allocation | None:
    """The round's allocation, or None where there is none (mode lion, uniform selection)."""
    acfg = rt.cfg.generate.allocation
    if acfg.mode == "lion" or rt.cfg.generate.case_selection != "referee":
        return None
    group_by, groups = pool_groups(rt, acfg)
    accs = [cache_accuracy(rt, k, groups) for k in range(1, r + 1)]
    spends = [spent(rt, k, groups) for k in range(1, r)]
    now = accs[-1]
    lp = progress(accs, spends, acfg.window)
    # Groups with progress measured use it; before any is (the first generating round), the prior.
    scores = {g: lp.get(g, 0.0) for g in now} if lp else prior_scores(acfg, now)
    shares = shares_from(scores, acfg.exploration)
    figures = {
        g: {"acc": round(a, 4), "judged": n, "spent": spends[-1].get(g, 0) if spends else 0,
            "progress": round(1e4 * lp[g], 3) if g in lp else None, "share": round(shares.get(g, 0.0), 4)}
        for g, (a, n) in sorted(now.items())
    }
    log.info("round %d allocation by %s: %s", r, group_by,
             ", ".join(f"{g} {100 * s:.0f}%" for g, s in sorted(shares.items())))
    return Allocation(group_by, shares, figures, groups)


def split_quota(quota: int, shares: dict[str, float]) -> dict[str, int]:
    """`quota` candidates split by shares, in whole numbers that add up (largest remainder)."""
    if not shares or quota <= 0:
        return dict.fromkeys(shares, 0)
    raw = {g: quota * s / sum(shares.values()) for g, s in shares.items()}
    out = {g: int(x) for g, x in raw.items()}
    for g in sorted(raw, key=lambda g: (out[g] - raw[g], g))[: quota - sum(out.values())]:
        out[g] += 1
    return out
