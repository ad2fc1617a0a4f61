"""A teacher that misbehaves in ways the review found, against a real OpenAI-compatible server on
loopback (lionloop.testing.fault_server) and lionloop's real `openai` backend:

* an outage of the referee ends the run with an error naming the failure reasons, not as
  "converged"; once the server is back, `lionloop resume` judges the round and finishes;
* failed verdicts are unjudged, never judged, in `pool stats`;
* 2 MB answers and answers of the wrong type are failures, never training rows;
* an API key a server echoes in error bodies or replies is nowhere in the run directory;
* seed rows given twice, or equal to a pack seed, cost one call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import MICRO, deep_merge, micro_config, pool_rows
from typer.testing import CliRunner

from lionloop.errors import RefereeError
from lionloop.stores.cache import CallCache
from lionloop.teacher.client import Reply, Teacher
from lionloop.teacher.requests import Answer, TeacherRequest
from lionloop.testing.fault_server import ScriptedServer, cycle_plan
from lionloop.testing.skills_teacher import SkillsChat

KEY = "sk-test-0123456789abcdefSECRET"


def llm(srv: ScriptedServer, **kw: Any) -> dict[str, Any]:
    return {"backend": "openai", "model": "skills-chat", "base_urls": [srv.base_url], "timeout_s": 10,
            "max_retries": 1, "retry_backoff_s": 0.01, "max_backoff_s": 0.02, "concurrency": 8, **kw}


def _one_line(res) -> str:  # noqa: ANN001
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip() and ln.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    return lines[0]


# -- a referee outage ------------------------------------------------------------------------------


def test_start_up_leaves_a_server_it_cannot_read_to_the_run(tmp_path: Path) -> None:
    """The start-up server check refuses only what a server's own listing rules out (vLLM's, read
    against a real server in test_llm_loop_vllm): a server that is down (a resumed run may need no
    new call) or lists no context length (this one lists 'scripted' and answers any model name,
    as llama.cpp's does) passes, and no chat call is made."""
    import socket

    from lionloop.loop.preflight import preflight
    from lionloop.plugin.manager import get_plugin_manager

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with ScriptedServer(responder=SkillsChat()) as srv:
        for n, urls in enumerate(([closed], [srv.base_url])):
            cfg = micro_config(tmp_path / f"run{n}", referee={**llm(srv), "base_urls": urls})
            assert preflight(cfg, get_plugin_manager()) is not None
        assert srv.stats.requests == 0


@pytest.mark.slow
def test_a_referee_outage_stops_the_run_and_resume_finishes_it(tmp_path: Path) -> None:
    """Before: 112 of 112 judge calls failed, `stop: no_hard_cases`, exit 0; resume sent nothing."""
    import yaml

    from lionloop.cli.app import app

    down = [True]
    chat = SkillsChat()
    # Once back, one content key in six fails for good: some verdicts stay unjudged.
    flaky = cycle_plan([[None]] * 5 + [["500"]])
    with ScriptedServer(responder=chat, plan=lambda key, nth: "500" if down[0] else flaky(key, nth)) as srv:
        run = tmp_path / "run"
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(yaml.safe_dump(deep_merge(MICRO, {"run_dir": str(run), "referee": llm(srv)})))
        res = CliRunner().invoke(app, ["run", str(cfg)])
        assert res.exit_code == 1
        line = _one_line(res)
        assert "round 1: the referee decided 0 of" in line and "failures: http 500 x" in line, line
        assert "(one: http 500: internal error (scripted) (after 2 tries))" in line, line  # what the server said
        assert f"lionloop resume {run}" in line
        # Not converged, not finished: no stop, no discriminate marker, no verdicts taken for judged.
        assert not pool_rows(run, "SELECT * FROM stages WHERE stage = 'discriminate'")
        assert not pool_rows(run, "SELECT * FROM verdicts")
        asked_while_down = srv.stats.requests
        assert asked_while_down > 0

        down[0] = False
        res = CliRunner().invoke(app, ["resume", str(run)])
        assert res.exit_code == 0, res.output
    st = json.loads(CliRunner().invoke(app, ["status", str(run), "--json"]).stdout)
    assert st["rounds"][-1]["stop_reason"] == "max_rounds"
    assert st["teacher_calls"]["repaid"] == 0
    # pool stats: a failed verdict is unjudged, never judged.
    stats = json.loads(CliRunner().invoke(app, ["pool", "stats", str(run), "--json"]).stdout)
    for r in stats["rounds"]:
        if r["round"] == 0:
            continue
        n = pool_rows(run, "SELECT COUNT(*), SUM(hard IS NULL) FROM verdicts WHERE round = ?", r["round"])[0]
        assert r["unjudged"] == n[1] and r["unjudged"] > 0, r
        assert r["judged"] == r["hard"] + r["easy"] == n[0] - n[1], r
    assert stats["verdicts"]["unjudged"] == sum(r["unjudged"] for r in stats["rounds"])


@pytest.mark.slow
def test_a_referee_refusing_long_prompts_is_quoted_whole(tmp_path: Path) -> None:
    """A referee served with too short a context refuses judge prompts (HTTP 400, vLLM's words): the
    run's error quotes the refusal (before: 'failures: http 400 x 36' alone), and `lionloop status`
    shows the error whole (before: cut at 500 characters, mid-sentence)."""
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    chat = SkillsChat()
    with ScriptedServer(responder=chat, plan=lambda key, nth: "context") as srv:
        with pytest.raises(RefereeError) as err:
            start(micro_config(tmp_path / "run", referee=llm(srv), stop={"max_rounds": 1}))
    assert "failures: http 400 x" in str(err.value)
    assert "(one: http 400: This model's maximum context length is 512 tokens." in str(err.value)
    state = run_status(tmp_path / "run")["state"]
    assert state["status"] == "failed" and state["message"] == f"RefereeError: {' '.join(str(err.value).split())}"
    assert len(state["message"]) > 500


def test_no_hard_cases_needs_decided_cases() -> None:
    from lionloop.config import StopConfig
    from lionloop.loop.state import stop_reason

    cfg = StopConfig(max_rounds=5)
    assert stop_reason({"round": 1, "hard": 0, "decided": 12}, cfg) == "no_hard_cases"
    assert stop_reason({"round": 1, "hard": 0, "decided": 0}, cfg) is None  # every call failed: no news


# -- garbage from the teacher, and a key in its error bodies -----------------------------------------


class EchoingServer(ScriptedServer):
    """A ScriptedServer behind a proxy that echoes the Authorization header: in error bodies for
    some requests, and inside a 200 reply for others."""

    def __init__(self, faults: dict[str, str], **kw: Any) -> None:
        super().__init__(**kw)
        self.faults = faults  # content key -> "echo500" | "echo200"

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        from lionloop.testing.fault_server import content_key

        body = await request.json()
        fault = self.faults.get(content_key(body))
        auth = request.headers.get("Authorization", "")
        if fault == "echo500":
            self.stats.requests += 1
            return web.json_response({"error": {"message": f"upstream refused, headers: Authorization: {auth}"}},
                                     status=500)
        if fault == "echo200":
            self.stats.requests += 1
            return web.json_response({"choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": f"debug {auth} 42"}}], "usage": {}})
        return await super()._chat(request)


class GarbageChat(SkillsChat):
    """A correct skills teacher whose answers to some instructions are 2 MB of text or a JSON object."""

    def __call__(self, body: dict[str, Any]) -> str:
        out = super().__call__(body)
        user = body["messages"][-1]["content"]
        if "ASSISTANT 1 ANSWER" in user or "GIVEN INSTRUCTION" in user:
            return out
        bucket = sum(user.encode()) % 7
        if bucket == 0:
            return "x" * 2_000_000
        if bucket == 1:
            return '{"unexpected": true}'
        return out


@pytest.mark.slow
def test_garbage_answers_and_an_echoed_key_never_reach_the_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lionloop.cli.app import app
    from lionloop.loop.runner import start

    monkeypatch.setenv("LIONLOOP_TEST_KEY", KEY)
    chat = GarbageChat()
    with EchoingServer({}, responder=chat) as srv:
        # Every tenth content key is echoed in a 500 body; every tenth in a reply.
        srv.faults = _EveryNth({3: "echo500", 7: "echo200"}, 10)
        cfg = micro_config(tmp_path / "run", teacher=llm(srv, api_key_env="LIONLOOP_TEST_KEY"))
        out, final = start(cfg)
    assert final["stop_reason"] == "max_rounds"
    assert any(a.startswith(f"Bearer {KEY}") for a in srv.stats.auth)  # the key was sent (and echoed)

    # The key is nowhere in the run directory: files, SQLite and WAL bytes alike.
    for p in out.rglob("*"):
        if p.is_file():
            assert KEY.encode() not in p.read_bytes(), p
    reasons = [r[0] for r in pool_rows(out, "SELECT reason FROM failures")]
    assert any("[redacted]" in r for r in reasons), reasons[:5]

    # 2 MB and JSON-object answers: failures with their reason, never responses nor training rows.
    kinds = {r.split(":")[0] for r in reasons}
    assert {"oversize", "type"} <= kinds, kinds
    assert not pool_rows(out, "SELECT 1 FROM responses WHERE length(text) > 100000 OR text LIKE '{\"unexpected%'")
    assert not pool_rows(out, "SELECT 1 FROM examples WHERE length(completion) > 100000 OR completion LIKE '{\"unexpected%'")
    longest = pool_rows(out, "SELECT MAX(length(request)) FROM llm_cache")[0][0]
    assert longest < 50_000  # no judge prompt carries a 2 MB answer
    # ... and the cache keeps only the reason for them (paid once, never re-paid, never parsed).
    rejected = pool_rows(out, "SELECT response FROM llm_cache WHERE response LIKE '%rejected%'")
    assert rejected and all(len(r[0]) < 1000 for r in rejected)

    # `pool show` of an item whose call failed prints no key either.
    failed = pool_rows(out, "SELECT item_id FROM failures WHERE stage = 'bootstrap' AND reason LIKE '%redacted%'")
    if failed:
        res = CliRunner().invoke(app, ["pool", "show", str(out), failed[0][0][:8]])
        assert KEY not in res.output


class _EveryNth(dict):
    """content key -> fault, for keys whose hash falls on the given residues."""

    def __init__(self, faults: dict[int, str], n: int) -> None:
        super().__init__()
        self.faults, self.n = faults, n

    def get(self, key: str, default: Any = None) -> Any:  # noqa: D102
        return self.faults.get(int(key, 16) % self.n, default)


def test_redaction_of_error_texts_and_log_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from lionloop.teacher.secrets import RedactingFilter, redact, register

    register(KEY)
    assert KEY not in redact(f"http 500: Authorization: Bearer {KEY}")
    assert redact("Authorization: Bearer abcdefghijkl0123") == "Authorization: Bearer [redacted]"
    assert redact("a normal answer about authorization rules", credentials=False) == "a normal answer about authorization rules"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (f"key {KEY}",), None)
    RedactingFilter().filter(record)
    assert KEY not in record.getMessage()


# -- one call per distinct prompt ------------------------------------------------------------------


class Counting:
    name, model = "counting", "m"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def params(self) -> dict[str, Any]:
        return {}

    def prompt_for(self, request: TeacherRequest, attempt: int) -> Any:
        return {**request.payload(), "attempt": attempt}

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        for i, r in enumerate(requests):
            self.sent.append(r.instruction)
            yield i, Reply(text=r.instruction.upper())


def test_a_request_repeated_in_one_batch_is_paid_once(tmp_path: Path) -> None:
    backend = Counting()
    cache = CallCache(tmp_path / "c.sqlite")
    t = Teacher(backend, cache, "run").at(0, "bootstrap")
    res = t.ask([Answer(instruction="a"), Answer(instruction="a"), Answer(instruction="b"), Answer(instruction="a")])
    assert [r.output.text for r in res] == ["A", "A", "B", "A"]
    assert backend.sent == ["a", "b"] and cache.repaid() == 0 and cache.total_paid("run") == 2
    s = t.stats()[(0, "bootstrap")]
    assert s["requests"] == 4 == s["answered"] and s["hits"] == 2 and s["calls"] == 2


def test_replies_past_the_size_limit_or_of_the_wrong_type_are_failures(tmp_path: Path) -> None:
    class Odd(Counting):
        def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
            for i, r in enumerate(requests):
                self.sent.append(r.instruction)
                yield i, {"big": Reply(text="y" * 5000), "odd": Reply(text='{"unexpected": true}'),
                          "dict": Reply(text={"a": 1}), "asks": Reply(text='{"a": 1}')}.get(r.instruction, Reply(text="ok"))

    backend = Odd()
    t = Teacher(backend, CallCache(tmp_path / "c.sqlite"), "run", max_reply_chars=1000)
    reqs = [Answer(instruction=x) for x in ("big", "odd", "dict", "fine")] + [Answer(instruction="asks", input="as JSON")]
    res = t.ask(reqs)
    assert [r.ok for r in res] == [False, False, False, True, True]
    assert res[0].error.startswith("oversize: a reply of 5,000 characters")
    assert res[1].error.startswith("type: a JSON object where a plain-text answer was asked")
    assert res[2].error.startswith("type: the backend returned a dict")
    again = t.ask(reqs)  # paid once, cached as its reason, never paid again
    assert [r.error for r in again] == [r.error for r in res] and len(backend.sent) == 5


def test_seed_rows_given_twice_or_equal_to_a_pack_seed_cost_one_call(tmp_path: Path) -> None:
    from lionloop.loop.runtime import Runtime
    from lionloop.loop.seeds import bootstrap_stage
    from lionloop.plugin.manager import get_plugin_manager

    base = micro_config(tmp_path / "x")
    pack = get_plugin_manager().build_registry().get("task_pack", "skills", "task.pack")(base.task, base.seed)
    first = pack.seeds(base.task.seeds_per_skill)[0]
    other = [s for s in pack.seeds(60) if s.task == "reverse"][-1]  # not among the run's own seeds
    rows = [{"instruction": other.text, "input": other.input, "task": other.task}] * 3 + [
        {"instruction": first.text, "input": first.input, "task": first.task}]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = micro_config(tmp_path / "run", task={**MICRO["task"], "seed_file": str(seeds)})
    (tmp_path / "run").mkdir()
    rt = Runtime(cfg=cfg, run_dir=tmp_path / "run", run_id="dups")
    try:  # the bootstrap stage alone: where seeds are answered
        with rt.stage(0, "bootstrap"):
            bootstrap_stage(rt, 0)
    finally:
        rt.close()
    out = tmp_path / "run"
    assert pool_rows(out, "SELECT COALESCE(SUM(repaid), 0) FROM llm_cache")[0][0] == 0
    boot = json.loads(pool_rows(out, "SELECT metrics FROM rounds WHERE round = 0")[0][0])["bootstrap"]
    train_seeds = pool_rows(out, "SELECT COUNT(*) FROM instructions WHERE split = 'train' AND origin = 'seed'")[0][0]
    assert boot["seed_duplicates"] == 3 and boot["seeds"] == train_seeds
    assert pool_rows(out, "SELECT COUNT(*) FROM instructions WHERE text = ?", other.text)[0][0] == 1
    assert pool_rows(out, "SELECT COUNT(*) FROM llm_cache WHERE stage = 'bootstrap'")[0][0] == boot["seeds"] + boot["cache"]
