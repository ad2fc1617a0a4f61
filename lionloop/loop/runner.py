"""Start and resume runs: the run directory and the checkpointed graph."""

from __future__ import annotations

import json
import logging
import os
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
from lionloop.rundir import RunDir, RunLock, busy, lock_holder

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


def _run(rt: Runtime, input: Any, command: str) -> dict[str, Any]:
    """Invoke the graph, leaving in events.jsonl how the process ended when it ends early:
    `interrupted` (Ctrl-C, SIGTERM) or `error`, with the stage it was in."""
    rt.event(event="run_start", command=command, pid=os.getpid())
    try:
        return _invoke(rt, input)
    except KeyboardInterrupt:
        rt.event(event="interrupted", **rt.current)
        raise
    except BaseException as err:
        rt.event(event="error", message=f"{type(err).__name__}: {' '.join(str(err).split())[:500]}", **rt.current)
        raise


def start(cfg: RunConfig, reporter: Reporter | None = None) -> tuple[Path, dict[str, Any]]:
    """Create a run directory for `cfg` and run the loop to its end (holding the run's lock)."""
    run_dir = cfg.resolved_run_dir()
    files = RunDir(run_dir)
    if files.run_file.exists():
        raise RunError(f"{run_dir} already holds a run; `lionloop resume {run_dir}` continues it")
    pm = get_plugin_manager()
    pack = preflight(cfg, pm)  # a bad component, option, data file, row or column: nothing written yet
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(files):
        if files.run_file.exists():  # another `lionloop run` got there first
            raise RunError(f"{run_dir} already holds a run; `lionloop resume {run_dir}` continues it")
        run_id = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        files.config.write_text(dump_config(cfg.model_copy(update={"run_dir": run_dir})))
        files.run_file.write_text(
            json.dumps({"run_id": run_id, "created": time.time(), "lionloop": __version__}, indent=2)
        )
        rt = Runtime(cfg=cfg, run_dir=run_dir, run_id=run_id, reporter=reporter or Reporter(), pm=pm, task_pack=pack)
        try:
            final = _run(rt, {"run_id": run_id, "round": 1}, "run")
        finally:
            rt.close()
    return run_dir, final


def finished_state(run_dir: Path) -> dict[str, Any] | None:
    """The final graph state of a run that has finished, else None (running, stopped, crashed)."""
    files = RunDir(run_dir)
    _, run_id = files.read()
    if not files.checkpoints.exists():
        return None
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(files.checkpoints, check_same_thread=False)
    try:
        snapshot = build_graph(SqliteSaver(conn)).get_state(_thread(run_id))
    finally:
        conn.close()
    return dict(snapshot.values) if snapshot.values and not snapshot.next else None


def resume(run_dir: Path, reporter: Reporter | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue a run from its last checkpoint; finished nodes are not redone, paid calls not repaid.

    A finished run is left as it is: the returned state says `already_finished`."""
    files = RunDir(run_dir)
    cfg, run_id = files.read()
    holder = lock_holder(files)
    if holder is not None:  # refused at once, before any data is read
        raise busy(files, holder)
    done = finished_state(run_dir)
    if done is not None:
        log.info("run %s already finished (%s)", run_id, done.get("stop_reason"))
        return Path(run_dir), {**done, "already_finished": True}
    pm = get_plugin_manager()
    pack = preflight(cfg, pm)  # the plugins installed now must still take the run's config
    with RunLock(files):
        rt = Runtime(cfg=cfg, run_dir=Path(run_dir), run_id=run_id, reporter=reporter or Reporter(), pm=pm,
                     task_pack=pack)
        try:
            started = has_checkpoint(rt)
            final = _run(rt, None if started else {"run_id": run_id, "round": 1}, "resume")
        finally:
            rt.close()
    return Path(run_dir), final


def has_checkpoint(rt: Runtime) -> bool:
    """Whether the graph has a checkpoint to continue from (False: it crashed before the first)."""
    graph, conn = _graph_for(rt)
    try:
        return bool(graph.get_state(_thread(rt.run_id)).values)
    finally:
        conn.close()
