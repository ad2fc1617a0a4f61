"""Where a checkpointed run stands, and whether its pool holds what its checkpoint says is done.

A stage's marker commits with its rows in the pool before LangGraph writes the checkpoint after it,
so a pool behind its checkpoint lost committed writes."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionloop.errors import RunError
from lionloop.loop.graph import build_graph
from lionloop.rundir import RunDir
from lionloop.stores.connection import connect

RECURSION_LIMIT = 100_000  # the graph loops; each round is 6 steps


def thread(run_id: str) -> dict[str, Any]:
    """The LangGraph config of a run: its checkpoint thread."""
    return {"configurable": {"thread_id": run_id}, "recursion_limit": RECURSION_LIMIT}


@dataclass(frozen=True)
class Position:
    """Where a checkpointed run stands: the graph state at the start of its last checkpointed step,
    the nodes of that step (none: the run finished) and those of them that finished before the
    process ended (their output is saved as pending writes; the next checkpoint was not written).

    Read from LangGraph's record view of the checkpoint, not its live view: the live view folds a
    finished node's output into the state and leaves the node out of `next`, so a run killed between
    a node's end and the next checkpoint read as finished there (`next` empty)."""

    values: dict[str, Any]
    step: tuple[str, ...]
    done: tuple[str, ...]

    @property
    def started(self) -> bool:
        """False: it crashed before the first checkpoint."""
        return bool(self.values)

    @property
    def finished(self) -> bool:
        return self.started and not self.step

    def markers(self) -> list[tuple[int, str]]:
        """The (round, stage) markers the pool must hold: the stages done before the step, and
        those of its nodes that finished."""
        r = int(self.values.get("round") or 1)
        done = [(0, "bootstrap") if name == "bootstrap" else (r, name) for name in self.done]
        return expected_markers(self.values, self.step[0] if self.step else None) + done


def position(graph: Any, run_id: str) -> Position:
    """The position of run `run_id` in `graph` (compiled with the run's checkpointer)."""
    live = graph.get_state(thread(run_id))
    if not live.values:
        return Position({}, (), ())
    record = graph.get_state({**thread(run_id), **live.config})  # with its checkpoint id: the record view
    return Position(dict(record.values), tuple(record.next), tuple(t.name for t in record.tasks if t.result is not None))


def checkpointed_graph(path: Path) -> tuple[Any, sqlite3.Connection]:
    """The loop compiled with the checkpointer of the file `path`, and that file's connection (the
    caller closes it)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    return build_graph(SqliteSaver(conn)), conn


def run_position(run_dir: Path) -> Position | None:
    """The position of a run's graph, or None when it has no checkpoint file."""
    files = RunDir(run_dir)
    _, run_id = files.read()
    if not files.checkpoints.exists():
        return None
    graph, conn = checkpointed_graph(files.checkpoints)
    try:
        return position(graph, run_id)
    finally:
        conn.close()


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


def check_pool_holds_checkpoint(files: RunDir, pos: Position) -> None:
    """The pool must hold every stage the graph's checkpoint says is done. A stage marker commits
    with the stage's rows before the checkpoint is written, so a pool behind its checkpoint lost
    committed writes (a truncated WAL, a restored older file): resuming would skip the lost stages
    and finish with a smaller pool, so refuse, before anything is written."""
    conn = connect(files.pool, readonly=True)
    try:
        have = {(row[0], row[1]) for row in conn.execute("SELECT round, stage FROM stages")}
    finally:
        conn.close()
    missing = [m for m in pos.markers() if m not in have]
    if missing:
        named = ", ".join(f"round {r} {s}" for r, s in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise RunError(
            f"{files.pool}: the pool lacks stages the run's checkpoint records as done ({named}): it lost "
            "committed writes (a truncated WAL or an older copy of the file?); nothing was written. "
            "Restore pool.sqlite with its -wal file from a backup"
        )

