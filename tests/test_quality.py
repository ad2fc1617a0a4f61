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
