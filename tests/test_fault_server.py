"""Whole loops over the `openai` backend against a scripted OpenAI-compatible server on loopback
that injects faults (429 + Retry-After, 500, slow past the timeout, dropped connections,
malformed bodies, empty content, no choices): the loop completes and every row is accounted
for; and `kill -9` during a teacher-heavy stage, then `lionloop resume`, repays no call.

The server's "model" is `SkillsChat`: a correct skills teacher reading lionloop's own rendered
prompts, so the loop is meaningful while the transport misbehaves.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MICRO, deep_merge, micro_config, pool_rows

from lionloop.testing.fault_server import ScriptedServer, content_key, cycle_plan
from lionloop.testing.skills_teacher import SkillsChat

pytestmark = pytest.mark.slow

# One content key in three meets a fault first; two keys in 20 never get an answer.
SCRIPTS: list[list[str | None]] = [[None]] * 8 + [
    ["429", None], ["500", None], ["drop", None], ["slow", None], ["malformed", None],
    ["empty", None], ["no_choices", None], ["429", "500", None], ["500"], ["empty"],
]
PRICE_IN, PRICE_OUT = 0.5, 1.5


def teacher_cfg(srv: ScriptedServer, **kw: Any) -> dict[str, Any]:
    return {
        "backend": "openai", "model": "skills-chat", "base_urls": [srv.base_url],
        "timeout_s": 1.0, "max_retries": 2, "retry_backoff_s": 0.01, "max_backoff_s": 0.05,
        "concurrency": 8, "cost_per_1k_input": PRICE_IN, "cost_per_1k_output": PRICE_OUT, **kw,
    }


rows = partial(pool_rows, named=True)  # columns by name


def test_a_loop_over_a_faulty_server_accounts_for_every_row(tmp_path: Path) -> None:
    from lionloop.inspect.status import run_status as status
    from lionloop.loop.runner import start

    chat = SkillsChat()
    with ScriptedServer(responder=chat, plan=cycle_plan(SCRIPTS), slow_s=1.5, retry_after="0",
                        retry_after_ms=20) as srv:
        out, final = start(micro_config(tmp_path / "run", teacher=teacher_cfg(srv)))
    assert final["stop_reason"] == "max_rounds"
    faults = srv.stats.faults
    assert set(faults) == {"429", "500", "drop", "slow", "malformed", "empty", "no_choices"}, faults
    assert set(chat.kinds) == {"answer", "judge", "rewrite"}  # every request type went over HTTP
    db = out / "pool.sqlite"
    st = status(out)

    # Per stage, every request ends answered or failed, and failures carry their kind.
    stages = [st["bootstrap"]] + st["rounds"]
    by_stage = [(0, "bootstrap", m) for m in [rows_metrics(db, 0)]] + [
        (r["round"], s, m) for r in st["rounds"] for s, m in r["teacher_by_stage"].items()]
    assert {s for _, s, _ in by_stage} >= {"bootstrap", "discriminate", "generate", "curate"}
    for rnd, stage, m in by_stage:
        assert m["requests"] == m["answered"] + m["failures"], (rnd, stage, m)
        assert sum(m.get("failure_reasons", {}).values()) == m["failures"], (rnd, stage, m)
    reasons = Counter(k for _, _, m in by_stage for k, v in m.get("failure_reasons", {}).items() for _ in range(v))
    assert reasons["http 500"] > 0 and reasons["parse"] > 0  # dead keys and forever-empty replies

    # Bootstrap: each seed answered or in the failures table with its reason.
    boot = st["bootstrap"]
    n_seeds = 3 * (MICRO["task"]["seeds_per_skill"] + MICRO["task"]["cache_per_skill"])
    assert boot["seeds"] + boot["cache"] + boot["seed_failures"] == n_seeds and boot["seed_failures"] > 0
    fails = rows(db, "SELECT round, stage, item_id, reason FROM failures")
    boot_fails = [f for f in fails if f["stage"] == "bootstrap"]
    assert len(boot_fails) == boot["seed_failures"]
    assert all(f["reason"].startswith(("http 500", "parse:")) for f in boot_fails), [f["reason"] for f in boot_fails]
    answered = {r["instruction_id"] for r in rows(db, "SELECT instruction_id FROM responses WHERE role='teacher'")}
    assert not answered & {f["item_id"] for f in boot_fails}

    # Discriminate: a verdict per judged case; scores only in 1-10; unjudged ones have a reason.
    for r in st["rounds"]:
        verdicts = rows(db, "SELECT * FROM verdicts WHERE round = ?", r["round"])
        judged = [v for v in verdicts if v["hard"] is not None and v["teacher_score"] is not None]
        assert judged and all(1 <= v["teacher_score"] <= 10 and 1 <= v["student_score"] <= 10 for v in judged)
        unjudged = {v["instruction_id"] for v in verdicts if v["hard"] is None}
        recorded = {f["item_id"] for f in fails if f["round"] == r["round"] and f["stage"] == "discriminate"}
        assert unjudged == recorded
        assert r["hard"] + r["easy"] + len(unjudged) == len(verdicts)

    # Generate + curate: every candidate ends accepted, rejected or failed (with a reason).
    cands = rows(db, "SELECT status, reason FROM candidates")
    assert cands and {c["status"] for c in cands} <= {"accepted", "rejected", "failed"}
    assert all(c["reason"] for c in cands if c["status"] != "accepted")
    gen = st["rounds"][0]["teacher_by_stage"]["generate"]
    assert st["rounds"][0]["candidates"] == gen["answered"]  # one candidate per usable rewrite

    # Tokens and cost: per round in status, and in total from the cache (crash-safe).
    total = st["teacher_calls"]
    assert total["repaid"] == 0 and total["paid"] == sum(s["teacher_calls"] for s in stages)
    assert total["prompt_tokens"] == sum(s["teacher_tokens"]["prompt"] for s in stages) > 0
    assert total["cost"] == pytest.approx(
        total["prompt_tokens"] / 1000 * PRICE_IN + total["completion_tokens"] / 1000 * PRICE_OUT, rel=1e-6)
    assert total["cost"] == pytest.approx(sum(s["teacher_cost"] for s in stages), rel=1e-6)


def rows_metrics(db: Path, rnd: int) -> dict[str, Any]:
    (row,) = rows(db, "SELECT metrics FROM rounds WHERE round = ?", rnd)
    return json.loads(row["metrics"])["teacher"]["bootstrap"]


# -- kill -9 during a teacher-heavy stage, then resume ------------------------------------------


def _events(run: Path) -> list[dict[str, Any]]:
    path = run / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _paid_in(run: Path, rnd: int, stage: str) -> int:
    try:
        return rows(run / "pool.sqlite", "SELECT COUNT(*) AS n FROM llm_cache WHERE round = ? AND stage = ?",
                    rnd, stage)[0]["n"]
    except sqlite3.OperationalError:
        return 0


def _cached_content_keys(run: Path) -> set[str]:
    out = set()
    for r in rows(run / "pool.sqlite", "SELECT model, request FROM llm_cache"):
        req = json.loads(r["request"])
        out.add(content_key({"model": r["model"], "messages": req["messages"],
                             "response_format": req.get("response_format")}))
    return out


def _kill_when_paying(proc: subprocess.Popen, run: Path, rnd: int, stage: str) -> None:
    """kill -9 the process group of `proc` once (rnd, stage) has started and paid 6 calls."""
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        started = any(e["event"] == "stage_start" and e["round"] == rnd and e["stage"] == stage
                      for e in _events(run))
        if started and _paid_in(run, rnd, stage) >= 6:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"the run ended before paying in {stage}: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")


def test_kill_9_in_teacher_stages_then_resume_repays_no_call(tmp_path: Path) -> None:
    """Killed in bootstrap, resumed and killed again in round 1's referee stage, resumed to the end:
    each process after a kill asks the server nothing that was paid for before it."""
    chat = SkillsChat()
    kills = [(0, "bootstrap"), (1, "discriminate")]
    # Slow enough that the stage is caught half-way: 2 requests in flight, 0.1 s each.
    with ScriptedServer(responder=chat, latency_s=0.1, plan=cycle_plan([[None]] * 5 + [["500", None]]),
                        retry_after_ms=10) as srv:
        run = tmp_path / "run"
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(yaml.safe_dump(deep_merge(MICRO, {
            "run_dir": str(run), "teacher": teacher_cfg(srv, concurrency=2, timeout_s=10)})))
        command: list[str] = ["run", str(cfg)]
        paid_at_kill: dict[tuple[int, str], int] = {}
        cached: set[str] = set()
        for rnd, stage in kills:
            srv.stats.seen.clear()
            proc = subprocess.Popen([sys.executable, "-m", "lionloop.cli", *command],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            _kill_when_paying(proc, run, rnd, stage)
            evs = _events(run)
            assert not any(e["event"] == "stage_end" and e["round"] == rnd and e["stage"] == stage for e in evs)
            paid_at_kill[(rnd, stage)] = _paid_in(run, rnd, stage)
            assert not cached & set(srv.stats.seen)  # nothing paid for before the kill before it
            cached = _cached_content_keys(run)
            assert paid_at_kill[(rnd, stage)] >= 6 and cached
            command = ["resume", str(run)]

        srv.stats.seen.clear()
        res = subprocess.run([sys.executable, "-m", "lionloop.cli", "resume", str(run)],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        asked_after = set(srv.stats.seen)
    # Nothing that was paid for before the last kill went to the server again...
    assert not cached & asked_after
    # ...the cache agrees, and each interrupted stage finished on top of what it had.
    (row,) = rows(run / "pool.sqlite", "SELECT COUNT(*) AS n, COALESCE(SUM(repaid), 0) AS repaid FROM llm_cache")
    assert row["repaid"] == 0
    assert all(_paid_in(run, rnd, stage) > n for (rnd, stage), n in paid_at_kill.items())
    assert any(e["event"] == "stop" for e in _events(run))
