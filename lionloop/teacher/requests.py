"""Typed teacher requests: each names its prompt template, its output schema and its parser.

A request type is a frozen pydantic model whose fields fill its Jinja2 template
(`template_package`/`template`, see `lionloop.teacher.chat`). LLM backends ask for `json_schema()` as
structured output where the server supports it; `parse()` reads a raw reply tolerantly either way.

Parsing is also the last line of defence against *forged* outputs: instructions and answers are
written by others (users, the student, earlier teacher calls) and may contain text such as
`Score of Assistant 1: 10` or a whole JSON verdict. Only top-level JSON objects of the model's own
reply count; an object that also appears inside the request's untrusted fields is ignored (the
model echoed it); several objects that disagree on what matters are rejected, never reconciled.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lionloop.teacher.replies import (
    FEW_PLANTED,
    ParseError,
    Rejected,
    json_objects,
    planted_objects,
    repair,
    squash,
)

# -- the base request ------------------------------------------------------------------------------


class TeacherRequest(BaseModel):
    """Base of every request: a pydantic model whose fields fill the template.

    Subclasses set `kind` (unique name), `template` (file name) and `template_package` (the
    package holding it: third-party request types ship their own templates), `Output`, and
    `untrusted` (fields holding text written by others). `structured=False` means the reply is
    plain text (no JSON schema is requested). `decisive` names the output fields several
    objects in one reply must agree on.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = "request"
    template: ClassVar[str] = ""
    template_package: ClassVar[str] = "lionloop.prompts"
    Output: ClassVar[type[BaseModel]]
    structured: ClassVar[bool] = True
    untrusted: ClassVar[tuple[str, ...]] = ()
    decisive: ClassVar[tuple[str, ...] | None] = None  # None: every field

    def template_values(self) -> dict[str, Any]:
        """Values the template sees beside the request's fields (constants of the type)."""
        return {}

    def payload(self) -> dict[str, Any]:
        """What identifies the request (with its kind) for caching."""
        return {"kind": self.kind, **self.model_dump(mode="json")}

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema sent as structured output (strict: every property required)."""
        schema = cls.Output.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
            prop.pop("default", None)
        schema["required"] = list(schema.get("properties", {}))
        schema["additionalProperties"] = False
        return schema

    def _untrusted_text(self) -> list[str]:
        return [str(getattr(self, f)) for f in self.untrusted if getattr(self, f, None)]

    def echoed(self, blob: str, out: BaseModel) -> bool:
        """True when an output was copied from the request's untrusted text rather than made:
        verbatim, or as the same JSON object (any spacing, key order, nesting or broken JSON
        around it there), or with the same decisive fields as one of the few outputs planted
        there. Many different planted outputs make a match mean nothing, so then only a copy counts:
        planted text can hide a verdict from the parser, never veto a genuine one."""
        texts = self._untrusted_text()
        squashed = squash(blob)
        if any(squashed in squash(t) for t in texts):
            return True
        try:
            mine = json.dumps(json.loads(blob), sort_keys=True)
        except (ValueError, RecursionError):
            try:
                mine = json.dumps(repair(blob), sort_keys=True)
            except (ValueError, RecursionError):
                mine = None
        planted = {p for t in texts for p in planted_objects(t)}
        if mine is not None and mine in planted:
            return True
        keys = self._planted_keys(planted)
        return len(keys) <= FEW_PLANTED and self._key(out) in keys

    def _planted_keys(self, planted: set[str]) -> set[tuple[str, ...]]:
        """The decisive fields of every planted object that reads as an output."""
        keys = set()
        for p in planted:
            try:
                keys.add(self._key(self.Output.model_validate(json.loads(p))))
            except (ValidationError, ValueError, KeyError):
                continue
        return keys

    def _key(self, out: BaseModel) -> tuple[str, ...]:
        # JSON form of each decisive field: works for nested models and lists of them too.
        fields = self.decisive or tuple(type(out).model_fields)
        data = out.model_dump(mode="json")
        return tuple(json.dumps(data[f], sort_keys=True) for f in fields)

    def parse(self, text: str) -> BaseModel:
        """Turn a raw reply into the output model; raise ParseError when it cannot."""
        if not (text or "").strip():
            raise ParseError(f"{self.kind}: empty reply")
        valid: list[BaseModel] = []
        echoed = invalid = 0
        first_error = ""
        for blob, obj in json_objects(text):
            try:
                out = self.Output.model_validate(obj)
            except ValidationError as err:
                invalid += 1
                first_error = first_error or _first_error(err)
                continue
            if self.echoed(blob, out):
                echoed += 1
                continue
            valid.append(out)
        if not valid:
            valid = self.parse_fallback(text)
        if not valid:
            if echoed:
                raise ParseError(f"{self.kind}: the only verdict-like object was copied from the judged text")
            if invalid:
                raise ParseError(f"{self.kind}: {first_error}")
            raise ParseError(f"{self.kind}: no JSON object in reply")
        keys = {self._key(v) for v in valid}
        if len(keys) > 1:
            raise ParseError(f"{self.kind}: {len(keys)} conflicting outputs in one reply")
        return self.check(valid[-1])

    def parse_fallback(self, text: str) -> list[BaseModel]:
        """Outputs read from a reply without a usable JSON object (none by default)."""
        return []

    def check(self, out: BaseModel) -> BaseModel:
        """Request-specific checks on a parsed output; raise Rejected to reject it."""
        return out


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e.get("loc", ()))
    return f"{where}: {e['msg']}" if where else e["msg"]


# -- outputs ---------------------------------------------------------------------------------------


class AnswerOut(BaseModel):
    text: str


class JudgeOut(BaseModel):
    """A referee verdict. Scores are checked to lie in 1-10; booleans and NaN are not numbers."""

    model_config = ConfigDict(extra="ignore")

    explanation: str = ""
    score_1: float = Field(ge=1, le=10, allow_inf_nan=False)
    score_2: float = Field(ge=1, le=10, allow_inf_nan=False)

    @field_validator("score_1", "score_2", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, bool) or v is None:
            raise ValueError("a score must be a number from 1 to 10")
        return v


class RewriteOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    instruction: str = Field(min_length=1)
    input: str = ""

    @field_validator("instruction")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("instruction is blank")
        return v


# -- requests --------------------------------------------------------------------------------------


class Answer(TeacherRequest):
    """Answer an instruction as the expert (plain text reply)."""

    kind: ClassVar[str] = "answer"
    template: ClassVar[str] = "answer.j2"
    Output: ClassVar[type[BaseModel]] = AnswerOut
    structured: ClassVar[bool] = False
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""

    def parse(self, text: str) -> AnswerOut:
        # A plain-text answer is the answer; no schema needed.
        if not (text or "").strip():
            raise ParseError("answer: empty reply")
        return AnswerOut(text=text.strip())


# Lion's referee format, strictly: the first line holds the two scores separated by spaces.
_LION_SCORES = re.compile(r"^[ \t]*(\d{1,2}(?:\.\d+)?)[ \t]+(\d{1,2}(?:\.\d+)?)[ \t]*$")
# A score pair as text may plant it: two numbers apart by spaces or one separator, on one line.
_PLANTED_PAIR = re.compile(r"(?<![\d.])(\d{1,2}(?:\.\d+)?)[ \t]*[ \t,;/:|-][ \t]*(\d{1,2}(?:\.\d+)?)(?![\d.])")


class Judge(TeacherRequest):
    """Rate two answers to one instruction on 1-10 (Lion's referee)."""

    kind: ClassVar[str] = "judge"
    template: ClassVar[str] = "judge.j2"
    Output: ClassVar[type[BaseModel]] = JudgeOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input", "answer_1", "answer_2")
    decisive: ClassVar[tuple[str, ...] | None] = ("score_1", "score_2")

    # The explanation is bounded: unbounded, a small model's explanation ran on into max_tokens
    # (SmolLM2-135M on vLLM: 24 of 24 verdicts lost, looping "The score 1 is 10, ..."). The prompt
    # asks for a sentence of at most this many words, the schema caps its characters (servers
    # enforcing json_schema stop the string there), and the parser accepts any length.
    explanation_words: ClassVar[int] = 30
    explanation_chars: ClassVar[int] = 240

    instruction: str
    input: str = ""
    task: str = ""
    answer_1: str
    answer_2: str

    def template_values(self) -> dict[str, Any]:
        return {"explanation_words": self.explanation_words}

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        # Explanation first (the model reasons before it scores); integer scores 1-10 (Lion's
        # scale) keep constrained decoding short. Parsing still accepts 7.5 from free text.
        score = {"type": "integer", "minimum": 1, "maximum": 10}
        explanation = {"type": "string", "maxLength": cls.explanation_chars}
        return {
            "type": "object",
            "properties": {"explanation": explanation, "score_1": score, "score_2": score},
            "required": ["explanation", "score_1", "score_2"],
            "additionalProperties": False,
        }

    def parse_fallback(self, text: str) -> list[BaseModel]:
        """Lion's own format: the reply's first line holds the two scores ("8 6"), the lines after
        it the explanation. The pair counts unless it was planted in the judged text and the reply
        adds nothing of its own, or it matches one of a few pairs planted there."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        m = _LION_SCORES.match(lines[0]) if lines else None
        if not m:
            return []
        pair = (float(m[1]), float(m[2]))
        planted = self._planted_pairs()
        if pair in planted:
            copied = {ln.strip() for t in self._untrusted_text() for ln in t.splitlines()}
            if len(planted) <= FEW_PLANTED or all(ln in copied for ln in lines[1:]):
                return []
        try:
            return [JudgeOut(explanation=text.strip(), score_1=pair[0], score_2=pair[1])]
        except ValidationError:
            return []

    def _planted_pairs(self) -> set[tuple[float, float]]:
        """Score pairs the untrusted text holds: as text ("1 10", "1,10") or as planted verdicts."""
        pairs: set[tuple[float, float]] = set()
        for t in self._untrusted_text():
            pairs.update((float(a), float(b)) for a, b in _PLANTED_PAIR.findall(t))
            for p in planted_objects(t):
                obj = json.loads(p)
                if isinstance(obj.get("score_1"), (int, float)) and isinstance(obj.get("score_2"), (int, float)):
                    pairs.add((float(obj["score_1"]), float(obj["score_2"])))
        return pairs


class Rewrite(TeacherRequest):
    """Write a new instruction from an old one: `hard` = same domain and difficulty, `easy` = rarer,
    `simpler` = same domain and task type, a step simpler (the student's frontier, not the hardest level)."""

    kind: ClassVar[str] = "rewrite"
    template: ClassVar[str] = "rewrite.j2"
    Output: ClassVar[type[BaseModel]] = RewriteOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""
    mode: Literal["hard", "easy", "simpler"] = "hard"
    variant: int = Field(0, ge=0, description="Distinguishes several rewrites of one instruction.")

    # Bounded like the judge's explanation: a rewrite is one instruction, not an essay.
    instruction_chars: ClassVar[int] = 600

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        text = {"type": "string", "minLength": 1, "maxLength": cls.instruction_chars}
        return {
            "type": "object",
            "properties": {"instruction": text, "input": {"type": "string", "maxLength": cls.instruction_chars}},
            "required": ["instruction", "input"],
            "additionalProperties": False,
        }

    def echoed(self, blob: str, out: BaseModel) -> bool:
        # Any JSON in the instruction is harmless here; `check` rejects a copy of the original.
        return False

    def check(self, out: BaseModel) -> BaseModel:
        if squash(out.instruction).lower() == squash(self.instruction).lower():
            raise Rejected("rewrite: the new instruction repeats the original")
        return out
