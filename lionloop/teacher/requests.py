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


class ParseError(ValueError):
    """A teacher reply does not fit the request's output schema."""


class Rejected(ParseError):
    """A reply that reads fine but fails the request's own check (`TeacherRequest.check`), e.g. a
    rewrite that repeats its original: re-asked like a parse failure, counted apart from them."""


# -- tolerant JSON extraction ----------------------------------------------------------------------


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_PY_LITERALS = re.compile(r"\b(True|False|None)\b")


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the `}` closing the `{` at `start` (JSON string-aware), or None."""
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _repair(blob: str) -> Any:
    """Common near-JSON mistakes: trailing commas, Python literals, single quotes."""
    fixed = _TRAILING_COMMA.sub(r"\1", blob)
    fixed = _PY_LITERALS.sub(lambda m: {"True": "true", "False": "false", "None": "null"}[m[1]], fixed)
    if '"' not in fixed:
        fixed = fixed.replace("'", '"')
    return json.loads(fixed)


def json_objects(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Every top-level JSON object in a reply, with its source text: bare, fenced or in prose.

    Objects nested in another are not top-level and are not returned. Scanning stops at an
    object that never closes (a truncated reply): nothing after it is top-level either.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    decoder = json.JSONDecoder()
    i = 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return out
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            end = _balanced_end(text, i)
            if end is None:
                return out
            try:
                obj = _repair(text[i:end])
            except (json.JSONDecodeError, ValueError):
                i = end  # a malformed object: skip it whole, never mine its insides
                continue
        if isinstance(obj, dict):
            out.append((text[i:end], obj))
        i = end


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


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
        """True when an output also appears in the request's untrusted text (copied, not judged):
        verbatim, or as a JSON object there that reads as the same output."""
        texts = self._untrusted_text()
        squashed = _squash(blob)
        if any(squashed in _squash(t) for t in texts):
            return True
        for t in texts:
            for _, obj in json_objects(t):
                try:
                    planted = self.Output.model_validate(obj)
                except ValidationError:
                    continue
                if self._key(planted) == self._key(out):
                    return True
        return False

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


_LION_SCORES = re.compile(r"^\s*(\d{1,2}(?:\.\d+)?)\s*[ ,;/]\s*(\d{1,2}(?:\.\d+)?)\s*$")


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
        """Lion's own format: the reply's first line holds the two scores ("8 6")."""
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        m = _LION_SCORES.match(first)
        if not m or any(first.strip() in t for t in self._untrusted_text()):
            return []
        try:
            return [JudgeOut(explanation=text.strip(), score_1=float(m[1]), score_2=float(m[2]))]
        except ValidationError:
            return []


class Rewrite(TeacherRequest):
    """Write a new instruction from an old one: `hard` = same domain and difficulty, `easy` = rarer."""

    kind: ClassVar[str] = "rewrite"
    template: ClassVar[str] = "rewrite.j2"
    Output: ClassVar[type[BaseModel]] = RewriteOut
    untrusted: ClassVar[tuple[str, ...]] = ("instruction", "input")

    instruction: str
    input: str = ""
    task: str = ""
    mode: Literal["hard", "easy"] = "hard"
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
        if _squash(out.instruction).lower() == _squash(self.instruction).lower():
            raise Rejected("rewrite: the new instruction repeats the original")
        return out
