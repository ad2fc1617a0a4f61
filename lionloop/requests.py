"""Typed teacher requests: each names its prompt template, its output schema and its parser."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ParseError(ValueError):
    """A teacher reply does not fit the request's output schema."""


class TeacherRequest(BaseModel):
    """Base of every request: a pydantic model whose fields fill the template."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = "request"
    template: ClassVar[str] = ""
    Output: ClassVar[type[BaseModel]]

    def payload(self) -> dict[str, Any]:
        """What identifies the request (with its kind) for caching."""
        return {"kind": self.kind, **self.model_dump(mode="json")}

    def parse(self, text: str) -> BaseModel:
        """Turn a raw reply into the output model; raise ParseError when it cannot."""
        data = extract_json(text)
        if data is None:
            raise ParseError(f"{self.kind}: no JSON object in reply")
        try:
            return self.Output.model_validate(data)
        except ValidationError as err:
            raise ParseError(f"{self.kind}: {err.errors()[0]['msg']}") from None

    @classmethod
    def output_schema(cls) -> dict[str, Any]:
        return cls.Output.model_json_schema()


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The first JSON object in a reply: bare, fenced, or embedded in prose."""
    text = text.strip()
    candidates = [text] + _FENCE.findall(text)
    for c in candidates:
        try:
            return json.loads(c)
        except (json.JSONDecodeError, TypeError):
            pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text[m.start() :])
            return obj
        except json.JSONDecodeError:
            continue
    return None


# -- outputs -------------------------------------------------------------------------------------


class AnswerOut(BaseModel):
    text: str


class JudgeOut(BaseModel):
    explanation: str = ""
    score_1: float = Field(ge=1, le=10)
    score_2: float = Field(ge=1, le=10)


class RewriteOut(BaseModel):
    instruction: str = Field(min_length=1)
    input: str = ""


# -- requests ------------------------------------------------------------------------------------


class Answer(TeacherRequest):
    """Answer an instruction as the expert."""

    kind: ClassVar[str] = "answer"
    template: ClassVar[str] = "answer.j2"
    Output: ClassVar[type[BaseModel]] = AnswerOut

    instruction: str
    input: str = ""
    task: str = ""

    def parse(self, text: str) -> AnswerOut:
        # A plain-text answer is the answer; no schema needed.
        if not text.strip():
            raise ParseError("answer: empty reply")
        return AnswerOut(text=text.strip())


class Judge(TeacherRequest):
    """Rate two answers to one instruction on 1-10 (Lion's referee)."""

    kind: ClassVar[str] = "judge"
    template: ClassVar[str] = "judge.j2"
    Output: ClassVar[type[BaseModel]] = JudgeOut

    instruction: str
    input: str = ""
    task: str = ""
    answer_1: str
    answer_2: str


class Rewrite(TeacherRequest):
    """Write a new instruction from an old one: `hard` = same domain and difficulty, `easy` = rarer."""

    kind: ClassVar[str] = "rewrite"
    template: ClassVar[str] = "rewrite.j2"
    Output: ClassVar[type[BaseModel]] = RewriteOut

    instruction: str
    input: str = ""
    task: str = ""
    mode: Literal["hard", "easy"] = "hard"
    variant: int = Field(0, ge=0, description="Distinguishes several rewrites of one instruction.")


REQUEST_TYPES: dict[str, type[TeacherRequest]] = {
    r.kind: r for r in (Answer, Judge, Rewrite)
}
