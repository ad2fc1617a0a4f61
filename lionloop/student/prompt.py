"""The student's prompt format: one function decides it, for training rows and evaluation alike."""

from __future__ import annotations

from lionloop.records import Instruction


def format_prompt(instruction: Instruction | str, input: str = "") -> str:
    """The student's view of an instruction: text, optional input, then a newline."""
    if isinstance(instruction, Instruction):
        instruction, input = instruction.text, instruction.input
    return f"{instruction}\n{input}\n" if input else f"{instruction}\n"
