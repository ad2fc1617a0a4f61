"""The worked example end to end (examples/own-data/: its JSONL and its config) against the scripted
OpenAI-compatible test server as teacher and referee, with the tiny student, for 2 rounds: seeds
answered, the eval set scored by verifier and by referee, pool and report produced. Then: rows the
teacher cannot answer are counted and named, and a run that loses every eval row stops.

The server's "model" (`lionloop.testing.dataset_teacher.ExampleChat`) is a test double for a chat
LLM, which cannot run here at this speed; it reads lionloop's real rendered prompts over real HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import deep_merge, pool_rows
from typer.testing import CliRunner

from lionloop.config import load_config, parse_config
from lionloop.errors import RunError
from lionloop.testing.dataset_teacher import ExampleChat
from lionloop.testing.fault_server import ScriptedServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-data"
TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 128, "max_new_tokens": 40}


def example_config(run_dir: Path, srv: ScriptedServer, **over: Any):  # noqa: ANN201
    """The example's own config, run small: a tiny student, few steps, 2 rounds, this server."""
    data = load_config(EXAMPLE / "lionloop.yaml").model_dump(mode="json")
    data = deep_merge(data, {
        "run_dir": str(run_dir), "teacher": {"base_urls": [srv.base_url], "concurrency": 8},
        "student": TINY, "train": {"steps_per_round": 15, "batch_size": 16, "warmup_steps": 2},
        "generate": {"max_new_per_round": 30}, "stop": {"max_rounds": 2}, **over,
    })
    return parse_config(data, "example")


def test_the_own_data_example_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lionloop.cli.app import app
    from lionloop.inspect.report import build_report
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository's root
    rows = [json.loads(line) for line in (EXAMPLE / "data.jsonl").read_text().splitlines()]
    chat = ExampleChat()
    with ScriptedServer(responder=chat, model="teacher") as srv:
        out, final = start(example_config(tmp_path / "run", srv))
        check_evaluate_by_the_referee(out, tmp_path)
    assert final["stop_reason"] == "max_rounds"
    assert set(chat.kinds) == {"answer", "judge", "rewrite"}
    st = run_status(out)

    # Seeds answered: every row is a seed (train or cache) or an eval row, nothing lost.
    boot = st["bootstrap"]
    assert boot["seeds"] + boot["cache"] + boot["eval"] == len(rows)
    assert boot["seed_failures"] == boot["eval_failures"] == 0 and boot["cache"] > 0
    assert boot["data"]["held_out"] == boot["eval"] and boot["data"]["tasks"] == [
        "arithmetic", "capitals", "units", "spelling", "choice"]
    teacher = dict(pool_rows(out, "SELECT i.text, r.text FROM responses r JOIN instructions i ON i.id = "
                                  "r.instruction_id WHERE r.role = 'teacher' AND r.round = 0"))
    assert teacher["What is the capital of Japan?"] == "The capital of Japan is Tokyo."  # chatty, as chat models are

    # The eval set scored by the verifier (accuracy) and by the referee (relative score, W/T/L).
    for r in st["rounds"]:
        assert r["eval_metric"] == "accuracy" and 0.0 <= r["eval_accuracy"] <= 1.0
        rel = r["eval_relative"]
        assert rel["n"] + rel["unjudged"] == boot["eval"] and rel["wins"] + rel["ties"] + rel["losses"] == rel["n"]
        assert 0 < rel["overall"] and set(rel["per_skill"]) <= set(boot["data"]["tasks"])
        # The referee's eval calls are paid calls of their own stage.
        assert r["teacher_by_stage"]["evaluate"]["calls"] > 0
        # judge.mode both: the referee's calls audited by the verifier.
        a = r["agreement"]
        assert r["judge_mode"] == "both" and a["n"] == a["tp"] + a["fp"] + a["fn"] + a["tn"] > 0
    # The teacher's eval answers were paid once, at bootstrap; eval rows never train the student.
    assert st["bootstrap"]["teacher_calls"] == len(rows)
    trained = {r[0] for r in pool_rows(out, "SELECT DISTINCT instruction_id FROM examples")}
    eval_ids = {r[0] for r in pool_rows(out, "SELECT id FROM instructions WHERE split = 'eval'")}
    assert len(eval_ids) == boot["eval"] and not trained & eval_ids

    # Pool and report.
    assert st["pool"]["by_origin"].get("lion", 0) > 0 and st["rounds"][0]["accepted"] > 0
    report = build_report(out, tmp_path / "report.html")
    html = Path(report["out"]).read_text()
    assert "Referee audited by the verifier" in html and "Eval accuracy by round" in html
    assert "relative score (referee)" in html and "Data and bootstrap" in html
    text = CliRunner().invoke(app, ["status", str(out)], env={"COLUMNS": "120"}).output
    assert "rel. score" in text and "W/T/L" in text and "recall hard" in text and "finished" in text
    stats = CliRunner().invoke(app, ["pool", "stats", str(out)], env={"COLUMNS": "160"}).output
    assert "eval acc" in stats and "held-out accuracy" in stats
    check_evaluate_on_a_file(out, rows, st, tmp_path)


def check_evaluate_by_the_referee(out: Path, tmp_path: Path) -> None:
    """`lionloop evaluate --referee`: the run's eval split judged again gives the relative score the
    evaluate stage recorded (same answers, same referee); a row without a reference, which the
    verifier cannot check, is answered by the teacher and judged."""
    from lionloop.cli.app import app

    cli = CliRunner()
    res = cli.invoke(app, ["evaluate", str(out), "--referee", "--json"])
    assert res.exit_code == 0, res.output
    own = json.loads(res.stdout)
    assert own["metric"] == "referee" and own["relative"]["overall"] == own["recorded"] is not None
    assert own["teacher_calls"] > 0 and own["n"] + len(own["not_judged"]) == own["asked"]
    kind = {"instruction": "Say something kind.", "category": "spelling"}  # no reference
    path = tmp_path / "kind.jsonl"
    path.write_text(json.dumps(kind) + "\n")
    by_verifier = cli.invoke(app, ["evaluate", str(out), "--eval-file", str(path)])
    assert by_verifier.exit_code == 1 and "--referee" in by_verifier.output
    judged = json.loads(cli.invoke(app, ["evaluate", str(out), "--eval-file", str(path), "--referee", "--json"]).stdout)
    assert judged["asked"] == judged["n"] == 1 and judged["teacher_calls"] >= 2  # the answer, then the judge


def check_evaluate_on_a_file(out: Path, rows: list[dict[str, Any]], st: dict[str, Any], tmp_path: Path) -> None:
    """`lionloop evaluate --eval-file`: a second file of the user's, read with the run's columns and
    verifiers; rows the pool trains or probes on left out; the run's own eval rows scored as the run
    scored them; round 0 is the base model, on the same rows."""
    from lionloop.cli.app import app

    cli = CliRunner()
    own = json.loads(cli.invoke(app, ["evaluate", str(out), "--json"]).stdout)
    last = st["rounds"][-1]
    assert own["round"] == last["round"] and own["overall"] == last["eval_accuracy"] == own["recorded"]
    seeds = {r[0] for r in pool_rows(out, "SELECT text FROM instructions WHERE split != 'eval' AND origin = 'seed'")}
    evals = {r[0] for r in pool_rows(out, "SELECT text FROM instructions WHERE split = 'eval'")}
    new = [{"instruction": "What is 12 plus 30?", "output": "42", "category": "arithmetic"},
           {"instruction": "What is the capital of Kenya?", "output": "Nairobi", "category": "capitals"},
           {"instruction": "Say something kind.", "category": "spelling"}]  # no reference: not checkable
    picked = [r for r in rows if r["instruction"] in evals] + [r for r in rows if r["instruction"] in seeds][:5] + new
    path = tmp_path / "more.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*picked, picked[0]]))  # one exact duplicate
    res = cli.invoke(app, ["evaluate", str(out), "--eval-file", str(path), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["in_pool"] == 5 and got["asked"] == len(evals) + len(new)
    assert got["n"] == got["asked"] - 1 and sum(v is None for v in got["right"].values()) == 1
    # The run's own eval rows, read from the file, are the same instructions, scored the same.
    assert own["right"].items() <= got["right"].items() and len(own["right"]) == len(evals)
    assert set(got["per_skill"]) <= {"arithmetic", "capitals", "units", "spelling", "choice"}

    assert set(got["answers"]) == set(got["right"])
    shown = json.loads(cli.invoke(app, ["evaluate", str(out), "--eval-file", str(path), "--wrong", "2", "--json"]).stdout)
    wrong = [k for k, v in got["right"].items() if v is False]
    assert [w["id"] for w in shown["wrong"]] == wrong[:2] and all(w["reference"] is not None for w in shown["wrong"])
    assert wrong  # a tiny student after 30 steps gets most rows wrong
    w = shown["wrong"][0]  # the table names the instruction, its reference and the student's answer
    text = cli.invoke(app, ["evaluate", str(out), "--eval-file", str(path), "--wrong", "1"], env={"COLUMNS": "250"}).output
    assert "1 wrong answers" in text and w["instruction"] in text and str(w["reference"]) in text

    base = json.loads(cli.invoke(app, ["evaluate", str(out), "--round", "0", "--eval-file", str(path), "--json"]).stdout)
    assert base["round"] == 0 and base["asked"] == got["asked"] and base["student"] != got["student"]
    assert base["student"].endswith("base")  # the tiny student the run built at bootstrap

    # Bad input: one line naming the file and row, no traceback, nothing written.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(new[0]) + "\n" + json.dumps({"output": "1"}) + "\n")
    odd = tmp_path / "more.txt"
    odd.write_text(path.read_text())
    before = sorted(p.name for p in out.iterdir())
    for args, code, says in (
        (["--eval-file", str(bad)], 1, f"{bad}: line 2"),
        (["--eval-file", str(tmp_path / "none.jsonl")], 2, "no such file"),
        (["--eval-file", str(odd)], 2, "cannot tell the format"),
        (["--eval-file", str(path), "--per-skill", "3"], 1, "give one"),
    ):
        r = cli.invoke(app, ["evaluate", str(out), *args])
        assert r.exit_code == code and says in r.output and "Traceback" not in r.output, (args, r.output)
    assert sorted(p.name for p in out.iterdir()) == before


def _mute(chat: ExampleChat, fail: Any):  # noqa: ANN202
    """The example's teacher, answering nothing for the instructions `fail` picks."""
    def responder(body: dict[str, Any]) -> str:
        user = body["messages"][-1]["content"]
        return "" if fail(user) else chat(body)
    return responder


def test_rows_the_teacher_cannot_answer_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lionloop.inspect.report import build_report
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    monkeypatch.chdir(ROOT)
    seen: list[str] = []

    class Listen:
        def notice(self, message: str) -> None:
            seen.append(message)

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: (lambda *a, **k: None)

    responder = _mute(ExampleChat(), lambda user: "Spell the word" in user and "backwards" in user
                      and "<<<" not in user)
    with ScriptedServer(responder=responder, model="teacher") as srv:
        cfg = example_config(tmp_path / "run", srv, stop={"max_rounds": 1}, teacher={"parse_retries": 0,
                             "base_urls": [srv.base_url]})
        out, _ = start(cfg, Listen())
    st = run_status(out)
    spelling = [r for r in (json.loads(x) for x in (EXAMPLE / "data.jsonl").read_text().splitlines())
                if r["category"] == "spelling"]
    boot = st["bootstrap"]
    assert boot["seed_failures"] + boot["eval_failures"] == len(spelling)  # every spelling row, seed or eval
    assert {d["text"] for d in boot["dropped"]} == {r["instruction"] for r in spelling}
    assert all(d["reason"].startswith("parse:") for d in boot["dropped"])
    # Named on the console at the end of bootstrap, and in the report.
    assert any(m.startswith(f"{boot['seed_failures']} of ") and "seed rows got no teacher answer" in m
               and "Spell the word" in m for m in seen), seen
    html = Path(build_report(out, tmp_path / "r.html")["out"]).read_text()
    assert "got no teacher answer" in html and spelling[0]["instruction"].replace("'", "&#39;") in html


def test_a_run_that_loses_every_eval_row_stops(tmp_path: Path) -> None:
    from lionloop.loop.runner import start

    data = tmp_path / "seeds.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"What is {k} + 1?"}) + "\n" for k in range(6)))
    evals = tmp_path / "eval.jsonl"
    evals.write_text("".join(json.dumps({"instruction": f"What is {k} + 2?"}) + "\n" for k in range(3)))
    responder = _mute(ExampleChat(), lambda user: "+ 2?" in user)
    with ScriptedServer(responder=responder, model="teacher") as srv:
        cfg = parse_config({"run_dir": str(tmp_path / "run"), "task": {"pack": "dataset", "options": {
            "train": str(data), "eval": str(evals)}},  # no references: scored by referee
            "teacher": {"backend": "openai", "model": "teacher", "base_urls": [srv.base_url], "parse_retries": 0},
            "student": TINY, "train": {"steps_per_round": 5}}, "t")
        with pytest.raises(RunError, match=r"^every one of the 3 eval rows was lost: the teacher answered none of "
                                           r"them \(parse: answer: empty reply\)"):
            start(cfg)
    # Nothing of the bootstrap was kept but the paid calls: 6 answers and the 3 empty replies.
    assert pool_rows(tmp_path / "run", "SELECT COUNT(*) FROM instructions") == [(0,)]
    assert pool_rows(tmp_path / "run", "SELECT COUNT(*) FROM llm_cache")[0][0] == 6 + 3


def test_a_teacher_nobody_answers_at_is_named_as_such(tmp_path: Path) -> None:
    """No server at teacher.base_urls: one message says it is the connection, not a parse or a bug."""
    from lionloop.errors import PluginError
    from lionloop.loop.runner import start

    data = tmp_path / "seeds.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"What is {k} + 1?", "output": str(k + 1)}) + "\n"
                            for k in range(6)))
    cfg = parse_config({"run_dir": str(tmp_path / "run"), "task": {"pack": "dataset", "options": {"train": str(data)}},
                        "teacher": {"backend": "openai", "model": "teacher", "base_urls": ["http://127.0.0.1:9/v1"],
                                    "max_retries": 0}, "student": TINY}, "t")
    with pytest.raises(PluginError, match=r"^the teacher answered none of the \d seeds: connection: "
                                          r"ClientConnectorError: .*127\.0\.0\.1:9.*\(after 1 try\) \(is the "
                                          r"teacher's server up at teacher\.base_urls\?\)"):
        start(cfg)
