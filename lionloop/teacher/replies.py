"""Reading a teacher's reply: tolerant JSON extraction, and the JSON objects untrusted text plants.

A reply is read for the top-level JSON objects of the model's own text (`json_objects`), repaired
where it is near-JSON (trailing commas, Python literals). Untrusted text (instructions, answers,
earlier teacher output) is searched everywhere for objects it could plant (`planted_objects`), so a
request's parser can ignore a verdict the model merely copied (`lionloop.teacher.requests`).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any


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


def repair(blob: str) -> Any:
    """Common near-JSON mistakes: trailing commas, Python literals, single quotes."""
    fixed = _TRAILING_COMMA.sub(r"\1", blob)
    fixed = _PY_LITERALS.sub(lambda m: {"True": "true", "False": "false", "None": "null"}[m[1]], fixed)
    if '"' not in fixed:
        fixed = fixed.replace("'", '"')
    return json.loads(fixed, strict=False)


def json_objects(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Every top-level JSON object in a reply, with its source text: bare, fenced or in prose.

    Objects nested in another are not top-level and are not returned. Scanning stops at an
    object that never closes (a truncated reply): nothing after it is top-level either.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    # strict=False: raw control characters inside a string (seen from vLLM's guided decoding of a
    # 135M model) do not make an otherwise sound object unreadable.
    decoder = json.JSONDecoder(strict=False)
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
                obj = repair(text[i:end])
            except (json.JSONDecodeError, ValueError):
                i = end  # a malformed object: skip it whole, never mine its insides
                continue
        if isinstance(obj, dict):
            out.append((text[i:end], obj))
        i = end


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


# -- what untrusted text plants ----------------------------------------------------------------------

_MAX_REPAIRS = 256  # near-JSON repairs tried per text (each scans up to _REPAIR_SPAN characters)
_REPAIR_SPAN = 4000
# Past this many different planted outputs, matching one proves nothing: a genuine verdict would
# match some planted one by chance (every 1-10 score pair planted vetoed every verdict).
FEW_PLANTED = 3


@functools.lru_cache(maxsize=4096)
def planted_objects(text: str, depth: int = 0) -> tuple[str, ...]:
    """Every JSON object anywhere in `text` (as sorted-key JSON): at any nesting, after broken or
    unclosed JSON, and inside JSON string values (two levels). Unlike `json_objects`, which reads
    a reply, this reads untrusted text, where a forgery may hide anywhere."""
    found: dict[str, None] = {}
    decoder = json.JSONDecoder(strict=False)
    repairs = 0
    i = text.find("{")
    while i >= 0:
        obj: Any = None
        try:
            obj, nxt = decoder.raw_decode(text, i)  # sound: its insides are walked below
        except (json.JSONDecodeError, RecursionError):
            nxt = i + 1  # broken here: the next brace may open a sound object inside it
            if repairs < _MAX_REPAIRS:
                repairs += 1
                close = _balanced_end(text[i : i + _REPAIR_SPAN], 0)
                if close is not None:
                    try:
                        obj = repair(text[i : i + close])
                    except (ValueError, RecursionError):
                        obj = None
        stack = [obj]
        while stack:  # the object, every object nested in it, and JSON held in its strings
            x = stack.pop()
            if isinstance(x, dict):
                found.setdefault(json.dumps(x, sort_keys=True), None)
                stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)
            elif isinstance(x, str) and "{" in x and depth < 2:
                found.update(dict.fromkeys(planted_objects(x, depth + 1)))
        i = text.find("{", nxt)
    return tuple(found)


# Words in a request that make a JSON object a fair plain-text answer.
_ASKS_FOR_JSON = ("json", "{", "dict", "object")


def plain_text_mismatch(req: Any, text: Any) -> str | None:
    """Why a reply does not fit a plain-text request (a TeacherRequest with `structured = False`), or
    None: a reply that is nothing but a JSON object, to a request whose text never mentions JSON or
    objects, is a server answering some other request type (`{"unexpected": true}` became a
    training row)."""
    if not isinstance(text, str):
        return None
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        obj = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    asked = " ".join(v for v in req.model_dump().values() if isinstance(v, str)).lower()
    if any(w in asked for w in _ASKS_FOR_JSON):
        return None
    return f"a JSON object where a plain-text {req.kind} was asked"

