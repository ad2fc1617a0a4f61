"""Start and resume runs: the run directory and the checkpointed graph."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from lionloop import __version__
from lionloop.config import RunConfig, dump_config
from lionloop.errors import RunError
from lionloop.loop.graph import build_graph
from lionloop.loop.preflight import preflight, preflight_resume
from lionloop.loop.runtime import Reporter, Runtime
from lionloop.plugin.manager import get_plugin_manager
from lionloop.rundir import RunDir

log = logging.getLogger(__name__)

RECURSION_LIMIT = 100_000  # the graph loops; each round is 6 steps


def _thread(run_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": run_id}, "recursion_limit": RECURSION_LIMIT}


def _graph_for(rt: Runtime) -> tuple[Any, sqlite3.Connection]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(rt.files.checkpoints, check_same_thread=False)
    return build_graph(SqliteSaver(conn)), conn


def _invoke(rt: Runtime, input: Any) -> dict[str, Any]:
    graph, conn = _graph_for(rt)
    try:
        # durability="sync": the checkpoint of a finished node is on disk before the next starts.
        return graph.invoke(input, _thread(rt.run_id), context=rt, durability="sync")
    finally:
        conn.close()


def start(cfg: RunConfig, reporter: Reporter | None = None) -> tuple[Path, dict[str, Any]]:
    """Create a run directory for `cfg` and run the loop to its end.

    Nothing is written before the config passed `preflight`; `config.yaml` and `run.json` (what
    makes the directory a run) only once every component was built. A config error on the way
    leaves the directory as it was, so the corrected config can be run into it.
    """
    run_dir = cfg.resolved_run_dir()
    files = RunDir(run_dir)
    if files.run_file.exists():
        raise RunError(f"{run_dir} already holds a run; `lionloop resume {run_dir}` continues it")
    pm = get_plugin_manager()
    preflight(cfg, pm)  # a bad path, component, option or seed row: nothing written yet
    undo = _Undo(run_dir, cfg.teacher.cache_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    try:
        rt = Runtime(cfg=cfg, run_dir=run_dir, run_id=run_id, reporter=reporter or Reporter(), pm=pm)
    except BaseException:
        undo()
        raise
    try:
        files.config.write_text(dump_config(cfg.model_copy(update={"run_dir": run_dir})))
        files.run_file.write_text(
            json.dumps({"run_id": run_id, "created": time.time(), "lionloop": __version__}, indent=2)
        )
        final = _invoke(rt, {"run_id": run_id, "round": 1})
    finally:
        rt.close()
    return run_dir, final


class _Undo:
    """Removes what starting a run created, when it fails before the run exists: the run
    directory (or, if it existed, the files added to it) and a new call-cache file."""

    def __init__(self, run_dir: Path, cache_path: Path | None) -> None:
        self.run_dir = Path(run_dir)
        self.before = {p.name for p in self.run_dir.iterdir()} if self.run_dir.is_dir() else None
        missing = []
        d = self.run_dir
        while not d.exists() and d.parent != d:
            missing.append(d)
            d = d.parent
        self.made_dirs = missing  # innermost first
        self.cache = Path(cache_path) if cache_path is not None and not Path(cache_path).exists() else None

    def __call__(self) -> None:
        if self.before is None:
            for d in self.made_dirs[:1]:
                shutil.rmtree(d, ignore_errors=True)
            for d in self.made_dirs[1:]:
                with contextlib.suppress(OSError):
                    d.rmdir()  # only if empty
        elif self.run_dir.is_dir():
            for p in self.run_dir.iterdir():
                if p.name in self.before:
                    continue
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        if self.cache is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.cache}{suffix}").unlink(missing_ok=True)


def resume(run_dir: Path, reporter: Reporter | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue a run from its last checkpoint; finished nodes are not redone, paid calls not repaid."""
    pm = get_plugin_manager()
    # Sound files, and a config the plugins and files there now still take: nothing written yet.
    cfg, run_id = preflight_resume(Path(run_dir), pm)
    rt = Runtime(cfg=cfg, run_dir=Path(run_dir), run_id=run_id, reporter=reporter or Reporter(), pm=pm)
    try:
        graph, conn = _graph_for(rt)
        snapshot = graph.get_state(_thread(run_id))
        conn.close()
        check_pool_holds_checkpoint(rt, snapshot.values, snapshot.next[0] if snapshot.next else None)
        if not snapshot.values:
            final = _invoke(rt, {"run_id": run_id, "round": 1})  # crashed before the first checkpoint
        elif not snapshot.next:
            log.info("run %s already finished (%s)", run_id, snapshot.values.get("stop_reason"))
            final = dict(snapshot.values)
        else:
            final = _invoke(rt, None)
    finally:
        rt.close()
    return Path(run_dir), final


# The stages each node's predecessors in one round always ran (conditional edges skip the others).
_DONE_BEFORE = {
    "imitate": (), "evaluate": ("imitate",), "discriminate": ("imitate", "evaluate"),
    "generate": ("imitate", "evaluate", "discriminate"), "curate": ("imitate", "evaluate", "discriminate", "generate"),
    "decide": ("imitate", "evaluate"),
}


def expected_markers(values: dict[str, Any], next_node: str | None) -> list[tuple[int, str]]:
    """The (round, stage) markers the pool must hold for a graph checkpoint with these state
    `values` about to run `next_node` (None: the run finished)."""
    if not values or next_node == "bootstrap":
        return []
    r = int(values.get("round") or 1)
    out = [(0, "bootstrap")] + [(k, "decide") for k in range(1, r)]
    if next_node is None:
        return [*out, (r, "decide")]
    return out + [(r, s) for s in _DONE_BEFORE.get(next_node, ())]


def check_pool_holds_checkpoint(rt: Runtime, values: dict[str, Any], next_node: str | None) -> None:
    """The pool must hold every stage the graph's checkpoint says is done. A stage marker commits
    with the stage's rows before the checkpoint is written, so a pool behind its checkpoint lost
    committed writes (a truncated WAL, a restored older file): resuming would skip the lost stages
    and finish with a smaller pool, so refuse, before anything is written."""
    have = {(row[0], row[1]) for row in rt.pool.query("SELECT round, stage FROM stages")}
    missing = [m for m in expected_markers(values, next_node) if m not in have]
    if missing:
        named = ", ".join(f"round {r} {s}" for r, s in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise RunError(
            f"{rt.files.pool}: the pool lacks stages the run's checkpoint records as done ({named}): it lost "
            "committed writes (a truncated WAL or an older copy of the file?); nothing was written. "
            "Restore pool.sqlite with its -wal file from a backup"
        )

