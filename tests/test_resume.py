"""kill -9 in any stage, then `lionloop resume`: same pool as an uninterrupted run, no call repaid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import MICRO, deep_merge, pool_rows

from lionloop.bench.common import events, paid_calls

# Simulated teacher latency stretches the teacher-heavy stages so the kill lands inside them.
# Latency is not part of the cache key and cannot change results.
CRASH_CFG = deep_merge(MICRO, {"teacher": {"latency_ms": 15}})


def _ids(run: Path) -> list[str]:
    return sorted(r[0] for r in pool_rows(run, "SELECT id FROM instructions"))


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lionloop.cli", *args], capture_output=True, text=True, timeout=timeout)


# With a teacher budget the referee's sample (judge.budget_share) and the generators' quotas are
# computed from what is left: a stage resumed after a kill must see what it saw the first time.
BUDGET_CFG = deep_merge(CRASH_CFG, {"generate": {"max_new_per_round": 100},
                                    "stop": {"max_rounds": 3, "max_teacher_calls": 200, "stop_when_no_hard": False}})


def _baseline(d: Path, cfg_dict: dict) -> Path:
    cfg = d / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**cfg_dict, "run_dir": str(d / "run")}))
    proc = _cli("run", str(cfg))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return d / "run"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _baseline(tmp_path_factory.mktemp("baseline"), CRASH_CFG)


@pytest.fixture(scope="module")
def baseline_figures(baseline: Path) -> dict:
    return _figures(json.loads(_cli("status", str(baseline), "--json").stdout))


@pytest.fixture(scope="module")
def budget_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _baseline(tmp_path_factory.mktemp("budget-baseline"), BUDGET_CFG)


@pytest.fixture(scope="module")
def budget_baseline_figures(budget_baseline: Path) -> dict:
    return _figures(json.loads(_cli("status", str(budget_baseline), "--json").stdout))


def _figures(st: dict) -> dict:
    """Per round and stage: teacher requests, answers, cache hits and failures (status --json)."""
    out = {(0, "bootstrap"): {k: st["bootstrap"][k] for k in ("teacher_calls", "cache_hits", "teacher_failures")}}
    for r in st["rounds"]:
        for stage, v in r["teacher_by_stage"].items():
            out[(r["round"], stage)] = {k: v.get(k) for k in ("calls", "requests", "answered", "hits", "failures")}
    return out


# One process is killed in each of these stages in turn, each kill followed by a resume that is
# itself killed in the next stage, and the last resume finishes the run: a kill in one stage, then
# one in the next, is what a flaky machine does, and one run through all of them costs what one
# run with one kill did (a run per kill took 4 minutes of the test run; this takes one).
KILLS = [(0, "bootstrap"), (1, "imitate"), (1, "evaluate"), (1, "discriminate"), (1, "generate"), (1, "curate"),
         (2, "discriminate")]
BUDGET_KILLS = [(1, "discriminate"), (1, "generate")]


@pytest.mark.slow
def test_kill_9_in_each_stage_then_resume(tmp_path: Path, baseline: Path, baseline_figures: dict) -> None:
    _kill_and_resume(tmp_path, CRASH_CFG, baseline, baseline_figures, KILLS)


@pytest.mark.slow
def test_kill_9_then_resume_under_a_budget(tmp_path: Path, budget_baseline: Path, budget_baseline_figures: dict) -> None:
    _kill_and_resume(tmp_path, BUDGET_CFG, budget_baseline, budget_baseline_figures, BUDGET_KILLS)


def _kill_in(run: Path, command: str, cfg_or_run: Path, round_: int, stage: str) -> dict:
    """Start `lionloop COMMAND`, kill -9 its process group once it is inside (round_, stage), and
    say what the kill left: the stage it landed in, whether that stage had ended (its `stage_end`
    event, or its pool marker: the marker is committed with the stage's rows and the event follows
    the commit, so a kill between the two leaves a finished stage without its event)."""
    n_events = len(events(run))
    proc = subprocess.Popen([sys.executable, "-m", "lionloop.cli", command, str(cfg_or_run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        evs = events(run)[n_events:]
        if any(e["event"] == "stage_start" and e["round"] == round_ and e["stage"] == stage for e in evs):
            time.sleep(0.3)  # into the stage
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            evs = events(run)[n_events:]
            killed_in = next(e for e in reversed(evs) if e["event"] == "stage_start")
            key = (killed_in["round"], killed_in["stage"])
            marked = bool(pool_rows(run, "SELECT 1 FROM stages WHERE round = ? AND stage = ?", *key))
            end_event = any(e["event"] == "stage_end" and (e["round"], e["stage"]) == key for e in evs)
            return {"key": key, "marked": marked, "end_event": end_event, "paid_before": paid_calls(run)[0]}
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"`lionloop {command}` ended before reaching round {round_} · {stage}")


def _kill_and_resume(tmp_path: Path, cfg_dict: dict, baseline: Path, baseline_figures: dict,
                     kills: list[tuple[int, str]]) -> None:
    run = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**cfg_dict, "run_dir": str(run)}))
    done = [_kill_in(run, "run", cfg, *kills[0])]
    for round_, stage in kills[1:]:
        # A fast stage can end inside the 0.3 s a kill waits, and the kill land in a later one:
        # a target already started is passed over.
        if any(e["event"] == "stage_start" and (e["round"], e["stage"]) == (round_, stage) for e in events(run)):
            continue
        done.append(_kill_in(run, "resume", run, round_, stage))
    assert len({k["key"] for k in done}) == len(done) >= len(kills) - 1, done  # each kill in a stage of its own

    res = _cli("resume", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    st = json.loads(_cli("status", str(run), "--json").stdout)
    assert st["rounds"][-1]["stop_reason"] == "max_rounds"

    # Same pool as the uninterrupted run with the same seed.
    assert _ids(run) == _ids(baseline)
    # No teacher call paid twice: same number of paid calls, none repaid, and what was paid
    # before the kills was served from the cache after them.
    paid, repaid = paid_calls(run)
    assert repaid == 0
    assert paid == paid_calls(baseline)[0]
    # Served from the cache after a kill: cache hits, or the killed stage's own replies (`resumed`).
    hits = sum(r["cache_hits"] for r in st["rounds"]) + st["bootstrap"]["cache_hits"]
    resumed = sum(v.get("resumed") or 0 for r in st["rounds"] for v in r["teacher_by_stage"].values())
    if any(k["paid_before"] and k["key"][1] != "imitate" for k in done):
        assert hits + resumed > 0
    # Status reads as it would without the crashes: per round and stage, the same requests, answers,
    # cache hits and failures (a stage's own replies paid before a kill count as `resumed`, and
    # stages finished before it keep their figures: they read 0/0 after a resume before).
    assert _figures(st) == baseline_figures
    evs = events(run)
    for k in done:
        # A stage killed midway is started again by the resumed process and finished once; a
        # stage that had just finished (fast stages can beat the kill) is not redone.
        ended = k["marked"] or k["end_event"]
        starts = sum(1 for e in evs if e["event"] == "stage_start" and (e["round"], e["stage"]) == k["key"])
        assert starts == (1 if ended else 2), k
        # Killed between the commit and its event, the stage keeps no `stage_end` (the resumed
        # process does not run it again); otherwise exactly one.
        ends = sum(1 for e in evs if e["event"] == "stage_end" and (e["round"], e["stage"]) == k["key"])
        assert ends == (0 if k["marked"] and not k["end_event"] else 1), k


def _cut_checkpoints_after(run: Path, node: str, round_: int) -> None:
    """Leave the run's checkpoint file as a kill between `node`'s end and the next checkpoint
    leaves it: the last checkpoint is the one about to run `node`, with `node`'s output saved as
    its pending writes."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from lionloop.loop.checkpoints import thread
    from lionloop.loop.graph import build_graph
    from lionloop.rundir import RunDir

    _, run_id = RunDir(run).read()
    with sqlite3.connect(run / "checkpoints.sqlite", check_same_thread=False) as conn:
        history = build_graph(SqliteSaver(conn)).get_state_history(thread(run_id))
        at = next(s for s in history if s.next == (node,) and s.values.get("round") == round_)
        cp = at.config["configurable"]["checkpoint_id"]
        conn.execute("DELETE FROM checkpoints WHERE checkpoint_id > ?", (cp,))
        conn.execute("DELETE FROM writes WHERE checkpoint_id > ?", (cp,))
        assert conn.execute("SELECT COUNT(*) FROM writes WHERE checkpoint_id = ?", (cp,)).fetchone()[0] > 0


@pytest.mark.parametrize(("node", "round_"), [("generate", 1), ("decide", 1)])
def test_killed_between_a_nodes_end_and_its_checkpoint(micro_run: Path, tmp_path: Path, node: str, round_: int) -> None:
    """LangGraph's live state folds a finished node's pending output in and leaves the node out of
    `next`: a run killed there read as finished (resume said "nothing to resume", or refused it as
    a pool that lost its round's decide). It is a run to continue after that node."""
    import shutil

    from lionloop.loop.checkpoints import run_position

    run = tmp_path / "run"
    shutil.copytree(micro_run, run)
    _cut_checkpoints_after(run, node, round_)
    pos = run_position(run)
    assert not pos.finished and pos.step == (node,) and pos.done == (node,)
    assert (round_, node) in pos.markers()
    ids, n_events = _ids(run), len(events(run))

    res = _cli("resume", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "nothing to resume" not in " ".join(res.stdout.split())
    after = events(run)[n_events:]
    assert after[0]["event"] == "run_start" and after[0]["command"] == "resume"
    # The finished node is not run again; the graph goes on from the node after it.
    assert not any(e["event"] in ("stage_start", "stage_skip") and (e["round"], e["stage"]) == (round_, node)
                   for e in after)
    assert any(e["event"] == "stage_skip" and e["round"] == 2 for e in after)
    assert run_position(run).finished and _ids(run) == ids
