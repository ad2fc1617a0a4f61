"""The `batch` teacher backend against a loopback implementation of OpenAI's Batch API
(`lionloop.testing.batch_server`): the real API cannot be reached from here (no network, and it is
paid), so these tests check lionloop's side of the protocol — one job per ask, the job recorded
before waiting, a resumed run polling the recorded job instead of submitting again, expired and
failed requests, the half price and what it saved. The same backend driving the real `vllm
run-batch` is tested in tests/test_batch_vllm.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MICRO, deep_merge, micro_config, pool_rows

from lionloop.config import TeacherConfig
from lionloop.plugin.context import BackendEnv
from lionloop.plugins.backend_batch import BatchOptions, make_batch_backend
from lionloop.stores.cache import CallCache
from lionloop.teacher.batch import BatchLedger
from lionloop.teacher.client import Teacher
from lionloop.teacher.requests import Answer, Judge
from lionloop.testing.batch_server import BatchServer
from lionloop.testing.skills_teacher import SkillsChat

PRICE_IN, PRICE_OUT = 0.5, 1.5


class Killed(BaseException):
    """Stands for kill -9 at a chosen point: nothing after it runs in this 'process'."""


def cfg(srv: BatchServer, **options: Any) -> TeacherConfig:
    return TeacherConfig(backend="batch", model="skills-chat", base_urls=[srv.base_url],
                         cost_per_1k_input=PRICE_IN, cost_per_1k_output=PRICE_OUT,
                         options={"poll_s": 0.05, **options})


def teacher(run: Path, tcfg: TeacherConfig) -> Teacher:
    env = BackendEnv(section="teacher", task_pack=None, run_dir=run,  # type: ignore[arg-type]
                     options=BatchOptions.model_validate(tcfg.options))
    backend = make_batch_backend(tcfg, env)
    return Teacher(backend, CallCache(run / "pool.sqlite"), "run", parse_retries=0).at(1, "curate")


def requests(n: int) -> list[Any]:
    return [Answer(instruction=f"reverse {w}") for w in ("abc", "bca", "cab", "hgf", "defg", "ab")[:n]] + [
        Judge(instruction="copy ab", answer_1="ab", answer_2="ba")]


def test_one_job_per_ask_recorded_before_waiting_at_half_price(tmp_path: Path) -> None:
    with BatchServer(responder=SkillsChat(), delay_s=0.3) as srv:
        t = teacher(tmp_path, cfg(srv))
        ledger_at_first_poll: list[dict[str, Any]] = []
        poll = t.backend.runner.poll

        def spy(batch_id: str) -> Any:
            if not ledger_at_first_poll:
                ledger_at_first_poll.extend(BatchLedger(tmp_path).jobs())
            return poll(batch_id)

        t.backend.runner.poll = spy
        res = t.ask(requests(6))
    assert all(r.ok for r in res), [r.error for r in res]
    assert [r.output.text for r in res[:6]] == ["cba", "acb", "bac", "fgh", "gfed", "ba"]
    assert res[6].output.score_1 == 10 > res[6].output.score_2
    assert len(srv.stats.created) == 1 and max(srv.stats.billed.values()) == 1
    # Before the first poll, the job and its provider id were in the pool.
    (job,) = ledger_at_first_poll
    assert job["status"] == "submitted" and job["batch_id"].startswith("batch_") and job["requests"] == 7
    assert job["tag"] == srv.stats.created[0]
    assert BatchLedger(tmp_path).jobs()[0]["status"] == "collected"
    # Half the list price, and the other half recorded as saved.
    s = t.stats()[(1, "curate")]
    full = s["prompt_tokens"] / 1000 * PRICE_IN + s["completion_tokens"] / 1000 * PRICE_OUT
    assert s["calls"] == 7 and s["cost"] == pytest.approx(full / 2) and s["saved"] == pytest.approx(full / 2)
    # Asked again: the cache answers, no job is created.
    assert all(r.ok and r.cached for r in t.ask(requests(6)))
    assert len(srv.stats.created) == 1


@pytest.mark.parametrize("crash", ["while waiting", "after create, before its id was recorded"])
def test_a_run_killed_while_a_job_is_pending_waits_on_that_job(tmp_path: Path, crash: str) -> None:
    with BatchServer(responder=SkillsChat(), delay_s=0.5) as srv:
        first = teacher(tmp_path, cfg(srv))
        if crash == "while waiting":
            def killed_poll(batch_id: str) -> Any:
                raise Killed
            first.backend.runner.poll = killed_poll
        else:
            submit = first.backend.runner.submit

            def killed_submit(tag: str, lines: list[dict[str, Any]]) -> str:
                submit(tag, lines)
                raise Killed
            first.backend.runner.submit = killed_submit
        with pytest.raises(Killed):
            first.ask(requests(6))
        (job,) = BatchLedger(tmp_path).jobs()
        assert job["status"] == ("submitted" if crash == "while waiting" else "submitting")
        # The resumed run: a new process, the same requests.
        second = teacher(tmp_path, cfg(srv))
        res = second.ask(requests(6))
    assert all(r.ok for r in res)
    assert len(srv.stats.created) == 1 and second.backend.submitted == []  # no second job
    assert max(srv.stats.billed.values()) == 1 and len(srv.stats.billed) == 7
    assert second.cache.repaid() == 0 and BatchLedger(tmp_path).jobs()[0]["status"] == "collected"


def test_expired_and_failed_requests_are_failures_and_go_out_again(tmp_path: Path) -> None:
    bad = {"n": 0}

    def first_time_bad(cid: str) -> bool:
        bad["n"] += 1
        return bad["n"] == 1  # the first request the server answers fails once

    with BatchServer(responder=SkillsChat(), delay_s=10, expire_s=0.3, errors=first_time_bad) as srv:
        t = teacher(tmp_path, cfg(srv))
        res = t.ask(requests(6))
        failed = [r for r in res if not r.ok]
        assert len(failed) == 5  # 4 of 7 past the expiry, 1 error line
        reasons = sorted(r.error for r in failed)
        assert reasons[0].startswith("batch: http 500") and all(
            "job expired without a result" in x for x in reasons[1:]), reasons
        assert BatchLedger(tmp_path).jobs()[0]["status"] == "expired"
        assert not any(r.cached for r in t.ask(requests(6)[:0]))
        srv.delay_s, srv.expire_s = 0.2, None
        again = t.ask(requests(6))
    assert all(r.ok for r in again)
    assert sum(r.cached for r in again) == 2 and len(srv.stats.created) == 2
    # Only what had no answer went out again; nothing was billed twice.
    second_job = BatchLedger(tmp_path).jobs()[1]
    assert second_job["requests"] == 5 and second_job["status"] == "collected"
    assert max(srv.stats.billed.values()) == 1 and sum(srv.stats.failed.values()) == 1


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    from lionloop.errors import ConfigError
    from lionloop.loop.preflight import preflight
    from lionloop.plugin.manager import get_plugin_manager

    for options, path in (({"runner": "ray"}, "teacher.options.runner"), ({"discount": 2}, "teacher.options.discount")):
        with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
            preflight(micro_config(tmp_path / "x", teacher={"backend": "batch", "model": "m", "options": options}),
                      get_plugin_manager())


# -- whole loops ------------------------------------------------------------------------------------


def loop_teacher(srv: BatchServer) -> dict[str, Any]:
    return {"backend": "batch", "model": "skills-chat", "base_urls": [srv.base_url], "parse_retries": 0,
            "cost_per_1k_input": PRICE_IN, "cost_per_1k_output": PRICE_OUT, "options": {"poll_s": 0.05}}


def test_an_evaluation_by_the_referee_records_its_jobs_beside_its_calls_not_in_the_pool(
        micro_run: Path, tmp_path: Path) -> None:
    """`lionloop evaluate --referee` with a batch teacher: the jobs it pays for are recorded in
    RUN_DIR/evaluate.sqlite with its calls, so the run's pool is left as it was, and a second
    evaluation submits nothing."""
    import shutil

    from lionloop.loop.held_out import evaluate_round

    run = tmp_path / "run"
    shutil.copytree(micro_run, run)
    conf = yaml.safe_load((run / "config.yaml").read_text())
    pool_bytes = (run / "pool.sqlite").read_bytes()
    with BatchServer(responder=SkillsChat(), delay_s=0.1) as srv:
        conf["teacher"] = loop_teacher(srv)
        (run / "config.yaml").write_text(yaml.safe_dump(conf))
        judged = evaluate_round(run, per_skill=4, referee=True)
        again = evaluate_round(run, per_skill=4, referee=True)
        created = len(srv.stats.created)
    by_verifier = evaluate_round(run, per_skill=4)
    assert judged["metric"] == "referee" and judged["right"] == by_verifier["right"]  # SkillsChat judges by the verifier
    assert judged["teacher_calls"] > 0 and again["teacher_calls"] == 0
    assert (run / "pool.sqlite").read_bytes() == pool_bytes
    with sqlite3.connect(run / "evaluate.sqlite") as conn:
        jobs = conn.execute("SELECT status, requests FROM teacher_batches").fetchall()
    assert created == len(jobs) >= 2 and {j[0] for j in jobs} == {"collected"}  # answers, then judgements
    assert sum(j[1] for j in jobs) == judged["teacher_calls"]


@pytest.mark.slow
def test_a_loop_through_the_batch_api_shows_the_saving(tmp_path: Path) -> None:
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    with BatchServer(responder=SkillsChat(), delay_s=0.2) as srv:
        out, final = start(micro_config(tmp_path / "run", teacher=loop_teacher(srv)))
    assert final["stop_reason"] == "max_rounds"
    st = run_status(out)
    total = st["teacher_calls"]
    full = total["prompt_tokens"] / 1000 * PRICE_IN + total["completion_tokens"] / 1000 * PRICE_OUT
    assert total["paid"] > 0 and total["repaid"] == 0
    assert total["cost"] == pytest.approx(full / 2, rel=1e-6) and total["saved"] == pytest.approx(full / 2, rel=1e-6)
    assert sum(r["teacher_saving"] for r in [st["bootstrap"], *st["rounds"]]) == pytest.approx(total["saved"], rel=1e-6)
    jobs = pool_rows(out, "SELECT status, requests FROM teacher_batches")
    assert len(jobs) == len(srv.stats.created) >= 4 and {j[0] for j in jobs} == {"collected"}
    assert max(srv.stats.billed.values()) == 1 and sum(srv.stats.billed.values()) == total["paid"]


def _submitted(run: Path) -> int:
    """Jobs the run has recorded as submitted and not yet collected (0 before its pool exists)."""
    try:
        return pool_rows(run, "SELECT COUNT(*) FROM teacher_batches WHERE status = 'submitted'")[0][0]
    except sqlite3.Error:  # no pool file or table yet
        return 0


@pytest.mark.slow
def test_kill_9_while_a_batch_is_pending_repays_nothing(tmp_path: Path) -> None:
    with BatchServer(responder=SkillsChat(), delay_s=2.0) as srv:
        run = tmp_path / "run"
        conf = tmp_path / "cfg.yaml"
        conf.write_text(yaml.safe_dump(deep_merge(MICRO, {"run_dir": str(run), "teacher": loop_teacher(srv)})))
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        proc = subprocess.Popen([sys.executable, "-m", "lionloop.cli", "run", str(conf)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline, killed = time.time() + 300, False
        while time.time() < deadline and proc.poll() is None:
            # Wait for the second job (the first answers the seeds) to be created, pending, and its id
            # recorded in the pool (on loaded cores the kill once landed between the job's creation
            # and that record: the case the test above covers, not this one).
            pending = [b for b in srv.batches.values() if b["status"] in ("validating", "in_progress")]
            if len(srv.stats.created) >= 2 and pending and _submitted(run) == 1:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                killed = True
                break
            time.sleep(0.05)
        assert killed, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert pool_rows(run, "SELECT COUNT(*) FROM teacher_batches WHERE status = 'submitted'")[0][0] == 1
        created_at_kill = len(srv.stats.created)
        res = subprocess.run([sys.executable, "-m", "lionloop.cli", "resume", str(run)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    # The pending job was waited on, not created again; no request was answered (paid) twice.
    tags = [r[0] for r in pool_rows(run, "SELECT tag FROM teacher_batches ORDER BY created")]
    assert tags == srv.stats.created and len(tags) > created_at_kill
    assert max(srv.stats.billed.values()) == 1
    (row,) = pool_rows(run, "SELECT COUNT(*), COALESCE(SUM(repaid), 0) FROM llm_cache")
    assert row[1] == 0 and row[0] == sum(srv.stats.billed.values())
    st = json.loads(subprocess.run([sys.executable, "-m", "lionloop.cli", "status", str(run), "--json"],
                                   capture_output=True, text=True, check=True).stdout)
    assert st["teacher_calls"]["repaid"] == 0 and st["teacher_calls"]["saved"] > 0


def test_the_batch_api_client_waits_what_a_429_asks_and_gives_up_on_a_400_at_once() -> None:
    """Retry-After in milliseconds (retry-after-ms, as OpenAI sends it) is honoured; a 400 is not
    retried: the same request fails the same way. A loopback HTTP server stands for the API."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from lionloop.plugins.backend_batch import OpenAIBatchRunner
    from lionloop.teacher.batch import BatchError

    seen: list[tuple[str, float]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append((self.path, time.monotonic()))
            if self.path == "/v1/batches/b1" and len([p for p, _ in seen if p == self.path]) == 1:
                self.send_response(429)
                self.send_header("retry-after-ms", "1500")
                body = b'{"error": {"message": "slow down"}}'
            elif self.path == "/v1/batches/b1":
                self.send_response(200)
                body = b'{"id": "b1", "status": "in_progress"}'
            else:
                self.send_response(400)
                body = b'{"error": {"message": "bad id"}}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        runner = OpenAIBatchRunner(f"http://127.0.0.1:{server.server_address[1]}/v1", "k", "24h", 0.05, retries=3)
        assert json.loads(runner._call("GET", "/batches/b1"))["status"] == "in_progress"
        (_, first), (_, second) = seen
        assert second - first >= 1.45  # the server's 1.5 s, not the backoff's 0.25-0.5 s guess
        with pytest.raises(BatchError, match="http 400"):
            runner._call("GET", "/batches/nope")
        assert [p for p, _ in seen].count("/v1/batches/nope") == 1
    finally:
        server.shutdown()
        server.server_close()


# A stand-in for `vllm run-batch` that dies the way an out-of-memory kill ends it: the real vLLM
# cannot be made to die on cue, and what is under test is lionloop's report of the death.
DIES = "import os, signal; print('loading the model'); os.kill(os.getpid(), signal.SIGKILL)"


def test_a_vllm_job_that_dies_is_reported_with_its_signal_and_its_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lionloop.plugins.backend_batch import VLLMBatchRunner

    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # the runner sets it for its job

    ledger = BatchLedger(tmp_path)
    first = VLLMBatchRunner(ledger, "m", [sys.executable, "-c", DIES], [], poll_s=0.05)
    batch_id = first.submit("lionloop-t", [{"custom_id": "a", "body": {}}])
    pid = int(batch_id.split(":")[1])
    # A resumed runner in the same process (a test's "second run"): the job is its child, not its Popen.
    second = VLLMBatchRunner(ledger, "m", [], [], poll_s=0.05)
    deadline = time.monotonic() + 30
    while (state := second.poll(batch_id)).status == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.status == "failed"
    error = state.detail["error"]
    assert "killed by SIGKILL" in error and "loading the model" in error, error  # printed before the kill: unbuffered
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped, not left a zombie
    ledger.close()
