"""generate.self_answers: where the verifier is the referee, a new candidate the student already
answers right keeps the student's answer as its row and costs no teacher call; the rest are paid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import micro_config, pool_rows

from lionloop.config import RunConfig


def _copy_always_right(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny micro student answers almost nothing right after 15 steps, so the verifier is told
    that every `copy` answer is right (the other skills keep the pack's real check): copy candidates
    take the self-answer path, add and reverse the paid one."""
    import lionloop.plugins.skills as skills

    real = skills.SkillsPack.verify

    def verify(self: Any, instruction: Any, answer: str) -> bool | None:
        return True if instruction.text.startswith("copy ") else real(self, instruction, answer)

    monkeypatch.setattr(skills.SkillsPack, "verify", verify)


def _run(tmp_path: Path, judge: str | dict[str, Any] = "verifier", **generate: Any) -> tuple[Path, dict[str, Any]]:
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    run_dir, _ = start(micro_config(tmp_path / "run", judge=judge if isinstance(judge, dict) else {"mode": judge},
                                    generate={"max_new_per_round": 40, **generate}))
    return run_dir, run_status(run_dir)["rounds"][0]


@pytest.mark.parametrize("selection", ["referee", "uniform"])
def test_verified_student_answers_replace_paid_teacher_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               selection: str) -> None:
    _copy_always_right(monkeypatch)
    # The last round left unjudged, so status can show a round without a referee as well.
    run_dir, r1 = _run(tmp_path, judge={"mode": "verifier", "last_round": False}, case_selection=selection)
    new = pool_rows(run_dir, "SELECT id, text, meta FROM instructions WHERE round_born = 1 AND split = 'train'")
    mine = {i for i, _, meta in new if '"answered_by": "student"' in (meta or "")}
    copies = {i for i, text, _ in new if text.startswith("copy ")}
    assert copies and mine == copies  # every copy candidate and nothing else
    assert r1["self_answered"] == len(mine) < r1["accepted"]
    # One paid answer per accepted candidate the student did not answer, none for the others.
    assert r1["teacher_by_stage"]["curate"]["calls"] == r1["accepted"] - len(mine)
    teacher = {i for (i,) in pool_rows(run_dir, "SELECT instruction_id FROM responses WHERE role = 'teacher' AND round = 1")}
    assert not mine & teacher and (set(i for i, _, _ in new) - mine) <= teacher
    # The row trains on the student's own answer of that round, kept beside it as its response.
    student = dict(pool_rows(run_dir, "SELECT instruction_id, text FROM responses WHERE role = 'student' AND round = 1"))
    rows = dict(pool_rows(run_dir, "SELECT instruction_id, completion FROM examples WHERE round = 1"))
    assert all(rows[i] == student[i] for i in mine)
    if selection == "referee":  # status names round 1's referee, and none for a round nobody judged
        from lionloop.inspect.status import run_status

        assert r1["judge_mode"] == "verifier"
        assert run_status(run_dir)["rounds"][-1]["judge_mode"] is None


@pytest.mark.parametrize(("judge", "on"), [("verifier", False), ("llm", True)], ids=["off", "llm-referee"])
def test_off_or_without_the_verifier_every_answer_is_the_teachers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  judge: str, on: bool) -> None:
    _copy_always_right(monkeypatch)
    _, r1 = _run(tmp_path, judge, self_answers=on)
    assert r1["self_answered"] == 0
    assert r1["teacher_by_stage"]["curate"]["calls"] == r1["accepted"] > 0


def test_the_tiny_student_trains_epochs_that_grow_with_the_pool_by_default() -> None:
    assert RunConfig().train.epochs_per_round == 12
    # Set steps (or a pretrained student) keep the fixed steps per round.
    assert RunConfig(train={"steps_per_round": 50}).train.epochs_per_round is None
    assert RunConfig(student={"base": "some/model"}).train.epochs_per_round is None
    assert RunConfig(train={"epochs_per_round": 3}).train.epochs_per_round == 3


def test_init_leaves_the_students_step_default_to_the_student(tmp_path: Path) -> None:
    """`lionloop init` writes the step fields as comments: the file, switched to a pretrained
    student afterwards, trains that student's fixed steps, not the tiny student's 12 epochs."""
    import yaml
    from typer.testing import CliRunner

    from lionloop.cli.app import app
    from lionloop.config import load_config, parse_config

    path = tmp_path / "l.yaml"
    assert CliRunner().invoke(app, ["init", str(path)]).exit_code == 0
    text = path.read_text()
    assert "  # epochs_per_round: 12.0" in text and "  # steps_per_round: 300" in text
    assert load_config(path).train.epochs_per_round == 12
    data = yaml.safe_load(text)
    data["student"]["base"] = "some/model"
    pretrained = parse_config(data, "l.yaml").train
    assert pretrained.epochs_per_round is None and pretrained.steps_per_round == 300
