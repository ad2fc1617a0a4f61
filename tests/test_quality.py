"""The quality gate for generated instructions (curate stage): what a real small teacher wrote."""

from __future__ import annotations

import pytest

from lionloop.loop.quality import instruction_problem
from lionloop.records import Instruction

PARENT = Instruction(text="copy dhbbd", task="copy")


@pytest.mark.parametrize(("text", "input", "why"), [
    # Seen from SmolLM2-135M asked for Lion's rewrites:
    ("The new instruction", "the same", "placeholder"),
    ("copy the given instruction", "the new instruction", "placeholder"),
    ("GIVEN INSTRUCTION 74367756aa7e", "upper.gheg", "echoes the prompt"),
    # Five words of the rewrite prompt's variation line, none of the listed phrases (a real run
    # under a budget accepted this one and paid for its answer):
    ("make it different from the obvious first choice", "upper ffef", "echoes the prompt"),
    ("The task is to create a new version of the given instruction.", "", "echoes the prompt"),
    ("copy dhbbd", "copy dhbbd", "repeats the instruction"),
    ("Copy  DHBBD.", "", "same task as its parent"),
    ("<the new instruction>", "", "placeholder"),
    ("Sort the letters of {input}", "", "template slot"),
    ("?", "", "too short"),
])
def test_not_a_real_new_task(text: str, input: str, why: str) -> None:
    problem = instruction_problem(Instruction(text=text, input=input, parent_id=PARENT.id), PARENT)
    assert problem is not None and why in problem


@pytest.mark.parametrize(("text", "input"), [
    ("copy dhbbe", ""), ("add 12 5", ""), ("Write an HTML page with a <div> tag", ""),
    ("Continue the sequence", "1, 2, 3, ..."), ("Summarise the text", "The given text is long."),
])
def test_real_tasks_pass(text: str, input: str) -> None:
    assert instruction_problem(Instruction(text=text, input=input), PARENT) is None


def test_prompt_wording_is_an_echo_only_where_the_parent_lacks_it() -> None:
    """Runs of the prompts' own words count as an echo unless the instruction the candidate was
    written from has them (a user's data may use the words a CoT prompt uses); common English
    runs of function words never do."""
    from lionloop.loop.quality import template_runs

    assert ("from", "the", "obvious", "first", "choice") in template_runs()
    cot = Instruction(text="Let's think step by step: what is 4 + 5?")
    assert "echoes the prompt" in (instruction_problem(cot) or "")
    parent = Instruction(text="Let's think step by step: what is 2 + 3?")
    assert instruction_problem(cot, parent) is None
    assert instruction_problem(Instruction(text="Describe the order in which the planets formed"), PARENT) is None


def test_the_users_own_prompts_count_too(tmp_path) -> None:  # noqa: ANN001
    """teacher.prompts_dir swaps in the user's templates: their fixed wording is an echo as well."""
    (tmp_path / "rewrite.j2").write_text(
        "{% block user %}Rewrite {{ instruction }} as a riddle about penguins wearing tuxedos{% endblock %}")
    riddle = Instruction(text="A riddle about penguins wearing tuxedos at dawn")
    assert instruction_problem(riddle, PARENT) is None  # not the packaged prompts' wording
    assert "penguins wearing" in (instruction_problem(riddle, PARENT, tmp_path) or "")
