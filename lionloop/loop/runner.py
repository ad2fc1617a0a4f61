"""Start and resume runs: the run directory and the checkpointed graph."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from lionloop import __version__
from lionloop.config import RunConfig, dump_config
from lionloop.errors import RunError
from lionloop.loop.checkpoints import (
    check_pool_holds_checkpoint,
    checkpointed_graph,
    position,
    run_position,
    thread,
)
from lionloop.loop.preflight import preflight, preflight_resume
from lionloop.loop.runtime import Reporter, Runtime
from lionloop.plugin.manager import get_plugin_manager
from lionloop.rundir import RunDir, RunLock, busy, lock_holder

log = logging.getLogger(__name__)


def _invoke(rt: Runtime, input: Any) -> dict[str, Any]:
    graph, conn = checkpointed_graph(rt.files.checkpoints)
    try:
        # durability="sync": the checkpoint of a finished node is on disk before the next starts.
        return graph.invoke(input, thread(rt.run_id), context=rt, durability="sync")
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
        # Whole, as `lionloop status` shows it (a referee error quoting a server's message ran past 500).
        rt.event(event="error", message=f"{type(err).__name__}: {' '.join(str(err).split())[:2000]}", **rt.current)
        raise


def start(cfg: RunConfig, reporter: Reporter | None = None, pack: Any = None) -> tuple[Path, dict[str, Any]]:
    """Create a run directory for `cfg` and run the loop to its end (holding the run's lock).

    Nothing is written before the config passed `preflight`; `config.yaml` and `run.json` (what
    makes the directory a run) only once every component was built. A config error on the way
    leaves the directory as it was, so the corrected config can be run into it. `pack`: the task
    pack `preflight(cfg)` returned, when the caller already ran it (the CLI does, before its heavy
    imports): a dataset pack's files are then not read and checked a second time.
    """
    run_dir = cfg.resolved_run_dir()
    files = RunDir(run_dir)
    if files.run_file.exists():
        raise RunError(f"{run_dir} already holds a run; `lionloop resume {run_dir}` continues it")
    pm = get_plugin_manager()
    if pack is None:
        pack = preflight(cfg, pm)  # a bad path, component, option, data file, row or column: nothing written yet
    undo = _Undo(run_dir, cfg.teacher.cache_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(files):
        if files.run_file.exists():  # another `lionloop run` got there first
            raise RunError(f"{run_dir} already holds a run; `lionloop resume {run_dir}` continues it")
        run_id = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        try:
            rt = Runtime(cfg=cfg, run_dir=run_dir, run_id=run_id, reporter=reporter or Reporter(), pm=pm,
                         task_pack=pack)
        except BaseException:
            undo()
            raise
        try:
            files.config.write_text(dump_config(cfg.model_copy(update={"run_dir": run_dir})))
            files.run_file.write_text(
                json.dumps({"run_id": run_id, "created": time.time(), "lionloop": __version__}, indent=2)
            )
            final = _run(rt, {"run_id": run_id, "round": 1}, "run")
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


def resume(run_dir: Path, reporter: Reporter | None = None,
           checked: tuple[RunConfig, str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue a run from its last checkpoint; finished nodes are not redone, paid calls not repaid.

    A finished run is left as it is: the returned state says `already_finished`. `checked`: what
    `preflight_resume(run_dir)` returned, when the caller already ran it (the CLI does)."""
    files = RunDir(run_dir)
    _, run_id = files.read()
    holder = lock_holder(files)
    if holder is not None:  # refused at once, before any data is read
        raise busy(files, holder)
    pos = run_position(run_dir)
    if pos is not None and pos.finished:
        check_pool_holds_checkpoint(files, pos)
        log.info("run %s already finished (%s)", run_id, pos.values.get("stop_reason"))
        return Path(run_dir), {**pos.values, "already_finished": True}
    pm = get_plugin_manager()
    # Sound files, and a config the plugins and files there now still take: nothing written yet.
    cfg, run_id, pack = checked if checked is not None else preflight_resume(Path(run_dir), pm)
    with RunLock(files):
        rt = Runtime(cfg=cfg, run_dir=Path(run_dir), run_id=run_id, reporter=reporter or Reporter(), pm=pm,
                     task_pack=pack)
        try:
            graph, conn = checkpointed_graph(rt.files.checkpoints)
            pos = position(graph, run_id)
            conn.close()
            check_pool_holds_checkpoint(files, pos)
            final = _run(rt, None if pos.started else {"run_id": run_id, "round": 1}, "resume")
        finally:
            rt.close()
    return Path(run_dir), final
