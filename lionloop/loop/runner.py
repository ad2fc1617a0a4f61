"""Start and resume runs: the run directory and the checkpointed graph."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from lionloop import __version__
from lionloop.config import RunConfig, dump_config
from lionloop.errors import RunError
from lionloop.loop.graph import build_graph
from lionloop.loop.preflight import preflight
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
    """Create a run directory for `cfg` and run the loop to its end."""
    run_dir = cfg.resolved_run_dir()
    files = RunDir(run_dir)
    if files.run_file.exists():
        raise RunError(f"{run_dir} already holds a run; `lionloop resume {run_dir}` continues it")
    pm = get_plugin_manager()
    preflight(cfg, pm)  # a bad component name or plugin option: nothing written yet
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    files.config.write_text(dump_config(cfg.model_copy(update={"run_dir": run_dir})))
    files.run_file.write_text(
        json.dumps({"run_id": run_id, "created": time.time(), "lionloop": __version__}, indent=2)
    )
    rt = Runtime(cfg=cfg, run_dir=run_dir, run_id=run_id, reporter=reporter or Reporter(), pm=pm)
    try:
        final = _invoke(rt, {"run_id": run_id, "round": 1})
    finally:
        rt.close()
    return run_dir, final


def resume(run_dir: Path, reporter: Reporter | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue a run from its last checkpoint; finished nodes are not redone, paid calls not repaid."""
    cfg, run_id = RunDir(run_dir).read()
    pm = get_plugin_manager()
    preflight(cfg, pm)  # the plugins installed now must still take the run's config
    rt = Runtime(cfg=cfg, run_dir=Path(run_dir), run_id=run_id, reporter=reporter or Reporter(), pm=pm)
    try:
        graph, conn = _graph_for(rt)
        snapshot = graph.get_state(_thread(run_id))
        conn.close()
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
