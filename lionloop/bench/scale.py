"""Scale: a synthetic pool grown to a million instructions through the curate stage's own store and
index calls, and what running and inspecting it costs at each size. No training, no teacher.

Each round proposes `batch` candidates (10k by default) and curates them exactly as
`lionloop.loop.curation.curate_stage` does, minus the parts whose cost does not depend on the pool
(plugin filter hooks, embedding the candidates, teacher answers): the candidates are written and
read back through the `candidates` table, their parents fetched by id, checked by the quality gate,
deduplicated by `lionloop.loop.dedup.deduplicate` against the run's `VectorIndex` (flat, then IVF
past `dedup.index.above`) with the splits of their neighbours looked up by id, and the survivors
written in one transaction (instructions, answers, rows, vectors, statuses, the round's metrics)
before the index hears of them. By default (`grow="bulk"`) only the last rounds before each
measured size are curated; the rounds between are written with the same writes and index adds but
no dedup (curating every round to a million takes over an hour on 2 shared cores). At each measured size the inspection commands run on the run
directory the way the CLI runs them (in process: the figures leave out Python's start-up).

Vectors are synthetic, 384-dimensional like all-MiniLM-L6-v2's, normalised, with near-duplicate
structure: fresh candidates scatter around a few thousand topic centres (cosine ~0.6 between two
of one topic), and a share are re-wordings of a pool instruction (cosine 0.93-0.995, so some fall
under the 0.95 threshold), of an earlier candidate of the batch, or exact repeats. What embedding
them would cost is measured by `lionloop bench dedup` (MiniLM throughput on this machine).
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lionloop.bench.dedup import ADJ, FORMS, TOPICS, VERBS
from lionloop.records import Candidate, Example, Instruction

log = logging.getLogger(__name__)

DIM = 384  # all-MiniLM-L6-v2's width: sizes on disk and in memory are the real ones
SIZES = (10_000, 100_000, 300_000, 1_000_000)
BATCH = 10_000
CENTRES = 2_048
RESERVOIR = 20_000  # pool instructions kept in memory to re-word (a uniform sample of the pool)
SEARCH_TEXT = "Write a short poem about the sea."


# -- the synthetic generator ---------------------------------------------------------------------


@dataclass
class Synth:
    """Candidates with near-duplicate structure. Shares: `pool_dups` re-word a pool instruction,
    `batch_dups` an earlier candidate of the same batch, `repeats` are a stored instruction again."""

    seed: int = 0
    pool_dups: float = 0.08
    batch_dups: float = 0.02
    repeats: float = 0.005
    spread: float = 0.8  # noise around a topic centre: cosine 0.78 to it, ~0.6 between two of a topic
    serial: int = 0
    seen: int = 0
    reservoir: list[tuple[Instruction, np.ndarray]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        c = self.rng.standard_normal((CENTRES, DIM)).astype(np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)

    def _text(self) -> str:
        self.serial += 1
        r = self.rng.integers(0, 1 << 30, 4)
        v, a, f, t = VERBS[r[0] % len(VERBS)][0], ADJ[r[1] % len(ADJ)][0], FORMS[r[2] % len(FORMS)][0], TOPICS[r[3] % len(TOPICS)][0]
        return f"{v} a {a} {f} about {t} (request {self.serial})."

    def _near(self, v: np.ndarray, noise: np.ndarray) -> np.ndarray:
        x = v[None, :] + (noise[:, None] / math.sqrt(DIM)) * self.rng.standard_normal((len(noise), DIM)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def fresh(self, n: int) -> np.ndarray:
        x = self.centres[self.rng.integers(0, CENTRES, n)] + (self.spread / math.sqrt(DIM)) * self.rng.standard_normal((n, DIM)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def seeds(self, n: int, eval_n: int) -> tuple[list[Instruction], np.ndarray]:
        items = [Instruction(text=self._text(), task="synthetic", origin="seed", split="eval" if k < eval_n else "train")
                 for k in range(n)]
        return items, self.fresh(n)

    def candidates(self, n: int, round: int) -> tuple[list[Candidate], np.ndarray]:
        vecs = self.fresh(n)
        kind = self.rng.random(n)
        items: list[Instruction] = []
        for k in range(n):
            parent = self.reservoir[int(self.rng.integers(len(self.reservoir)))] if self.reservoir else None
            split = "cache" if self.rng.random() < 0.1 else "train"
            if parent is not None and kind[k] < self.repeats:
                items.append(parent[0])  # the very same instruction, proposed again
                vecs[k] = parent[1]
                continue
            text = self._text()
            if parent is not None and kind[k] < self.repeats + self.pool_dups:
                vecs[k] = self._near(parent[1], self.rng.uniform(0.1, 0.4, 1))[0]
                text = f"{parent[0].text.rstrip('.')}, reworded ({self.serial})."
            elif k and kind[k] < self.repeats + self.pool_dups + self.batch_dups:
                j = int(self.rng.integers(k))
                vecs[k] = self._near(vecs[j], self.rng.uniform(0.1, 0.4, 1))[0]
            items.append(Instruction(text=text, task="synthetic", origin="lion", round_born=round, split=split,
                                     parent_id=parent[0].id if parent is not None else None))
        return [Candidate(instruction=i, generator="lion") for i in items], vecs

    def keep(self, items: Sequence[Instruction], vecs: np.ndarray) -> None:
        """Reservoir sampling over accepted instructions: a uniform sample of the pool to re-word."""
        for ins, v in zip(items, vecs, strict=True):
            self.seen += 1
            if len(self.reservoir) < RESERVOIR:
                self.reservoir.append((ins, v.copy()))
            else:
                j = int(self.rng.integers(self.seen))
                if j < RESERVOIR:
                    self.reservoir[j] = (ins, v.copy())


# -- one round's curate, as the stage makes its store and index calls -------------------------------


def curate_round(pool: Any, index: Any, r: int, cands: list[Candidate], vecs: np.ndarray,
                 threshold: float) -> dict[str, Any]:
    """The curate stage's pool and index calls for one round's candidates; returns its figures."""
    from lionloop.loop.dedup import deduplicate
    from lionloop.loop.quality import instruction_problem

    t = {"write_candidates": time.perf_counter()}
    pool.start_round(r)
    pool.replace_candidates(r, cands)  # what the generate stage writes
    t0, c0 = time.perf_counter(), time.process_time()
    t["write_candidates"] = t0 - t["write_candidates"]
    candidates = pool.candidates(r)
    status: list[tuple[str, str | None]] = [("pending", None)] * len(candidates)
    parents = pool.instructions_by_id(c.instruction.parent_id for c in candidates if c.instruction.parent_id)
    survivors = []
    for k, cand in enumerate(candidates):
        problem = instruction_problem(cand.instruction, parents.get(cand.instruction.parent_id or ""))
        if problem:
            status[k] = ("rejected", f"quality: {problem}")
        else:
            survivors.append(k)
    vectors = vecs[survivors]  # stands for the embedding call (a cost per candidate, not per pool size)
    t1 = time.perf_counter()
    splits: dict[str, str] = {}

    def search(v: Any, k: int) -> Any:
        sims, names = index.search(v, k)
        splits.update(pool.splits_of([n for row in names for n in row if n] + [candidates[j].id for j in survivors]))
        return sims, names

    dd = deduplicate([candidates[k].instruction for k in survivors], vectors, search, splits.get, threshold)
    t2 = time.perf_counter()
    for pos, reason in dd.rejected.items():
        status[survivors[pos]] = ("rejected", reason)
    kept = [survivors[pos] for pos in dd.accepted]
    new = [candidates[k].instruction for k in kept]
    answers = {i.id: f"(synthetic answer to {i.id})" for i in new}
    rows = [Example(instruction_id=i.id, prompt=i.text, completion=answers[i.id], generator="lion", round=r) for i in new]
    for k in kept:
        status[k] = ("accepted", None)
    rejected: dict[str, int] = {}
    for st, reason in status:
        if st != "accepted":
            rejected[(reason or st).split(":")[0]] = rejected.get((reason or st).split(":")[0], 0) + 1
    result = {"candidates": len(candidates), "accepted": len(new), "rejected": rejected}
    with pool.transaction():
        pool.add_instructions(new)
        pool.add_responses("teacher", "synthetic", r, answers)
        pool.add_examples(rows)
        pool.add_embeddings(index.model, {i.id: v.tobytes() for i, v in zip(new, dd.vectors, strict=True)})
        pool.set_candidate_status(r, dict(enumerate(status)))
        pool.merge_metrics(r, {"curate": result})
        pool.mark_stage(r, "curate", result)
    t3 = time.perf_counter()
    index.add([i.id for i in new], dd.vectors)
    t4 = time.perf_counter()
    return {**result, "new": new, "vectors": dd.vectors, "seconds": {
        "read": t1 - t0, "dedup": t2 - t1, "write": t3 - t2, "index_add": t4 - t3, "curate": t4 - t0,
        "curate_cpu": time.process_time() - c0,
        "write_candidates": t["write_candidates"]}}


# -- measuring a size ------------------------------------------------------------------------------


def _rss() -> tuple[int, int]:
    """(current, peak) resident memory of this process, bytes."""
    cur = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) * 1024
    except OSError:
        pass
    return cur, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def inspect_at(run_dir: Path, search: bool = True) -> dict[str, Any]:
    """The inspection commands on the run as it is: latency and what they returned."""
    from lionloop.inspect.report import build_report
    from lionloop.inspect.views import list_instructions, pool_stats

    out: dict[str, Any] = {}
    st, out["stats_s"] = _timed(lambda: pool_stats(run_dir))
    out["stats_instructions"] = st["instructions"]
    ls, out["list_s"] = _timed(lambda: list_instructions(run_dir))
    out["list_total"], out["list_shown"] = ls["total"], ls["shown"]
    if search:
        from lionloop.inspect.search import search as pool_search

        hits, out["search_s"] = _timed(lambda: pool_search(run_dir, SEARCH_TEXT, k=10))
        out["search_indexed"], out["search_hits"], out["search_index"] = hits["indexed"], len(hits["neighbours"]), hits["index"]
    rep, out["report_s"] = _timed(lambda: build_report(run_dir, run_dir / "report.html"))
    out["report_points"], out["report_bytes"], out["report_projection"] = rep["points"], rep["bytes"], rep["projection"]
    return out


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def make_run_dir(run_dir: Path, index_kind: str) -> Any:
    """A run directory the inspection commands accept: config.yaml and run.json beside the pool."""
    from lionloop import __version__
    from lionloop.config import RunConfig, dump_config
    from lionloop.rundir import RunDir

    run_dir.mkdir(parents=True, exist_ok=True)
    files = RunDir(run_dir)
    cfg = RunConfig(name="bench-scale", run_dir=run_dir)
    cfg = cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update={
        "index": cfg.dedup.index.model_copy(update={"kind": index_kind})})})
    files.config.write_text(dump_config(cfg))
    files.run_file.write_text(json.dumps({"run_id": f"bench-scale-{uuid.uuid4().hex[:6]}", "created": time.time(),
                                          "lionloop": __version__}))
    return cfg


def fill_round(pool: Any, index: Any, synth: Synth, r: int, n: int) -> tuple[int, float]:
    """A round's worth of new instructions written with the curate stage's calls but no dedup
    (`grow="bulk"`): fresh vectors, all accepted; the candidates table gets its rows too."""
    cands, vecs = synth.candidates(n, r)
    cands = [c for c in cands if c.instruction.round_born == r]  # no repeat of a stored one
    vecs = synth.fresh(len(cands))
    new = [c.instruction for c in cands]
    answers = {i.id: f"(synthetic answer to {i.id})" for i in new}
    result = {"candidates": len(new), "accepted": len(new), "rejected": {}}
    pool.start_round(r)
    pool.replace_candidates(r, cands)
    with pool.transaction():
        pool.add_instructions(new)
        pool.add_responses("teacher", "synthetic", r, answers)
        pool.add_examples([Example(instruction_id=i.id, prompt=i.text, completion=answers[i.id], generator="lion",
                                   round=r) for i in new])
        pool.add_embeddings(index.model, {i.id: v.tobytes() for i, v in zip(new, vecs, strict=True)})
        pool.set_candidate_status(r, dict.fromkeys(range(len(new)), ("accepted", None)))
        pool.merge_metrics(r, {"curate": result})
        pool.mark_stage(r, "curate", result)
    t0 = time.perf_counter()
    index.add([i.id for i in new], vecs)
    synth.keep(new, vecs)
    return len(new), time.perf_counter() - t0  # added, and the index add's seconds (rebuilds show there)


def run(run_dir: Path, sizes: Sequence[int] = SIZES, batch: int = BATCH, seeds: int = 1_000, eval_n: int = 200,
        index_kind: str = "auto", search: bool = True, grow: str = "bulk", measured: int = 3, seed: int = 0,
        on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Grow the pool round by round to each of `sizes` (train + cache + eval instructions) and
    measure there. `grow="curate"` sends every round through `curate_round`; `grow="bulk"` writes
    the rounds between sizes with `fill_round` (same writes and index adds, no dedup: minutes
    instead of an hour on 2 shared cores) and curates only the last `measured` rounds before each
    size. `run_dir` must not hold a pool yet; the figures are also written to bench-scale.json
    after each size."""
    from lionloop.embedding import Embedder
    from lionloop.rundir import RunDir
    from lionloop.stores.pool import Pool
    from lionloop.stores.vectors import VectorIndex

    run_dir = Path(run_dir)
    files = RunDir(run_dir)
    if files.pool.exists():
        from lionloop.bench.common import BenchError

        raise BenchError(f"{run_dir} already holds a pool: the scale benchmark starts from an empty one")
    cfg = make_run_dir(run_dir, index_kind)
    say = on_progress or (lambda s: log.info("%s", s))
    model = Embedder(cfg.dedup).name  # the name the bundled model's vectors are stored under (not loaded)
    pool = Pool(files.pool)
    synth = Synth(seed=seed)
    index = VectorIndex(pool, run_dir, model, DIM, cfg.dedup.index)
    items, vecs = synth.seeds(seeds, eval_n)
    with pool.transaction():
        pool.add_instructions(items)
        pool.add_embeddings(model, {i.id: v.tobytes() for i, v in zip(items, vecs, strict=True)})
        pool.merge_metrics(0, {"bootstrap": {"seeds": seeds}})
    index.add([i.id for i in items], vecs)
    synth.keep([i for i in items if i.split != "eval"], vecs[eval_n:])
    if search:  # torch and MiniLM load once, as in any process: the figures are the searches'
        Embedder(cfg.dedup).encode(["warm up"])
    n, r = seeds, 0
    steps: list[dict[str, Any]] = []
    window: list[dict[str, Any]] = []  # the curated rounds since the last measured size
    adds: list[float] = []  # seconds of every index add since then
    t_start = t_grow = time.perf_counter()
    for target in sorted(sizes):
        while n < target or not window:  # at least one curated round per size: its figures
            r += 1
            if grow == "bulk" and n + (measured + 1) * batch < target:
                added, seconds = fill_round(pool, index, synth, r, batch)
                adds.append(seconds)
                n += added
                if r % 10 == 0:
                    say(f"round {r}: pool {n:,} (filled), index {index.kind}, {time.perf_counter() - t_start:.0f} s so far")
                continue
            cands, cvecs = synth.candidates(batch, r)
            fig = curate_round(pool, index, r, cands, cvecs, cfg.dedup.threshold)
            synth.keep(fig["new"], fig["vectors"])
            n += fig["accepted"]
            window.append({k: fig[k] for k in ("candidates", "accepted", "rejected", "seconds")} | {"pool": n})
            adds.append(fig["seconds"]["index_add"])
            if r % 10 == 0 or n >= target:
                say(f"round {r}: pool {n:,}, curate {fig['seconds']['curate']:.2f} s for {batch:,} candidates "
                    f"({fig['accepted']:,} accepted), index {index.kind}, {time.perf_counter() - t_start:.0f} s so far")
        index.flush()  # the file on disk holds every vector (a run flushes at its end too)
        pool.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the size on disk, not a WAL's
        counted = pool.count_instructions()
        n = sum(counted.values())
        cur, peak = _rss()
        last = window[-min(measured, len(window)):]  # the rounds just before this size: its per-round costs
        step = {
            "size": n, "rounds": r, "pool_by_split": counted, "embeddings": pool.embedding_span(model)[0],
            "index_kind": index.kind, "index_count": len(index), "index_nlist": _nlist(index),
            "curate_s": _mean(last, "curate"), "curate_cpu_s": _mean(last, "curate_cpu"),
            "load": os.getloadavg()[0], "dedup_s": _mean(last, "dedup"), "write_s": _mean(last, "write"),
            "read_s": _mean(last, "read"), "index_add_s": _mean(last, "index_add"),
            "index_add_max_s": max(adds, default=0.0),
            "write_candidates_s": _mean(last, "write_candidates"),
            "accept_rate": sum(w["accepted"] for w in last) / max(1, sum(w["candidates"] for w in last)),
            "rejected": _sum_rejected(window),
            "pool_bytes": _disk(files.pool), "index_bytes": files.index.stat().st_size if files.index.exists() else 0,
            "rss": cur, "rss_peak": peak, "grow_s": time.perf_counter() - t_grow,
        }
        say(f"pool {n:,}: inspecting (stats, list, search, report)")
        step |= inspect_at(run_dir, search)
        step["rss_after_inspect"] = _rss()[0]
        steps.append(step)
        window, adds, t_grow = [], [], time.perf_counter()
        say(f"pool {n:,}: curate {step['curate_s']:.2f} s/{batch:,}, stats {step['stats_s']:.2f} s, list "
            f"{step['list_s']:.2f} s, report {step['report_s']:.1f} s")
        out = {"batch": batch, "grow": grow, "measured": measured, "steps": steps, "index": cfg.dedup.index.model_dump(),
               "threshold": cfg.dedup.threshold, "seconds": time.perf_counter() - t_start}
        # After each size: an interrupted run keeps the sizes it reached (`report` renders them).
        (run_dir / "bench-scale.json").write_text(json.dumps(out, indent=1))
    pool.close()
    return out


def _nlist(index: Any) -> int | None:
    from lionloop.stores.vectors import faiss_nlist

    return faiss_nlist(index.index) if index.kind == "ivf" else None


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([w["seconds"][key] for w in rows])) if rows else float("nan")


def _sum_rejected(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in rows:
        for k, v in w["rejected"].items():
            out[k] = out.get(k, 0) + v
    return out
