"""A reasoning model's thinking: the `<think>...</think>` block before its answer.

A teacher's reply is split here: its answer is what a request parses, a verifier checks and the
referee reads. With `student.thinking: learn` a training row's target holds the teacher's thinking
before its answer (`with_thinking`, the format R1's distilled models were trained on), and the
thinking the student then writes is cut from its output (`split_reasoning` again) before its answer
is checked, judged or stored.
"""

from __future__ import annotations

import re

# The tags reasoning models put their thinking in (DeepSeek-R1, QwQ, Qwen3: think).
_OPEN = re.compile(r"\A\s*<(think|thinking|reasoning)>", re.I)


def split_reasoning(text: str) -> tuple[str | None, str]:
    """(thinking, answer) of a reply that opens with a reasoning model's thinking block —
    `<think>...</think>answer`, or `...</think>answer` where the chat template itself opened the
    block (DeepSeek-R1's) — else (None, text). An unclosed block is all thinking: the answer is
    empty (the reply ran out of tokens while thinking). The answer is what a request parses and
    the student learns from: a verifier must not find the reference in the thinking, and a judge's
    JSON is read from its answer, not from scores it weighed while thinking."""
    m = _OPEN.match(text)
    if m:
        close = re.search(rf"</{m[1]}>", text[m.end():], re.I)
        if close is None:
            return text[m.end():], ""
        return text[m.end(): m.end() + close.start()], text[m.end() + close.end():].strip()
    close = re.search(r"</(think|thinking|reasoning)>", text, re.I)
    if close is not None and not re.search(rf"<{close[1]}>", text, re.I):
        return text[: close.start()], text[close.end():].strip()
    return None, text


def with_thinking(thinking: str | None, answer: str) -> str:
    """A training target that thinks before it answers (R1's layout); the answer alone where the
    teacher did not think."""
    if not thinking or not thinking.strip():
        return answer
    return f"<think>\n{thinking.strip()}\n</think>\n\n{answer}"


def fold_thinking(thinking: str | None, content: str) -> str:
    """A reply whose thinking a server sent apart (vLLM's `--reasoning-parser`: `reasoning_content`)
    put back in front of its content, so that the cache keeps one text and it is read as any
    reasoning model's reply is."""
    return f"<think>{thinking}</think>{content}" if thinking and thinking.strip() else content
