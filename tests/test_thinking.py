"""student.thinking: learn — a reasoning teacher's thinking distilled with its answers (R1-style).

No reasoning model is packaged here, so the teacher is the scripted OpenAI-compatible server
answering the skills pack correctly, each answer after a thinking block in DeepSeek-R1's layout.
The student and the loop are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import micro_config, pool_rows

from lionloop.rundir import RunDir
from lionloop.student.prompt import answer_from, format_prompt
from lionloop.thinking import split_reasoning, with_thinking


def test_the_students_thinking_is_cut_before_its_answer_is_read() -> None:
    r1 = "<think>\n7 letters, reversed.\n</think>\n\ncba\nand more"
    assert answer_from(r1, "plain", thinks=True) == "cba"  # plain: the answer's first line
    assert answer_from(r1, "chat", thinks=True) == "cba\nand more"
    assert answer_from(r1, "plain") == "<think>"  # a student that never learnt to think is read as before
    assert answer_from("<think>\nstill thinking when the tokens ran out", "chat", thinks=True) == ""
    assert answer_from("cba", "plain", thinks=True) == "cba"
    assert with_thinking("  a\nb ", "42") == "<think>\na\nb\n</think>\n\n42" and with_thinking("", "42") == "42"
    assert split_reasoning(with_thinking("a", "42")) == ("\na\n", "42")


def test_default_lengths_are_named_when_the_student_learns_thinking(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from lionloop.loop.preflight import check_thinking

    with caplog.at_level("WARNING", logger="lionloop.loop.preflight"):
        check_thinking(micro_config(tmp_path, student={"thinking": "learn", "max_new_tokens": None}).student)
        check_thinking(micro_config(tmp_path, student={"thinking": "learn", "max_new_tokens": 64, "max_length": 96}).student)
        check_thinking(micro_config(tmp_path, student={"max_new_tokens": None, "max_length": None}).student)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("student.thinking: learn, with student.max_new_tokens (16 tokens) left at the default")


class ThinkingChat:
    """The scripted skills teacher, thinking before each answer (judge and rewrite replies too)."""

    def __init__(self) -> None:
        from lionloop.testing.skills_teacher import SkillsChat

        self.chat = SkillsChat()

    def __call__(self, body: dict[str, Any]) -> str:
        reply = self.chat(body)
        return f"<think>\nThe reply has {len(reply)} characters.\n</think>\n\n{reply}"


@pytest.mark.slow
def test_a_student_learns_a_reasoning_teachers_thinking_and_is_scored_on_its_answer(tmp_path: Path) -> None:
    from lionloop.loop.runner import start
    from lionloop.student.model import generate
    from lionloop.testing.fault_server import ScriptedServer

    with ScriptedServer(responder=ThinkingChat()) as srv:
        teacher = {"backend": "openai", "model": "thinking-chat", "base_urls": [srv.base_url], "max_tokens": 96,
                   "concurrency": 8}
        cfg = micro_config(tmp_path / "run", teacher=teacher, judge={"mode": "verifier"}, stop={"max_rounds": 2},
                           student={"thinking": "learn", "max_length": 96, "max_new_tokens": 48},
                           train={"steps_per_round": 80, "warmup_steps": 4, "learning_rate": 3e-3})
        out, final = start(cfg)
    assert final["stop_reason"]
    # The teacher's answers as the referee and verifier read them: no thinking.
    teacher_said = dict(pool_rows(out, "SELECT instruction_id, text FROM responses WHERE role = 'teacher'"))
    assert teacher_said and not any("think>" in t for t in teacher_said.values())
    # ...and its thinking kept beside them, for `pool show`.
    stored = pool_rows(out, "SELECT instruction_id, thinking FROM responses WHERE role = 'teacher'")
    assert all(t == f"The reply has {len(teacher_said[iid])} characters." for iid, t in stored), stored[:3]
    # Each training row thinks, then gives the teacher's answer; new instructions' rows too (no
    # row is the student's own answer: self_answers is off when the student learns thinking).
    rows = pool_rows(out, "SELECT instruction_id, completion, round FROM examples WHERE kind = 'answer'")
    assert {r for _, _, r in rows} == {0, 1}
    for iid, target, _ in rows:
        assert target == with_thinking(f"The reply has {len(teacher_said[iid])} characters.", teacher_said[iid])
    lineage = [json.loads(m) for (m,) in pool_rows(out, "SELECT meta FROM instructions")]
    assert not any(m.get("answered_by") == "student" for m in lineage)
    # The student learnt to think: what it writes opens with the block, and what the run stored
    # and scored is the answer after it.
    eval_said = dict(pool_rows(out, "SELECT instruction_id, text FROM responses WHERE role = 'student' AND round = 2"))
    prompts = [format_prompt(t, i) for t, i in pool_rows(out, "SELECT text, input FROM instructions WHERE split = 'eval'")]
    student = RunDir(out).student_at(2, None)
    raw = generate(student, prompts, cfg.student.model_copy(update={"thinking": "drop"}))
    assert sum(r == "<think>" for r in raw) >= len(raw) // 2, raw
    assert eval_said and not any("think>" in a for a in eval_said.values())
    student_thought = [t for (t,) in pool_rows(out, "SELECT thinking FROM responses WHERE role = 'student' AND round = 2")]
    assert any("characters" in t for t in student_thought) and not any("think>" in t for t in student_thought)
    # `evaluate --wrong` shows what the student thought before each wrong answer, apart from the
    # answer it is scored on (JSON and table alike).
    from typer.testing import CliRunner

    from lionloop.cli.app import app
    from lionloop.loop.held_out import evaluate_round

    wrong = evaluate_round(out, show_wrong=3)["wrong"]
    assert wrong and all("thinking" in w and "think>" not in w["answer"] for w in wrong), wrong
    assert any(w["thinking"] and "characters" in w["thinking"] for w in wrong), wrong
    shown = CliRunner().invoke(app, ["evaluate", str(out), "--wrong", "3"], terminal_width=200)
    assert shown.exit_code == 0 and "thinking" in shown.output and "characters" in shown.output, shown.output
    from lionloop.inspect.export import export_rows

    exported = {r["instruction_id"]: r for r in export_rows(out, "instructions")[0]}
    assert all(exported[iid]["teacher_thinking"] == t for iid, t in stored)
    iid = stored[0][0]
    shown = CliRunner().invoke(app, ["pool", "show", str(out), iid], terminal_width=200)
    assert shown.exit_code == 0 and f"thinking: {stored[0][1]}" in shown.output, shown.output
    # The exported model's card says so.
    from lionloop.inspect.model_card import card_facts, card_markdown

    assert "It thinks before it answers" in card_markdown(card_facts(out, 2), "plain", None)
    print("eval answers:", list(eval_said.values())[:5], "raw:", raw[:5])


@pytest.mark.slow
def test_rationales_from_a_reasoning_teachers_thinking_in_a_loop(tmp_path: Path) -> None:
    """Distilling Step-by-Step with a thinking teacher and `source: thinking`: the rationale rows
    are the teacher's thinking, the label rows its answer, and no Rationale request is ever paid
    (the student does not learn thinking here: its answer rows are the answers alone)."""
    from lionloop.loop.runner import start
    from lionloop.testing.fault_server import ScriptedServer

    with ScriptedServer(responder=ThinkingChat()) as srv:
        teacher = {"backend": "openai", "model": "thinking-chat", "base_urls": [srv.base_url], "max_tokens": 96,
                   "concurrency": 8}
        generators = {"lion": {"share": 0.5}, "rationale": {"share": 0.5, "options": {"source": "thinking"}}}
        cfg = micro_config(tmp_path / "run", teacher=teacher, judge={"mode": "verifier"}, stop={"max_rounds": 2},
                           generate={"generators": generators})
        out, final = start(cfg)
    assert final["stop_reason"]
    teacher_said = dict(pool_rows(out, "SELECT instruction_id, text FROM responses WHERE role = 'teacher'"))
    rows = pool_rows(out, "SELECT instruction_id, kind, completion FROM examples WHERE generator = 'rationale'")
    rationales = [(iid, c) for iid, kind, c in rows if kind == "rationale"]
    assert rationales, rows
    for iid, completion in rationales:
        assert completion == f"The reply has {len(teacher_said[iid])} characters."
    assert {c for iid, kind, c in rows if kind == "label"} <= set(teacher_said.values())
    assert not any("think>" in c for _, _, c in pool_rows(out, "SELECT instruction_id, kind, completion FROM examples"))
    systems = [json.loads(r)["messages"][0]["content"] for (r,) in pool_rows(out, "SELECT request FROM llm_cache")]
    assert systems and not any("solve a task step by step" in s for s in systems)  # rationale.j2's, never sent


def test_thinking_rows_longer_than_max_length_are_left_out_not_cut(tmp_path: Path) -> None:
    """Cut at max_length, a row of thinking and answer keeps the thinking and loses its answer:
    where the student learns thinking such rows are left out (and counted), plain rows are cut
    as before, and a pool of nothing but over-long thinking is one clear error."""
    from lionloop import LionloopError
    from lionloop.config import StudentConfig, TrainConfig
    from lionloop.plugin.manager import get_plugin_manager
    from lionloop.records import Example
    from lionloop.student.model import build_tiny_student

    trl = get_plugin_manager().build_registry().get("trainer", "trl", "train.trainer")
    learn = StudentConfig(hidden_size=16, num_layers=1, num_heads=2, max_length=64, thinking="learn")
    base = build_tiny_student(tmp_path / "base", learn, 0)
    long_thought = with_thinking("a very long line of thought " * 4, "ab")
    rows = [Example("a", "copy ab\n", with_thinking("short.", "ab"), "answer"),
            Example("b", "copy ab\n", long_thought, "answer"),
            Example("c", "copy abababababababababababababababababab\n", "abababababababababababababababababab", "answer")]
    fig = trl(TrainConfig(steps_per_round=2), learn).train(base, tmp_path / "out", rows, seed=0)
    assert fig["rows"] == 2 and fig["left_out_rows"] == 1 and fig["truncated_rows"] == 1  # the plain row is cut
    drop = learn.model_copy(update={"thinking": "drop"})
    fig = trl(TrainConfig(steps_per_round=2), drop).train(base, tmp_path / "out2", rows, seed=0)
    assert fig["rows"] == 3 and "left_out_rows" not in fig and fig["truncated_rows"] == 2
    with pytest.raises(LionloopError, match=r"^every training row's thinking and answer is longer than "
                                            r"student\.max_length=64 tokens .*raise student\.max_length$"):
        trl(TrainConfig(steps_per_round=2), learn).train(base, tmp_path / "out3", rows[1:2], seed=0)


@pytest.mark.parametrize("mode", ["learn", "drop"])
def test_rows_that_answer_the_students_prompt_think_first_whoever_made_them(tmp_path: Path, mode: str) -> None:
    """Where the student learns thinking, a plugin's row that answers the student's own prompt
    with the teacher's answer (socratic's `answer` row) holds the thinking before it, as the
    default row does; the plugin's other rows (its decompositions and sub-answers) stay as made."""
    from types import SimpleNamespace

    from lionloop.loop.answers import answer_rows
    from lionloop.plugin.context import RoundContext
    from lionloop.plugin.manager import get_plugin_manager
    from lionloop.plugin.plan import plan_generators
    from lionloop.records import Instruction
    from lionloop.stores.pool import Pool

    pm = get_plugin_manager()
    cfg = micro_config(tmp_path, student={"thinking": mode},
                       generate={"generators": {"lion": {"share": 0.5}, "socratic": {"share": 0.5}}})
    plan = {g.name: g for g in plan_generators(cfg.generate, pm.generator_specs())}
    pool = Pool(tmp_path / "pool.sqlite")
    rt = SimpleNamespace(cfg=cfg, pm=pm, context=lambda r: RoundContext(
        round=r, config=cfg, run_dir=tmp_path, task_pack=None, pool=pool, generators=plan))
    ins = Instruction(text="add 12 30", task="add", meta={"steps": [["add the tens", "40"], ["add the units", "42"]]})
    rows = answer_rows(rt, ins, "42", "socratic", 1, thinking="tens first, then units")
    plain = answer_rows(rt, ins, "42", "lion", 1, thinking="tens first, then units")
    thought = with_thinking("tens first, then units", "42")
    assert [e.kind for e in rows][:2] == ["answer", "decompose"] and len(rows) >= 3
    assert rows[0].prompt == plain[0].prompt == format_prompt(ins)
    assert rows[0].completion == plain[0].completion == (thought if mode == "learn" else "42")
    assert all("think>" not in e.completion for e in rows[1:])
    assert answer_rows(rt, ins, "42", "lion", 1)[0].completion == "42"  # a teacher that did not think
