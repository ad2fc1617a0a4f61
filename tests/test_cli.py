from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lionloop.cli.app import app
from lionloop.loop.scoring import wilson_interval

runner = CliRunner()


def test_status_json_has_per_round_figures(micro_run: Path) -> None:
    res = runner.invoke(app, ["status", str(micro_run), "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert [r["round"] for r in st["rounds"]] == [1, 2]
    r1 = st["rounds"][0]
    for key in ("eval_accuracy", "eval_per_skill", "hard", "easy", "candidates", "dedup_rejected",
                "teacher_calls", "cache_hits", "seconds"):
        assert key in r1, key
    assert r1["teacher_calls"] == sum(v["calls"] for v in r1["teacher_by_stage"].values())
    assert st["pool"]["by_split"]["eval"] == 18
    assert all(r["eval_n"] == 18 for r in st["rounds"])  # the accuracy's sample size: the table's interval


def test_status_table_and_bad_run_dir(micro_run: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["status", str(micro_run)])
    assert res.exit_code == 0 and "eval acc" in res.output and "reverse" in res.output
    # Each round's accuracy with its 95% interval on the 18 held-out instructions.
    st = json.loads(runner.invoke(app, ["status", str(micro_run), "--json"]).output)
    lo, hi = wilson_interval(st["rounds"][0]["eval_accuracy"], 18)
    assert "on 18 held-out instructions" in res.output and f"{100 * lo:.0f}-{100 * hi:.0f}" in res.output
    assert hi - lo > 0.15  # 18 instructions: a wide interval, whatever the accuracy
    bad = runner.invoke(app, ["status", str(tmp_path)])
    assert bad.exit_code == 1 and "not a lionloop run directory" in bad.output


def test_status_counts_eval_answers_the_referee_left_unjudged() -> None:
    """A '-' relative score and 0/0/0 said nothing of why: the referee's calls on the eval
    answers failed (seen with a referee whose context refused the judge prompts)."""
    from rich.console import Console

    from lionloop.cli.status import scores_table

    def rnd(n: int, unjudged: int) -> dict:
        rel = {"overall": None if unjudged == 21 else 0.9, "wins": 0, "ties": 21 - unjudged, "losses": 0,
               "unjudged": unjudged}
        return {"round": n, "eval_accuracy": 0.5, "eval_relative": rel}

    def text(rounds: list[dict]) -> str:
        console = Console(width=120, record=True)
        console.print(scores_table({"rounds": rounds}))
        return console.export_text()

    shown = text([rnd(1, 21), rnd(2, 0)])
    assert "unjudged" in shown
    rows = [line.strip("│ ").split("│") for line in shown.splitlines() if line.startswith("│")]
    assert [row[-1].strip() for row in rows] == ["21", "0"]
    assert "unjudged" not in text([rnd(1, 0)])  # nothing to say: no column


def test_run_refuses_an_existing_run_dir(micro_run: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {micro_run}\n")
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 1 and "lionloop resume" in res.output


def test_run_checks_the_config_and_reads_the_data_once(tmp_path: Path, monkeypatch) -> None:
    # `lionloop run` checks the config before its heavy imports; the run goes on with the pack that
    # check built (a dataset pack's files read once), so the runner's own check must not run again
    import yaml
    from conftest import MICRO, deep_merge

    from lionloop.loop import runner as runner_mod

    def again(*a, **k):
        raise AssertionError("preflight ran a second time")

    monkeypatch.setattr(runner_mod, "preflight", again)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(deep_merge(MICRO, {"run_dir": str(tmp_path / "run"), "stop": {"max_rounds": 1}})))
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "run.json").exists() and "round 1 done" in res.output


def test_pool_stats_json(micro_run: Path) -> None:
    res = runner.invoke(app, ["pool", "stats", str(micro_run), "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["by_split"]["train"] > 18 and st["by_origin"]["seed"] == 36


def test_run_check_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    import yaml
    from conftest import MICRO, deep_merge

    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    gens = {"lion": {"share": 0.5}, "finetune_cot": {"share": 0.25, "options": {"samples": 3}},
            "rationale": {"share": 0.25, "options": {"source": "thinking"}}}
    cfg.write_text(yaml.safe_dump(deep_merge(MICRO, {
        "run_dir": str(run), "judge": {"mode": "verifier"},
        "stop": {"max_rounds": 3, "max_teacher_calls": 500},
        "generate": {"max_new_per_round": 40, "generators": gens}})))
    res = runner.invoke(app, ["run", str(cfg), "--check"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert not run.exists()  # nothing written
    out = res.output
    assert "config ok" in out and "copy, reverse, add" in out
    assert "18 seeds to train on, 18 in the cache pool, 18 held out" in out  # MICRO: 6 of each a skill, 3 skills
    assert "verifier (wrong = hard" in out and "at 500 paid teacher calls" in out and "paced" in out
    # Each generator's cost under this config's options, not its defaults: finetune_cot pays its
    # samples + 2, rationale from the teacher's thinking 2; the call cap is quota x that cost.
    rows = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:-1]]
            for ln in out.splitlines() if ln.startswith("│")}
    assert rows["lion"][:4] == ["0.5", "20", "2", "40"]
    assert rows["finetune_cot"][:4] == ["0.25", "10", "5", "50"]
    assert rows["rationale"][:4] == ["0.25", "10", "2", "20"]

    # A bad option is the run's own one-line refusal, and still nothing is written.
    gens["rationale"]["options"]["source"] = "nowhere"
    cfg.write_text(yaml.safe_dump(deep_merge(MICRO, {"run_dir": str(run), "generate": {"generators": gens}})))
    bad = runner.invoke(app, ["run", str(cfg), "--check"])
    assert bad.exit_code == 2 and "generate.generators.rationale.options.source" in bad.output, bad.output
    assert "Traceback" not in bad.output and not run.exists()


def test_run_check_asks_the_teacher_servers_what_they_serve(tmp_path: Path) -> None:
    # A real HTTP server on loopback (the scripted OpenAI-compatible one) and a port nobody listens on.
    import socket

    import yaml
    from conftest import MICRO, deep_merge

    from lionloop.testing.fault_server import ScriptedServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with ScriptedServer(model="served-one") as srv:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(deep_merge(MICRO, {
            "run_dir": str(tmp_path / "run"),
            "teacher": {"backend": "openai", "model": "asked-for", "base_urls": [srv.base_url, closed]}})))
        res = runner.invoke(app, ["run", str(cfg), "--check"], env={"COLUMNS": "300"})
        asked = srv.stats.requests
    assert res.exit_code == 0, res.output
    assert f"{srv.base_url}: serves 'served-one'; 'asked-for' is not among them" in res.output
    assert f"{closed}: no model listing (" in res.output and "refused" in res.output.lower()
    assert asked == 0  # a listing is read, no completion asked (paid)
