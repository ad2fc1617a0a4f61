"""Token counts of a call as an LLM backend would send and receive it, for backends that have
none of their own (the offline oracle): the request rendered through its template and the
tokenizer's chat template, the reply as text (JSON for structured requests, the text for plain
ones). With them an offline run has a price (`teacher.options.tokenizer` of the oracle), and a
finished run's calls can be priced afterwards (`lionloop bench tokens`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lionloop.teacher.chat import Prompts
from lionloop.teacher.requests import TeacherRequest


def reply_text(request: TeacherRequest | None, output: dict[str, Any]) -> str:
    """The reply an LLM would write for `output`: the text of a plain-text request, else its JSON."""
    if (request is not None and not request.structured) or set(output) == {"text"}:
        return str(output.get("text", ""))
    return json.dumps(output, ensure_ascii=False)


class TokenCounter:
    """Counts a call's prompt and completion tokens with an HF tokenizer (a model folder)."""

    def __init__(self, tokenizer: Path | str, prompts: Prompts | None = None) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self.prompts = prompts or Prompts()

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # a BatchEncoding
            ids = ids["input_ids"]
        return len(ids)

    def text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def usage(self, request: TeacherRequest, output: dict[str, Any]) -> dict[str, int]:
        """`prompt_tokens` and `completion_tokens` of one call, as a backend reports them."""
        return {"prompt_tokens": self.prompt_tokens(self.prompts.messages(request)),
                "completion_tokens": self.text_tokens(reply_text(request, output))}
