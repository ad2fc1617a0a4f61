"""The student's prompt format: decided here, for training rows and evaluation alike.

Two layers, so train and eval cannot drift:

* `format_prompt(instruction)` is the prompt's *content*: what the pool's training rows store and
  what plugins prefix (`[label] ` + content, ...).
* `render(tok, content, fmt)` turns content into the exact text the model reads. `chat`: the
  content as the user turn of the tokenizer's chat template, with the assistant's turn opened (the
  answer then ends with the tokenizer's end-of-turn/EOS token, which TRL appends to every training
  completion); `plain`: the content itself (the tiny student's format: `prompt\\n` -> answer).

The trainer renders every row's prompt through `render`, the evaluate stage every question, and
`lionloop export-model` ships a chat template that renders the same text (`export_chat_template`).
"""

from __future__ import annotations

from typing import Any, Literal

from lionloop.records import Instruction
from lionloop.thinking import split_reasoning

PromptFormat = Literal["chat", "plain"]

# What an exported plain-format model gets as its chat template: a user turn renders as its
# content and a newline, exactly the text the model was trained on (no role tags), and an
# assistant turn as its answer and the EOS token.
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}"
    "{% elif m['role'] == 'user' %}{{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
)


def format_prompt(instruction: Instruction | str, input: str = "") -> str:
    """The student's view of an instruction: text, optional input, then a newline."""
    if isinstance(instruction, Instruction):
        instruction, input = instruction.text, instruction.input
    return f"{instruction}\n{input}\n" if input else f"{instruction}\n"


def has_chat_template(tok: Any) -> bool:
    return bool(getattr(tok, "chat_template", None))


def resolve_format(tok: Any, wanted: str = "auto") -> PromptFormat:
    """`auto` -> chat when the tokenizer has a chat template, else plain."""
    if wanted == "plain":
        return "plain"
    if wanted == "chat" or has_chat_template(tok):
        if not has_chat_template(tok):
            from lionloop.errors import ConfigError

            raise ConfigError("student.prompt_format: chat, but the student's tokenizer has no chat template")
        return "chat"
    return "plain"


def render(tok: Any, content: str, fmt: PromptFormat) -> str:
    """The text the student reads for a prompt's content (training and evaluation alike)."""
    if fmt == "plain":
        return content
    # The content's trailing newline belongs to the plain format; in chat the turn ends it.
    return tok.apply_chat_template(
        [{"role": "user", "content": content.strip()}], add_generation_prompt=True, tokenize=False,
    )


def answer_from(text: str, fmt: PromptFormat, thinks: bool = False) -> str:
    """A generated answer as scored: plain answers are one line (as their rows are), chat answers
    end at the end-of-turn token (already stripped) and keep every line. `thinks` (student.thinking:
    learn): the student's thinking block is cut first; output that never closes it has no answer."""
    if thinks:
        text = split_reasoning(text)[1]
    return text.split("\n")[0].strip() if fmt == "plain" else text.strip()


def export_chat_template(tok: Any, fmt: PromptFormat) -> str:
    """The chat template an exported model ships: the one that renders what it was trained on."""
    return tok.chat_template if fmt == "chat" else PLAIN_CHAT_TEMPLATE
