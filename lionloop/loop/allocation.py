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
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lionloop.config import AllocationConfig
from lionloop.loop.runtime import Runtime
from lionloop.loop.scoring import identical
from lionloop.loop.selection import referee_selects, warming_up
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
        return group_of(ins, self.groups)

    def metrics(self) -> dict[str, Any]:
        return {"group_by": self.group_by, "groups": self.figures}


# -- groups ----------------------------------------------------------------------------------------


def group_mode(acfg: AllocationConfig, pool: list[Instruction]) -> str:
    if acfg.group_by != "auto":
        return acfg.group_by
    return "task" if pool and all(i.task for i in pool) else "cluster"


def group_of(ins: Instruction, groups: dict[str, str]) -> str:
    """The instruction's group: its cluster where grouped by cluster, else its task."""
    return groups.get(ins.id) or ins.task or NO_GROUP


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
    # Discriminate, generate and the next round's training ask for the same pool's clusters: fit
    # once per pool (the same ids give the same clusters: the fit is seeded).
    key = (k, tuple(i.id for i in pool))
    if rt.memo.get("clusters", (None,))[0] == key:
        return rt.memo["clusters"][1]
    rt.memo["clusters"] = (key, found := _clusters(rt, pool, k))
    return found


def _clusters(rt: Runtime, pool: list[Instruction], k: int) -> dict[str, str]:
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
    """Per group: (the share of its cache-pool instructions the student got right by the referee's
    verdicts in round r, how many); `probe_accuracy`'s measured groups."""
    return probe_accuracy(rt, r, groups)[0]


def probe_accuracy(rt: Runtime, r: int, groups: dict[str, str]) -> tuple[dict[str, tuple[float, int]], dict[str, tuple[float, int]]]:
    """Per group: (the share of its cache-pool instructions the student got right by the referee's
    verdicts in round r, how many). Cache instructions are never trained on: a generalisation probe.

    With a sampled referee (`judge.max_cases`, `budget_share`) some probes go unjudged. Each counts
    as right at the rate the judged probes of its group *with the same kind of answer* were found
    easy: answers identical to the teacher's, and different ones, apart. With `skip_identical` (the
    default) identical answers are always judged, for free, so every unjudged probe has a different
    answer and counts at the judged different answers' rate (0 when none was judged), not as
    absent, which would inflate the accuracy of the groups failing most. With `skip_identical:
    false` an unjudged identical answer counts at the identical ones' rate (1 when none was judged:
    the teacher's own answer), not as a wrong one.

    A group none of whose probes was judged has no figure of its own. It is estimated all the same,
    its answers counted at the rates of every group's judged answers of their kind (exact answers:
    the student's different answers are wrong everywhere, so a group without one identical answer
    reads 0, not the average). Returns (measured groups, estimated groups).
    """
    cache = [i for i in rt.pool.instructions(["cache"]) if i.id in groups or i.task]
    student = rt.pool.student_answers(r)
    teacher = rt.pool.teacher_answers()
    verdicts = {v.instruction_id: v.hard for v in rt.pool.verdicts(r) if v.hard is not None}
    if not verdicts:
        return {}, {}
    # Per (group, answer identical to the teacher's?): judged, judged easy, unjudged.
    judged: Counter[tuple[str, bool]] = Counter()
    easy: Counter[tuple[str, bool]] = Counter()
    unjudged: Counter[tuple[str, bool]] = Counter()
    total: Counter[str] = Counter()
    for ins in cache:
        if ins.id not in student:
            continue
        g = group_of(ins, groups)
        key = (g, identical(teacher.get(ins.id, ""), student[ins.id]))
        total[g] += 1
        if ins.id in verdicts:
            judged[key] += 1
            easy[key] += not verdicts[ins.id]
        else:
            unjudged[key] += 1

    def right(g: str) -> float:
        out = 0.0
        for same in (True, False):
            k = (g, same)
            rate = easy[k] / judged[k] if judged[k] else float(same)
            out += easy[k] + unjudged[k] * rate
        return out

    measured = {g: (right(g) / n, n) for g, n in total.items() if n > unjudged[(g, True)] + unjudged[(g, False)]}
    rate = {}
    for same in (True, False):
        n_judged = sum(v for (_, s), v in judged.items() if s == same)
        rate[same] = sum(v for (_, s), v in easy.items() if s == same) / n_judged if n_judged else float(same)
    return measured, {g: (sum(unjudged[(g, same)] * rate[same] for same in (True, False)) / n, n)
                      for g, n in total.items() if g not in measured}


def carried(accs: list[dict[str, tuple[float, int]]]) -> list[dict[str, tuple[float, int]]]:
    """Each round's cache accuracy by group, with a group the round did not measure (a sampled
    referee judged none of its probes) at its last measured figure: it keeps a share (at least the
    exploration's) instead of dropping out of the allocation, and shows no progress that round."""
    out: list[dict[str, tuple[float, int]]] = []
    for acc in accs:
        out.append({**(out[-1] if out else {}), **acc})
    return out


def spent(rt: Runtime, r: int, groups: dict[str, str]) -> dict[str, int]:
    """Per group: new train instructions accepted in round r (the group that paid for each)."""
    rows = rt.pool.query(
        "SELECT id, task, json_extract(meta, '$.group') AS g FROM instructions"
        " WHERE round_born = ? AND origin != 'seed' AND split = 'train'", (r,))
    out: Counter[str] = Counter()
    for row in rows:
        out[row["g"] or groups.get(row["id"]) or row["task"] or NO_GROUP] += 1
    return dict(out)


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def smoothed(acc: float, n: int) -> float:
    """Accuracy with half a right and half a wrong answer added: never exactly 0 or 1."""
    return (acc * n + 0.5) / (n + 1)


def progress(accs: list[dict[str, tuple[float, int]]], spends: list[dict[str, int]], window: int,
             estimate: str = "logistic") -> dict[str, float]:
    """Per group: the accuracy one more example is expected to add (its learning progress), from the
    last `window` round pairs. `accs[k]` is round k+1's cache accuracy by group (accuracy, judged),
    `spends[k]` what round k+1 bought (trained on in round k+2).

    "logistic": each group learns along a logistic curve, acc = sigmoid(rate x examples), so one
    example adds rate x acc x (1 - acc). The rate is the change of logit(acc) per example spent,
    shrunk towards the rate of all groups together by a pseudo-count of the mean spend per group
    (30 probes a group are noisy); a group near 0% or near 100% has little to gain either way, and
    one being forgotten (its accuracy falling) has more again.
    "slope": the size of the accuracy change per example (Matiisen et al. 2017), divided by the
    examples spent plus the same pseudo-count.
    "ahead": "logistic", with acc x (1 - acc) taken where the group is heading rather than where it
    is: what a round buys is trained on in the next round, when the group has moved on by its
    training on the pool it already has. Its last logit change is carried one round ahead, shrunk
    by how much of it the noise of its probes could explain (change^2 / (change^2 + variance), the
    variance of a logit from n probes being about 1 / (n acc (1 - acc))). A group about to master
    its task from the data it has gets little more; one noisy probe near 0% moves nothing much.
    """
    pairs = [(k - 1, k) for k in range(1, len(accs)) if accs[k] and accs[k - 1]][-window:]
    if not pairs:
        return {}
    moved: dict[str, float] = defaultdict(float)
    paid: dict[str, float] = defaultdict(float)
    prior = 0.0
    for a, b in pairs:
        spend = spends[a] if a < len(spends) else {}
        prior += sum(spend.values()) / max(1, len(accs[b])) / len(pairs)
        for g, (acc, n) in accs[b].items():
            if g not in accs[a]:
                continue
            before = accs[a][g]
            if estimate == "slope":
                moved[g] += abs(acc - before[0])
            else:
                moved[g] += logit(smoothed(acc, n)) - logit(smoothed(*before))
            paid[g] += spend.get(g, 0)
    pseudo = prior * len(pairs) + 1
    if estimate == "slope":
        return {g: moved[g] / (paid[g] + pseudo) for g in moved}
    pooled = max(0.0, sum(moved.values()) / max(1.0, sum(paid.values())))
    last = accs[-1]
    out = {}
    for g in moved:
        rate = max(0.0, (moved[g] + pooled * pseudo) / (paid[g] + pseudo))
        p = smoothed(*last[g]) if g in last else 0.5
        if estimate == "ahead" and g in last:
            p = heading(accs[pairs[-1][0]].get(g), last[g])
        out[g] = rate * p * (1 - p)
    return out


def heading(before: tuple[float, int] | None, now: tuple[float, int]) -> float:
    """Where a group's (smoothed) accuracy is heading: its last logit change carried one round
    further, shrunk by the share of it its probes' noise could explain."""
    p = smoothed(*now)
    if before is None:
        return p
    q = smoothed(*before)
    change = logit(p) - logit(q)
    noise = 1 / ((now[1] + 1) * p * (1 - p)) + 1 / ((before[1] + 1) * q * (1 - q))
    step = change * change * change / (change * change + noise) if change else 0.0
    return 1 / (1 + math.exp(-(logit(p) + step)))


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
    # frontier: the logistic model's progress with every group learning at the same rate
    return {g: smoothed(a, n) * (1 - smoothed(a, n)) for g, (a, n) in acc.items()}


def allocate(rt: Runtime, r: int) -> Allocation | None:
    """The round's allocation, or None where there is none (mode lion, uniform selection, a warm-up round)."""
    acfg = rt.cfg.generate.allocation
    if acfg.mode == "lion" or not referee_selects(rt.cfg) or warming_up(rt.cfg, r):
        return None
    group_by, groups = pool_groups(rt, acfg)
    measured, estimated = probe_accuracy(rt, r, groups)
    accs = carried([cache_accuracy(rt, k, groups) for k in range(1, r)] + [measured])
    spends = [spent(rt, k, groups) for k in range(1, r)]
    now = accs[-1]
    lp = progress(accs, spends, acfg.window, acfg.estimate)
    # A group with probes that no round's sample has measured yet (a paying referee's sample missed
    # them, most often in round 1) is estimated from every group's judged answers of each kind
    # rather than dropping out of the round, exploration included; it shows 0 judged.
    estimated = {g: v for g, v in estimated.items() if g not in now} if now else {}
    if acfg.mode == "fixed":  # the user's weights; progress is still measured and shown
        scores = {g: acfg.weights.get(g, 0.0) for g in (*now, *estimated)}
    else:  # groups with progress measured use it; before any is (the first generating round), the prior
        scores = {g: lp.get(g, 0.0) for g in (*now, *estimated)} if lp else prior_scores(acfg, {**now, **estimated})
    shares = shares_from(scores, acfg.exploration)
    figures = {
        g: {"acc": round(a, 4), "judged": 0 if g in estimated else n, "spent": spends[-1].get(g, 0) if spends else 0,
            "progress": round(1e4 * lp[g], 3) if g in lp else None, "share": round(shares.get(g, 0.0), 4)}
        for g, (a, n) in sorted({**now, **estimated}.items())
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


def frontier_first(rt: Runtime, hard: list[Any], groups: dict[str, str], r: int, k: int = 5) -> list[Any]:
    """The hard cases, those whose k nearest judged cache-pool neighbours of the same group the
    student got right most often first (ties keep the referee's order): failures next to what the
    student can already do, rather than the hardest ones."""
    stored = dict(rt.pool.embeddings(rt.embedder.name))
    cache = {i.id for i in rt.pool.instructions(["cache"])}
    probes: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for v in rt.pool.verdicts(r):
        if v.instruction_id in cache and v.hard is not None and v.instruction_id in stored:
            probes[groups.get(v.instruction_id, NO_GROUP)].append((v.instruction_id, not v.hard))
    mats = {g: (np.stack([np.frombuffer(stored[i], dtype=np.float32) for i, _ in ps]),
                np.array([ok for _, ok in ps], dtype=np.float32), [i for i, _ in ps]) for g, ps in probes.items()}

    def score(case: Any) -> float:
        ins = case.instruction
        m = mats.get(group_of(ins, groups))
        if m is None or ins.id not in stored:
            return 0.0
        vecs, ok, ids = m
        sims = vecs @ np.frombuffer(stored[ins.id], dtype=np.float32)
        sims[[j for j, i in enumerate(ids) if i == ins.id]] = -np.inf  # not its own neighbour
        near = np.argsort(-sims, kind="stable")[:k]
        return float(ok[near].mean()) if len(near) else 0.0

    scored = [(-score(c), pos, c) for pos, c in enumerate(hard)]
    return [c for _, _, c in sorted(scored, key=lambda t: (t[0], t[1]))]


# -- training mix -----------------------------------------------------------------------------------


def training_mix(rt: Runtime, r: int, rows: list[Any]) -> tuple[list[Any], dict[str, Any] | None]:
    """The main student's rows for round r's training, with `allocation.train_mix` of the samples
    following the shares the allocation gave each group in round r - 1: a group's rows are repeated
    (never dropped) so that its part of the data is (1 - mix) x its part of the rows + mix x its
    share. The rows and, where mixed, per group: (rows, share of the training data)."""
    acfg = rt.cfg.generate.allocation
    if not acfg.train_mix or r < 2 or not rows:
        return rows, None
    alloc = rt.pool.metrics(r - 1).get("allocation") or {}
    shares = {g: float(f.get("share") or 0.0) for g, f in (alloc.get("groups") or {}).items()}
    if not shares or sum(shares.values()) <= 0:
        return rows, None
    _, groups = pool_groups(rt, acfg)
    tasks = {i.id: i.task for i in rt.pool.instructions_by_id({row.instruction_id for row in rows}).values()}
    group = [groups.get(row.instruction_id) or tasks.get(row.instruction_id) or NO_GROUP for row in rows]
    counts = Counter(group)
    total = sum(shares.get(g, 0.0) for g in counts) or 1.0
    n = len(rows)
    target = {g: (1 - acfg.train_mix) * c / n + acfg.train_mix * shares.get(g, 0.0) / total for g, c in counts.items()}
    factor = {g: target[g] * n / c for g, c in counts.items()}
    if not any(f > 0 for f in factor.values()):  # train_mix 1 and no share for any group trained
        return rows, None
    least = min(f for f in factor.values() if f > 0)
    rng = rt.context(r).rng("train-mix")
    out: list[Any] = []
    for row, g in zip(rows, group, strict=True):
        copies = factor[g] / least
        out += [row] * (int(copies) + (rng.random() < copies - int(copies)))
    return out, {g: {"rows": c, "share": round(target[g], 4)} for g, c in sorted(counts.items())}
