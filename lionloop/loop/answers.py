"""Teacher answers to instructions, and the training rows made from them (bootstrap and curate)."""

from __future__ import annotations

from dataclasses import replace

from lionloop.errors import PluginError
from lionloop.loop.runtime import Runtime
from lionloop.plugin.context import RoundContext
from lionloop.plugin.manager import PluginManager
from lionloop.records import Example, Instruction
from lionloop.student.prompt import format_prompt
from lionloop.teacher.requests import Answer
from lionloop.thinking import with_thinking


def student_prompts(rt: Runtime, round: int, items: list[Instruction]) -> list[str]:
    """How the student is asked each instruction in round `round` of the running loop."""
    return prompts_for(rt.pm, rt.context(round), items)


def prompts_for(pm: PluginManager, ctx: RoundContext, items: list[Instruction]) -> list[str]:
    """`lionloop_student_prompt` (firstresult), else the default format; a plugin that raises is one
    PluginError naming the hook. Also for a finished run's student (`lionloop evaluate`)."""
    try:
        return [pm.hook.lionloop_student_prompt(instruction=i, ctx=ctx) or format_prompt(i) for i in items]
    except Exception as err:
        raise PluginError(f"lionloop_student_prompt failed: {type(err).__name__}: {err}") from err


def answer_rows(rt: Runtime, ins: Instruction, answer: str, generator: str, round: int,
                thinking: str | None = None) -> list[Example]:
    """Training rows for an instruction: plugins first (firstresult), else one answer row.

    The answer row's prompt is the one the evaluate stage uses (`lionloop_student_prompt`). Where
    the student learns thinking (student.thinking: learn), every row that answers that prompt with
    the teacher's answer (the default row, or a plugin's `answer`/`label` row) holds the teacher's
    `thinking` before it: the student is asked that prompt and is to think first. A plugin's other
    rows (rationales, decompositions...) are its own, as it made them.
    """
    ctx = rt.context(round)
    try:
        prompt = rt.pm.hook.lionloop_student_prompt(instruction=ins, ctx=ctx) or format_prompt(ins)
        rows = rt.pm.hook.lionloop_format_examples(
            instruction=ins, answer=answer, generator=generator, ctx=ctx, prompt=prompt
        )
    except Exception as err:
        raise PluginError(f"lionloop_format_examples failed for {ins.id}: {err}") from err
    if rows is None:
        rows = [Example(ins.id, prompt, answer, "answer", generator, round)]
    if thinking and rt.cfg.student.thinking == "learn":
        rows = [replace(e, completion=with_thinking(thinking, answer))
                if (e.student, e.prompt, e.completion) == ("", prompt, answer) else e for e in rows]
    return rows


def teacher_answers(rt: Runtime, items: list[Instruction], round: int,
                    stage: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Ask the teacher to answer instructions; returns (answers, failures, thinking) by instruction
    id: `thinking` holds a reasoning teacher's thinking before the answers that had any."""
    advance = rt.reporter.task(f"teacher answers ({stage})", len(items))
    results = rt.teacher.ask([Answer(instruction=i.text, input=i.input, task=i.task) for i in items], advance)
    rt.reporter.task_done()
    answers, failures, thinking = {}, {}, {}
    for ins, res in zip(items, results, strict=True):
        if res.ok:
            answers[ins.id] = res.output.text
            if res.thinking:
                thinking[ins.id] = res.thinking
        else:
            failures[ins.id] = res.error or "unknown"
    return answers, failures, thinking
