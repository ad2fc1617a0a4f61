"""Start, resume and inspect runs: the run directory and the checkpointed graph."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from lionloop import __version__
from lionloop.config import RunConfig, dump_config, load_config, parse_config
from lionloop.context import CHECKPOINT_FILE, CONFIG_FILE, POOL_FILE, Reporter, Runtime
from lionloop.errors import RunError

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
RECURSION_LIMIT = 100_000  # the graph loops; each round is 6 steps


def demo_config(rounds: int = 4, seed: int = 0, run_dir: Path | None = None) -> RunConfig:
    """The offline demo: oracle teacher on the `skills` pack, a tiny student trained from scratch."""
    return parse_config(
        {
            "name": "demo",
            "seed": seed,
            "run_dir": str(run_dir) if run_dir else None,
            "stop": {"max_rounds": rounds},
        },
        "demo",
    )


def _thread(run_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": run_id}, "recursion_limit": RECURSION_LIMIT}


def _graph_for(rt: Runtime) -> tuple[Any, sqlite3.Connection]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from lionloop.graph import build_graph

    conn = sqlite3.connect(rt.run_dir / CHECKPOINT_FILE, check_same_thread=False)
    return build_graph(rt, SqliteSaver(conn)), conn


def _invoke(rt: Runtime, input: Any) -> dict[str, Any]:
    graph, conn = _graph_for(rt)
    try:
        # durability="sync": the checkpoint of a finished node is on disk before the next starts.
        return graph.invoke(input, _thread(rt.run_id), durability="sync")
    finally:
        conn.close()


def start(cfg: RunConfig, reporter: Reporter | None = None) -> tuple[Path, dict[str, Any]]:
    """Create a run directory for `cfg` and run the loop to its end."""
    run_dir = cfg.resolved_run_dir()
    if (run_dir / RUN_FILE).exists():
        raise RunError(f"{run_dir} already holds a run; `lionloop resume {run_dir}` continues it")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    (run_dir / CONFIG_FILE).write_text(dump_config(cfg.model_copy(update={"run_dir": run_dir})))
    (run_dir / RUN_FILE).write_text(
        json.dumps({"run_id": run_id, "created": time.time(), "lionloop": __version__}, indent=2)
    )
    rt = Runtime(cfg=cfg, run_dir=run_dir, run_id=run_id, reporter=reporter or Reporter())
    try:
        final = _invoke(rt, {"run_id": run_id, "round": 1})
    finally:
        rt.close()
    return run_dir, final


def read_run(run_dir: Path) -> tuple[RunConfig, str]:
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists() or not (run_dir / CONFIG_FILE).exists():
        raise RunError(f"{run_dir}: not a lionloop run directory (no {RUN_FILE} / {CONFIG_FILE})")
    cfg = load_config(run_dir / CONFIG_FILE)
    cfg = cfg.model_copy(update={"run_dir": run_dir})
    run_id = json.loads((run_dir / RUN_FILE).read_text())["run_id"]
    return cfg, run_id


def resume(run_dir: Path, reporter: Reporter | None = None) -> tuple[Path, dict[str, Any]]:
    """Continue a run from its last checkpoint; finished nodes are not redone, paid calls not repaid."""
    cfg, run_id = read_run(run_dir)
    rt = Runtime(cfg=cfg, run_dir=Path(run_dir), run_id=run_id, reporter=reporter or Reporter())
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


def status(run_dir: Path) -> dict[str, Any]:
    """Per-round figures and pool totals, read-only (safe while the run writes)."""
    from lionloop.stores.pool import Pool

    cfg, run_id = read_run(run_dir)
    pool = Pool(Path(run_dir) / POOL_FILE, readonly=True)
    try:
        rounds = [r for r in pool.rounds() if r["round"] > 0]
        totals = {row["split"]: row["n"] for row in pool.query(
            "SELECT split, COUNT(*) AS n FROM instructions GROUP BY split")}
        by_origin = {row["origin"]: row["n"] for row in pool.query(
            "SELECT origin, COUNT(*) AS n FROM instructions WHERE split != 'eval' GROUP BY origin")}
        examples = pool.query("SELECT COUNT(*) AS n FROM examples")[0]["n"]
        stages = pool.query("SELECT round, stage FROM stages ORDER BY finished DESC LIMIT 1")
        boot = next((r["metrics"] for r in pool.rounds() if r["round"] == 0), {})
    finally:
        pool.close()
    cache = Pool(Path(cfg.teacher.cache_path or Path(run_dir) / POOL_FILE), readonly=True)
    try:
        row = cache.query(
            "SELECT COUNT(*) AS paid, COALESCE(SUM(repaid), 0) AS repaid,"
            " COALESCE(SUM(json_extract(usage, '$.prompt_tokens')), 0) AS prompt_tokens,"
            " COALESCE(SUM(json_extract(usage, '$.completion_tokens')), 0) AS completion_tokens,"
            " COALESCE(SUM(json_extract(usage, '$.cost')), 0) AS cost"
            " FROM llm_cache WHERE run_id = ?",
            (run_id,),
        )[0]
        calls = {"paid": row["paid"], "repaid": row["repaid"], "prompt_tokens": int(row["prompt_tokens"]),
                 "completion_tokens": int(row["completion_tokens"]), "cost": round(float(row["cost"]), 6)}
    except sqlite3.OperationalError:  # no call made yet
        calls = {"paid": 0, "repaid": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
    finally:
        cache.close()
    out_rounds = []
    for r in rounds:
        m = r["metrics"]
        teacher = m.get("teacher", {})
        out_rounds.append({
            "round": r["round"],
            "finished": r["finished"] is not None,
            "eval_accuracy": m.get("eval", {}).get("overall"),
            "eval_per_skill": m.get("eval", {}).get("per_skill", {}),
            "hard": m.get("referee", {}).get("hard"),
            "easy": m.get("referee", {}).get("easy"),
            "candidates": m.get("generate", {}).get("candidates", 0),
            "accepted": m.get("curate", {}).get("accepted", 0),
            "dedup_rejected": {k: v for k, v in m.get("curate", {}).get("rejected", {}).items()},
            "teacher_calls": int(sum(v.get("calls", 0) for v in teacher.values())),
            "cache_hits": int(sum(v.get("hits", 0) for v in teacher.values())),
            "teacher_failures": int(sum(v.get("failures", 0) for v in teacher.values())),
            **_teacher_usage(teacher),
            "teacher_by_stage": teacher,
            "seconds": m.get("seconds", {}),
            "work_seconds": m.get("work_seconds", {}),
            "train": m.get("train", {}),
            **({"train_roles": m["train_roles"]} if m.get("train_roles") else {}),
            "plugin_errors": m.get("generate", {}).get("plugin_errors", {}),
            "stop_reason": m.get("stop_reason"),
        })
    boot_teacher = boot.get("teacher", {})
    return {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "name": cfg.name,
        "last_stage": dict(stages[0]) if stages else None,
        "bootstrap": {**boot.get("bootstrap", {}),
                      "teacher_calls": int(sum(v.get("calls", 0) for v in boot_teacher.values())),
                      "cache_hits": int(sum(v.get("hits", 0) for v in boot_teacher.values())),
                      "teacher_failures": int(sum(v.get("failures", 0) for v in boot_teacher.values())),
                      **_teacher_usage(boot_teacher)},
        "rounds": out_rounds,
        "teacher_calls": calls,
        "pool": {"by_split": totals, "by_origin": by_origin, "examples": examples},
    }


def _teacher_usage(per_stage: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Tokens and estimated cost (teacher.cost_per_1k_*) of a round's paid teacher calls."""
    return {
        "teacher_tokens": {
            "prompt": int(sum(v.get("prompt_tokens", 0) for v in per_stage.values())),
            "completion": int(sum(v.get("completion_tokens", 0) for v in per_stage.values())),
        },
        "teacher_cost": round(float(sum(v.get("cost", 0.0) for v in per_stage.values())), 6),
    }
