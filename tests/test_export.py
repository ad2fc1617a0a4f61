"""`lionloop export-model`: the distilled model out, standalone, answering as the run evaluated it.
The LoRA student's export is tested beside its run, in test_real_student.py (one worker builds it)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import pool_rows
from typer.testing import CliRunner

from lionloop.cli.app import app
from lionloop.loop.held_out import evaluate_round, wilson_interval
from lionloop.loop.preflight import resolve_task_pack
from lionloop.plugin.manager import get_plugin_manager
from lionloop.records import Instruction
from lionloop.rundir import RunDir
from lionloop.student.prompt import format_prompt

runner = CliRunner()


def run_answers(run_dir: Path, round: int) -> dict[str, tuple[Instruction, str]]:
    """The eval instructions and the student's answers to them in a round, from the pool."""
    rows = pool_rows(run_dir, "SELECT i.*, r.text AS answer FROM instructions i JOIN responses r"
                     " ON r.instruction_id = i.id WHERE i.split = 'eval' AND r.role = 'student' AND r.round = ?",
                     round, named=True)
    out = {}
    for r in rows:
        row = dict(r)
        answer = row.pop("answer")
        out[row["id"]] = (Instruction.from_row(row), answer)
    return out


def answers_of_export(folder: Path, instructions: list[Instruction], max_new_tokens: int) -> list[str]:
    """Greedy answers from the exported folder, loaded the way a user would (no lionloop)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = []
    for ins in instructions:
        content = format_prompt(ins).strip()  # the instruction (and its input) as a user would type it
        text = tok.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        out.append(tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


def check_export(run_dir: Path, out: Path, extra: tuple[str, ...] = ()) -> dict:
    res = runner.invoke(app, ["export-model", str(run_dir), "--out", str(out), "--json", *extra])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    st = json.loads(runner.invoke(app, ["status", str(run_dir), "--json"]).output)
    scored = {r["round"]: r["eval_accuracy"] for r in st["rounds"]}
    if "--round" not in extra:  # the default is the best round by held-out accuracy
        assert scored[info["round"]] == max(scored.values())
    assert info["eval_accuracy"] == scored[info["round"]]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md", "lionloop.json",
            "chat_template.jinja"} <= names
    assert not {"adapter_config.json", "adapter_model.safetensors"} & names  # merged, standalone
    card = (out / "README.md").read_text()
    assert f"round {info['round']}" in card and "Held-out accuracy by round" in card
    for r, acc in scored.items():
        assert f"| {r}" in card and f"{acc:.1%}" in card
    assert "teacher:" in card and "referee:" in card and "by origin" in card
    return info


def test_export_of_the_tiny_student_answers_like_its_evaluation(micro_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    info = check_export(micro_run, out, ("--round", "2"))
    assert info["prompt_format"] == "plain" and info["round"] == 2 and not info["lora_merged"]
    evald = run_answers(micro_run, 2)
    items = sorted(evald.values(), key=lambda x: x[0].id)[:8]
    cfg = json.loads((out / "generation_config.json").read_text())
    got = answers_of_export(out, [i for i, _ in items], cfg["max_new_tokens"])
    # Plain format: lionloop scores the first line of the reply (the model card says so).
    assert [g.split("\n")[0].strip() for g in got] == [a for _, a in items]
    # Refusals: one line each, nothing written.
    busy = runner.invoke(app, ["export-model", str(micro_run), "--out", str(out)])
    assert busy.exit_code == 1 and "not empty" in busy.output and "Traceback" not in busy.output
    missing = runner.invoke(app, ["export-model", str(micro_run), "--out", str(tmp_path / "m2"), "--round", "7"])
    assert missing.exit_code == 1 and "round 7 has no evaluated student" in missing.output
    assert not (tmp_path / "m2").exists()


def test_evaluate_measures_a_round_again_and_on_a_larger_held_out_sample(micro_run: Path, tmp_path: Path) -> None:
    """`lionloop evaluate`: the run's own eval split gives what the run recorded; `--per-skill` asks a
    larger sample the pack draws, none of it an instruction the pool trains or judges on."""
    st = json.loads(runner.invoke(app, ["status", str(micro_run), "--json"]).output)
    scored = {r["round"]: r["eval_accuracy"] for r in st["rounds"]}
    eval_ids = {r[0] for r in pool_rows(micro_run, "SELECT id FROM instructions WHERE split = 'eval'")}
    held = {r[0] for r in pool_rows(micro_run, "SELECT id FROM instructions WHERE split != 'eval'")}
    before = sorted(p.name for p in micro_run.iterdir())

    same = runner.invoke(app, ["evaluate", str(micro_run), "--round", "1", "--json"])
    assert same.exit_code == 0, same.output
    got = same_json = json.loads(same.stdout)  # progress goes to stderr
    assert got["round"] == 1 and got["n"] == len(eval_ids) and got["in_pool"] == 0
    assert got["overall"] == scored[1] == got["recorded"]

    larger = runner.invoke(app, ["evaluate", str(micro_run), "--per-skill", "40", "--json"])
    assert larger.exit_code == 0, larger.output
    big = json.loads(larger.stdout)
    assert big["round"] == max(scored)  # the last trained round by default
    assert big["asked"] + big["in_pool"] == 40 * 3 and big["asked"] > 4 * len(eval_ids)
    assert set(big["per_skill"]) == {"copy", "reverse", "add"}
    # The error shrinks with n: a 40-a-task sample's interval is narrower than the run's own split's.
    (lo, hi), (lo0, hi0) = big["interval_95"], got["interval_95"]
    assert lo <= big["overall"] <= hi and lo0 <= got["overall"] <= hi0 and 0 < hi - lo < hi0 - lo0
    assert wilson_interval(0.5, 50) == (pytest.approx(0.3664, abs=1e-3), pytest.approx(0.6336, abs=1e-3))
    cfg, _ = RunDir(micro_run).read()
    drawn = resolve_task_pack(get_plugin_manager().build_registry(), cfg).build(cfg.task, cfg.seed).eval_set(per_skill=40)
    assert eval_ids <= {i.id for i in drawn}  # the larger sample holds the run's own eval split
    assert big["in_pool"] == len({i.id for i in drawn} & held)
    assert set(big["right"]) == {i.id for i in drawn} - held and not set(big["right"]) & held
    assert sum(v is True for v in big["right"].values()) == round(big["overall"] * big["n"])
    assert evaluate_round(micro_run, 2, 40)["overall"] == big["overall"]  # greedy: the same answers again

    table = runner.invoke(app, ["evaluate", str(micro_run)])
    assert table.exit_code == 0 and "the run recorded" in table.output and "95% interval" in table.output
    table_json = json.loads(runner.invoke(app, ["evaluate", str(micro_run), "--json", "--wrong", "3"]).stdout)
    # --wrong: the first wrong answers in full, each with the answer the pack's verifier accepts.
    pack = resolve_task_pack(get_plugin_manager().build_registry(), cfg).build(cfg.task, cfg.seed)
    by_id = {i.id: i for i in pack.eval_set()}
    assert len(table_json["wrong"]) == min(3, sum(v is False for v in table_json["right"].values())) > 0
    for w in table_json["wrong"]:
        assert table_json["right"][w["id"]] is False and table_json["answers"][w["id"]] == w["answer"]
        assert "thinking" not in w  # a student that does not learn thinking has none to show
        assert pack.verify(by_id[w["id"]], w["reference"]) is True and w["instruction"] == by_id[w["id"]].text
    base = runner.invoke(app, ["evaluate", str(micro_run), "--round", "0", "--json"])
    assert base.exit_code == 0, base.output
    b = json.loads(base.stdout)  # round 0: the tiny student the run built at bootstrap, before any training
    assert b["round"] == 0 and Path(b["student"]) == RunDir(micro_run).students / "base"
    assert b["n"] == got["n"] and b["recorded"] is None  # the loop records no round-0 evaluation
    # Paired: the last round against the base model on the same instructions, each asked as alone.
    vs = runner.invoke(app, ["evaluate", str(micro_run), "--against-round", "0", "--json"])
    assert vs.exit_code == 0, vs.output
    v = json.loads(vs.stdout)
    assert v["right"] == table_json["right"] and v["against"]["right"] == b["right"]
    pair = v["paired"]
    checked = [k for k, x in v["right"].items() if x is not None and b["right"][k] is not None]
    assert pair["n"] == len(checked) and pair["a_only"] == sum(v["right"][k] and not b["right"][k] for k in checked)
    assert pair["diff"] == pytest.approx(v["overall"] - b["overall"]) and 0 <= pair["p_mcnemar"] <= 1
    text = runner.invoke(app, ["evaluate", str(micro_run), "--round", "1", "--against-run", str(micro_run),
                               "--against-round", "2"], env={"COLUMNS": "200"})
    assert text.exit_code == 0 and "against round 2's student" in text.output and "exact McNemar" in text.output
    # Another run: what its pool holds (trained on there) is not held out for it, so it is left out for both.
    other = tmp_path / "other"
    shutil.copytree(micro_run, other)
    moved = sorted(eval_ids)[0]
    with sqlite3.connect(other / "pool.sqlite") as db:
        db.execute("UPDATE instructions SET split = 'train' WHERE id = ?", (moved,))
    two = evaluate_round(micro_run, against_run=other, against_round=1)
    assert two["in_pool"] == 1 and moved not in two["right"] and set(two["against"]["right"]) == set(two["right"])
    assert two["asked"] == len(eval_ids) - 1 and two["against"]["round"] == 1
    assert {k: v for k, v in same_json["right"].items() if k != moved} == two["against"]["right"]  # round 1, both runs
    for args, says in ((["--round", "7"], "round 7 has no trained student"),
                       (["--against-round", "9"], "round 9 has no trained student"),
                       # the skills pack draws its own held-out sample; it reads no files
                       (["--eval-file", str(micro_run / "run.json")], "cannot read an eval file (it draws")):
        refused = runner.invoke(app, ["evaluate", str(micro_run), *args])
        assert refused.exit_code == 1 and says in refused.output and "Traceback" not in refused.output
    assert sorted(p.name for p in micro_run.iterdir()) == before  # read-only: nothing written to the run


def test_evaluate_by_the_referee_pays_once_outside_the_run_and_samples_fairly_under_a_cap(
        micro_run: Path, tmp_path: Path) -> None:
    """`lionloop evaluate --referee`: each answer judged against the teacher's by the run's referee
    (here the offline oracle, which judges by the verifier: so its verdicts must be the verifier's),
    paid calls kept in RUN_DIR/evaluate.sqlite (the pool and call cache untouched, a second
    evaluation pays nothing); `--max-calls` ends the judging with a random sample judged, not one
    tilted to the answers identical to the teacher's that cost no call."""
    run = tmp_path / "run"
    shutil.copytree(micro_run, run)
    pool_bytes = (run / "pool.sqlite").read_bytes()
    by_verifier = evaluate_round(run, per_skill=30)
    judged = evaluate_round(run, per_skill=30, referee=True)
    assert judged["metric"] == "referee" and by_verifier["metric"] == "accuracy"
    assert judged["right"] == by_verifier["right"] and judged["overall"] == by_verifier["overall"]
    rel = judged["relative"]
    assert rel["wins"] + rel["ties"] + rel["losses"] == judged["n"] == judged["asked"]
    # The drawn instructions were never answered by the run's teacher: answered now, then judged
    # (two calls a case in both orders, none for an answer identical to the teacher's).
    wrong = sum(v is False for v in judged["right"].values())
    assert judged["teacher_calls"] == judged["asked"] + 2 * wrong > judged["asked"]
    assert (run / "pool.sqlite").read_bytes() == pool_bytes and (run / "evaluate.sqlite").exists()
    again = evaluate_round(run, per_skill=30, referee=True)
    assert again["teacher_calls"] == 0 and again["right"] == judged["right"]

    # A cap: what is judged is a prefix of one seeded order, so the share of good answers is not the
    # share among the free (identical) ones. Answers made up here: half the teacher's, half wrong.
    from lionloop.loop.held_out import subject
    from lionloop.loop.held_out_referee import Judging
    from lionloop.loop.reporting import Reporter

    subj = subject(run, 2)
    pack = resolve_task_pack(get_plugin_manager().build_registry(), subj.cfg).build(subj.cfg.task, subj.cfg.seed)
    items = pack.eval_set(per_skill=20)
    judging = Judging(subj.rd, subj.cfg, pack)  # uncapped: the teacher's answers bought (and cached)
    try:
        judging.start(items, 1, Reporter())
        teacher = dict(judging.known)
    finally:
        judging.close()
    judging = Judging(subj.rd, subj.cfg, pack, 20)
    try:
        judging.start(items, 1, Reporter())
        answers = [teacher[i.id] if k % 2 else "?" for k, i in enumerate(items)]
        capped = judging.judge([(subj, answers, 0, None)], items, Reporter())[0]
        assert judging.paid() == 20
    finally:
        judging.close()
    same = sum(k % 2 == 1 for k in range(len(items)))
    good, bad = (sum(v is x for v in capped["right"].values()) for x in (True, False))
    assert bad == 10 and 0 < good < same and capped["n"] == good + bad < len(items)  # 20 calls: 10 judged wrong
    assert all(capped["right"][i.id] in (None, k % 2 == 1) for k, i in enumerate(items))

    # A cap where the teacher's answers must be bought too (a fresh copy, new instructions drawn): the
    # cap buys judged cases, not answers to cases it cannot judge (before: all 30 calls went to the
    # first 30 of 90 answers, none was judged, and the evaluation ended in an error).
    fresh = tmp_path / "fresh"
    shutil.copytree(micro_run, fresh)
    few = evaluate_round(fresh, per_skill=30, referee=True, max_calls=30)
    assert few["teacher_calls"] <= 30 and 10 <= few["n"] < few["asked"] == 90
    assert all(r.endswith("teacher budget exhausted") for r in few["not_judged"].values())
    assert {k: v for k, v in judged["right"].items() if few["right"][k] is not None} == {
        k: v for k, v in few["right"].items() if v is not None}  # the same verdicts as the uncapped run's

    out = runner.invoke(app, ["evaluate", str(run), "--referee", "--per-skill", "30"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "as good as the teacher" in out.output and "0 teacher calls paid" in out.output and "W/T/L" in out.output
    bad = runner.invoke(app, ["evaluate", str(run), "--max-calls", "5"])
    assert bad.exit_code == 2 and "with --referee" in bad.output and "Traceback" not in bad.output


def test_evaluate_by_the_referee_with_no_teacher_to_reach_says_so(micro_run: Path, tmp_path: Path) -> None:
    """A teacher nobody answers at (the run's config pointed at a closed port): one line naming the
    failure, exit 1, before any student is asked."""
    import yaml

    run = tmp_path / "run"
    shutil.copytree(micro_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["teacher"].update(backend="openai", model="m", base_urls=["http://127.0.0.1:9"], max_retries=0)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = runner.invoke(app, ["evaluate", str(run), "--referee"])
    assert out.exit_code == 1 and "the teacher gave none of the" in out.output and "127.0.0.1:9" in out.output
    assert "Traceback" not in out.output and "answers 18 held-out" not in out.output
