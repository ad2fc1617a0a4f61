"""A scripted chat "LLM" for the `skills` pack that reads lionloop's own rendered prompts.

Behind `ScriptedServer` it lets the whole loop run over the LLM path (templates, HTTP, structured
output, parsing) offline with a correct teacher: it answers the instruction in an answer prompt,
judges the fenced answers of a judge prompt exactly (like the oracle) and rewrites the fenced
instruction of a rewrite prompt into a sibling (each of a packed rewrites prompt's, in order). It only understands what the templates render,
so a template change that breaks the fences breaks the tests that use it — on purpose.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lionloop.config import TaskConfig
from lionloop.errors import Unsupported
from lionloop.plugin.manager import get_plugin_manager

_BLOCK = re.compile(r"<<<(?P<label>[A-Z0-9 ]+) (?P<nonce>[0-9a-f]+)>>>\n(?P<body>.*?)\n<<<END (?P=label) (?P=nonce)>>>", re.S)


def fenced_blocks(text: str) -> dict[str, str]:
    """The fenced blocks of a rendered prompt, by label."""
    return {m["label"]: m["body"] for m in _BLOCK.finditer(text)}


class SkillsChat:
    """`responder(body) -> content` for `ScriptedServer`: a correct skills teacher over chat."""

    def __init__(self, seed: int = 0) -> None:
        # The built-in pack as any run gets it: through the plugins' registry.
        registry = get_plugin_manager().build_registry()
        self.pack = registry.get("task_pack", "skills", "task.pack")(TaskConfig(), seed)
        self.kinds: dict[str, int] = {}

    def __call__(self, body: dict[str, Any]) -> str:
        rf = body.get("response_format") or {}
        user = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        blocks = fenced_blocks(user)
        if "ASSISTANT 1 ANSWER" in blocks:
            kind = "judge"
        elif "GIVEN INSTRUCTION 1" in blocks:
            kind = "rewrites"
        elif "GIVEN INSTRUCTION" in blocks:
            kind = "rewrite"
        else:
            kind = "answer"
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if rf.get("type") == "json_schema" and rf["json_schema"].get("name") != kind:
            return "schema name does not match the prompt"
        try:
            if kind == "answer":
                return self.pack.solve(user.split("\n\n", 1)[0])
            if kind == "judge":
                gold = self.pack.solve(blocks["INSTRUCTION"])
                s1 = self.pack.score(blocks["ASSISTANT 1 ANSWER"], gold)
                s2 = self.pack.score(blocks["ASSISTANT 2 ANSWER"], gold)
                return json.dumps({"explanation": f"expected {gold}", "score_1": int(s1), "score_2": int(s2)})
            # The mode's rules are in the system message (shared by every request of that mode).
            rules = "\n".join(m["content"] for m in body["messages"])
            mode = "easy" if "even rarer" in rules else "simpler" if "one step simpler" in rules else "hard"
            if kind == "rewrites":  # packed: "Given instruction n (…), variation #v:" above each block
                variants = {int(n): int(v) - 1 for n, v in re.findall(r"Given instruction (\d+)[^\n]*?variation #(\d+)", user)}
                given = sorted((int(label.rsplit(" ", 1)[1]), text) for label, text in blocks.items()
                               if label.startswith("GIVEN INSTRUCTION "))
                return json.dumps({"outputs": [{"instruction": self.pack.rewrite(text, mode, variants.get(n, 0)), "input": ""}
                                               for n, text in given]})
            m = re.search(r"variation #(\d+)", user)
            variant = int(m[1]) - 1 if m else 0
            new = self.pack.rewrite(blocks["GIVEN INSTRUCTION"], mode, variant)
            return json.dumps({"instruction": new, "input": ""})
        except Unsupported:
            return "I cannot help with that."
