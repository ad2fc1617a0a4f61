"""Benchmarks that compare arms (configs) over seeds: run each (arm, seed) loop once, read its
figures back through the status builder, and keep them in a JSON file so an interrupted benchmark
resumes where it stopped. The effectiveness benchmark and the generator ablation both run here."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lionloop.bench.common import environment, kernels, source_commit
from lionloop.config import RunConfig
from lionloop.loop.reporting import Reporter

log = logging.getLogger(__name__)

Results = dict[str, dict[int, list[dict[str, Any]]]]  # arm -> seed -> per-round figures


def arm_dir(out_dir: Path, arm: str, seed: int) -> Path:
    """The run directory of one (arm, seed) run."""
    return Path(out_dir) / f"{arm.strip('+')}-{seed}"


def arm_of(run_dir: Path) -> str:
    """The arm a run directory `arm_dir` named belongs to (the folder's name where it is not one)."""
    m = re.fullmatch(r"(?P<arm>.+)-\d+", Path(run_dir).name)
    return m["arm"] if m else Path(run_dir).name


class BenchProgress(Reporter):
    """One line per stage and round of a benchmark's run, so an hour-long benchmark shows where it
    is also when its output goes to a file (the loop's own bars are for `lionloop run`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def stage_start(self, round: int, stage: str) -> None:
        log.warning("%s: round %d %s", self.name, round, stage)

    def round_end(self, summary: dict[str, Any]) -> None:
        ev = summary.get("eval") or {}
        if ev.get("overall") is not None:
            log.warning("%s: round %s held-out %s %.3f", self.name, summary.get("round"),
                        ev.get("metric", "accuracy"), ev["overall"])


def run_arm(cfg: RunConfig, reporter: Reporter | None = None) -> tuple[dict[str, Any], float]:
    """Run one arm's loop to its end; its figures (`lionloop.inspect.status.run_figures`) and wall seconds.

    A run directory that already holds the run (the benchmark was stopped during it, or after it
    and before its figures were saved) is resumed, not refused: what it paid for is not paid again.
    Its seconds are then those its stages recorded (a finished run read back took 0 s in this call)."""
    from lionloop.inspect.status import run_figures
    from lionloop.loop.runner import resume, start
    from lionloop.rundir import RunDir

    t0 = time.time()
    resumed = RunDir(cfg.run_dir).is_run()
    if resumed:
        log.warning("%s holds this run already: resuming it", cfg.run_dir)
        run_dir, _ = resume(Path(cfg.run_dir), reporter)
    else:
        run_dir, _ = start(cfg, reporter)
    seconds, figures = time.time() - t0, run_figures(run_dir)
    if resumed:
        seconds = max(seconds, sum(sum((r.get("seconds") or {}).values()) for r in figures["rounds"]))
    return figures, seconds


def loop_rounds(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The loop's rounds 1.. of a run's figures (bootstrap, round 0, left out)."""
    return [r for r in figures["rounds"] if r["round"] > 0]


def run_arms(
    label: str,
    arms: Sequence[str],
    seeds: Sequence[int],
    out_dir: Path,
    config: Callable[[str, int, Path], RunConfig],
    per_round: Callable[[dict[str, Any], float], list[dict[str, Any]]],
) -> dict[str, Any]:
    """Every (arm, seed) run, resumable: runs recorded in OUT_DIR/<label>.json are not run again.

    `config(arm, seed, run_dir)` builds a run's config; `per_round(figures, seconds)` turns its
    figures into what the benchmark keeps per round (an `acc` entry each).
    """
    raw = Path(out_dir) / f"{label}.json"
    results: Results = {a: {} for a in arms}
    # The file keeps the runs of arms and seeds this invocation does not ask for, too: running one
    # arm in a directory of several used to rewrite the file with that arm's runs alone.
    kept: dict[str, Any] = {}
    if raw.exists():
        kept = json.loads(raw.read_text()).get("results", {})
        for a in arms:
            results[a] = {int(k): v for k, v in kept.get(a, {}).items()}
    t0 = time.time()
    # The code this process runs was imported at its start: a commit made while it runs is not it.
    commit, env, kern = source_commit(), environment(), kernels()
    todo = [(seed, arm) for seed in seeds for arm in arms if seed not in results[arm]]
    for i, (seed, arm) in enumerate(todo, 1):
        name = f"{label}: {arm} seed {seed} (run {i} of {len(todo)})"
        figures, seconds = run_arm(config(arm, seed, arm_dir(out_dir, arm, seed)), BenchProgress(name))
        results[arm][seed] = per_round(figures, seconds)
        results[arm][seed][-1].update(commit=commit, env=env, kernels=kern)  # the section names them (machine_line)
        log.warning("%s: final acc %.3f in %.0fs", name, results[arm][seed][-1]["acc"] or 0, seconds)
        kept[arm] = {str(k): v for k, v in results[arm].items()}
        raw.write_text(json.dumps({"results": kept}, indent=1))
    return {"results": results, "seconds": time.time() - t0}


def finished_figures(out_dir: Path, results: Results) -> dict[str, dict[int, dict[str, Any]]]:
    """The figures of every (arm, seed) run in `results` whose run directory is still there."""
    from lionloop.inspect.status import run_figures
    from lionloop.rundir import RunDir

    out: dict[str, dict[int, dict[str, Any]]] = {}
    for arm, by_seed in results.items():
        for seed in by_seed:
            run_dir = arm_dir(out_dir, arm, seed)
            if RunDir(run_dir).is_run() and RunDir(run_dir).pool.exists():
                out.setdefault(arm, {})[seed] = run_figures(run_dir)
    return out
