"""The quality gate for generated instructions: a real, new task, or rejected with its reason.

A real small teacher (SmolLM2-135M asked for Lion's rewrites) wrote "copy the given instruction",
"The new instruction" with the input "the same", and copies of its parent: parseable JSON, so the
parser let them through, and the curate stage paid for answers to them and trained on them. The
curate stage now asks `instruction_problem` about every candidate before dedup; the oracle's
rewrites (always a different instance of a skill) never trip it.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

from lionloop.records import Instruction

# Words of the rewrite prompts that only an echo of the prompt would contain.
TEMPLATE_PHRASES = (
    "given instruction", "new instruction", "given input", "brand-new", "prompt creator",
    "task type:", "variation #", "the instruction itself", "<<<", ">>>",
)
# Whole replies that name a field instead of filling it.
PLACEHOLDERS = {
    "instruction", "the instruction", "new instruction", "the new instruction", "input", "the input",
    "none", "n/a", "na", "null", "string", "text", "task", "example", "question", "answer",
    "your instruction", "an instruction", "empty", "empty string", "same", "the same",
}
# A slot of the prompt's reply format left unfilled: "<the new instruction>", "{input}", "[task]".
_SLOT = re.compile(
    r"[<{\[]\s*(?:the |your |its |an? |one )?(?:new |final )?"
    r"(?:instruction|input|answer|task|text|question|string)s?\b[^<>{}\[\]\n]{0,40}[>}\]]", re.I)
_WORD = re.compile(r"\w")
# A run of this many words of a packaged prompt's own wording, found in a generated instruction
# and not in the instruction it was written from, is an echo of the prompt ("make it different
# from the obvious first choice", from SmolLM2). Runs of mostly function words ("the order in
# which the") are common English, not the prompt's: a run counts with at least 3 other words.
ECHO_WORDS = 5
_FUNCTION = frozenset(
    "a an the and or but if of to in on at by for with from as is are be was it its this that these those "
    "which what who how when where not no one s".split())
_JINJA = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.S)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _runs(text: str, n: int = ECHO_WORDS) -> set[tuple[str, ...]]:
    words = _norm(text).split()
    runs = (tuple(words[k:k + n]) for k in range(len(words) - n + 1))
    return {r for r in runs if sum(w not in _FUNCTION for w in r) >= 3}


@cache
def template_runs(prompts_dir: Path | None = None) -> frozenset[tuple[str, ...]]:
    """The word runs of the prompt templates' fixed text (Jinja tags removed: what any request
    shows the teacher whatever its data): the packaged ones and, where the user swaps their own
    in (`teacher.prompts_dir`), theirs too (a teacher echoes the prompt it was sent)."""
    files = [item for item in resources.files("lionloop.prompts").iterdir() if item.name.endswith(".j2")]
    if prompts_dir is not None:
        files += sorted(Path(prompts_dir).glob("*.j2"))
    runs: set[tuple[str, ...]] = set()
    for item in files:
        for part in _JINJA.split(item.read_text(encoding="utf-8")):
            runs |= _runs(part)
    return frozenset(runs)


def instruction_problem(
    candidate: Instruction, parent: Instruction | None = None, prompts_dir: Path | None = None,
) -> str | None:
    """Why a generated instruction is not a real, new task (None when it is); `prompts_dir` is
    the teacher's own templates, if any."""
    text, given = candidate.text.strip(), candidate.input.strip()
    if len(_WORD.findall(text)) < 2:
        return "too short to be an instruction"
    for field, value in (("instruction", text), ("input", given)):
        if value and _norm(value) in PLACEHOLDERS:
            return f"the {field} is a placeholder ({value[:40]!r})"
        if value and _SLOT.search(value):
            return f"the {field} holds a template slot ({_SLOT.search(value)[0][:40]!r})"
    low = f"{text}\n{given}".lower()
    for phrase in TEMPLATE_PHRASES:
        if phrase in low:
            return f"echoes the prompt ({phrase!r})"
    echo = _runs(f"{text}\n{given}") & template_runs(prompts_dir)
    if echo and parent is not None:
        echo -= _runs(f"{parent.text}\n{parent.input}")
    if echo := sorted(echo):
        return f"echoes the prompt ({' '.join(echo[0])!r})"
    if given and _norm(given) == _norm(text):
        return "the input repeats the instruction"
    if parent is not None and _norm(text) == _norm(parent.text) and _norm(given) == _norm(parent.input):
        return "the same task as its parent"
    return None
