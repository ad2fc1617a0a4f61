"""Verifiers: whether an answer is right, checked against a reference answer. Any task pack may
use them (`from lionloop import VerifierSpec, build_verifier`); the built-in `dataset` pack takes
one from `task.options.verifier`.

Kinds: `exact` (the same text), `normalized` (the same after lower-casing and dropping
punctuation, articles and extra spaces: SQuAD's normalisation), `numeric` (the last number of
the answer within a tolerance), `choice` (a multiple-choice letter), `regex` (the reference is a
pattern the answer must match) and `function` (your own `module:function`).

Real teachers and students rarely answer with the bare reference ("The answer is 42."), so a
spec says where the answer is: `match: whole` (the whole reply), `contains` (anywhere in the
reply, on word boundaries) or `last_line` (its last non-empty line); `extract`, a regular
expression, pulls the answer out of the reply first (its last match, group 1 if it has one).
A reference may be a list of acceptable answers: any one of them counts.
"""

from __future__ import annotations

import importlib
import math
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lionloop.errors import PluginError
from lionloop.plugin.options import OptionError, PluginOptions
from lionloop.records import Instruction

KINDS = ("exact", "normalized", "numeric", "choice", "regex", "function", "none")
UserCheck = Callable[[str, Any, Instruction | None], "bool | None"]


class VerifierSpec(PluginOptions):
    """How answers are checked against references (a task pack's `verifier` option)."""

    kind: Literal["exact", "normalized", "numeric", "choice", "regex", "function", "none"] = Field(
        "normalized",
        description="exact | normalized (case, punctuation, articles, spaces ignored) | numeric (last number, "
        "within tolerance) | choice (a multiple-choice letter) | regex (the reference is a pattern) | "
        "function (your module:function) | none (no verifier: score by referee).",
    )
    match: Literal["whole", "contains", "last_line"] = Field(
        "whole",
        description="Where the answer is in a reply: the whole reply, anywhere in it (on word boundaries: "
        "chatty replies), or its last non-empty line.",
    )
    extract: str | None = Field(
        None, description="Optional regex pulling the answer out of the reply first (its last match; group 1 if any).",
    )
    tolerance: float = Field(1e-6, ge=0, description="numeric: absolute tolerance.")
    rel_tolerance: float = Field(0.0, ge=0, description="numeric: tolerance relative to the reference's size.")
    letters: str = Field("ABCDEFGHIJ", min_length=2, description="choice: the option letters.")
    function: str | None = Field(
        None,
        description="function: 'module:function' called as f(answer, reference, instruction) -> bool | None "
        "(None: cannot check this row).",
    )

    @field_validator("extract")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as err:
                raise ValueError(f"not a regular expression ({err})") from None
        return v

    @model_validator(mode="after")
    def _function(self) -> VerifierSpec:
        if self.kind == "function":
            if not self.function:
                raise OptionError("function", "kind: function needs function: 'module:function'")
            load_function(self.function, "function")
        elif self.function:
            raise OptionError("function", f"only used with kind: function (kind is {self.kind!r})")
        return self


def load_function(path: str, key: str = "function") -> UserCheck:
    """Import `module:function`; an OptionError naming `key` when it cannot be found."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise OptionError(key, f"{path!r} is not of the form 'module:function'")
    try:
        mod = importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's to fix, in one line
        raise OptionError(key, f"cannot import module {module!r} ({type(err).__name__}: {err})") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise OptionError(key, f"module {module!r} has no function {name!r}")
    return fn


# -- normalising and pulling answers out of replies --------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "“”‘’«»…"})
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|(?<![\w.])-?\.\d+")


def normalize(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's answer normalisation)."""
    text = unicodedata.normalize("NFKC", str(text)).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def numbers(text: str) -> list[float]:
    """The numbers in a text, in order: '1,234.5' is one number, '-3' negative, '2e3' 2000."""
    out = []
    for m in _NUMBER.finditer(str(text)):
        try:
            out.append(float(m.group(0).replace(",", "")))
        except ValueError:
            continue
    return out


def _choice_letter(text: str, letters: str, anywhere: bool) -> str | None:
    """The option letter a reply gives: 'B', '(B)', 'B.', 'B) Paris', 'Answer: B', 'the answer is (b)'."""
    text = str(text).strip()
    up = "".join(dict.fromkeys(letters.upper()))
    cls = re.escape(up)
    # Only the bare reply may be lower case ("b"); in prose a lower-case "a" is an article.
    bare = re.fullmatch(rf"[\s(\[]*([{cls}])[\s)\].:]*", text, re.I)
    if bare:
        return bare.group(1).upper()
    said = re.findall(rf"(?i:answer)\s*(?:(?i:is)|:)\s*\(?([{cls}])\)?(?!\w)", text)
    if said:
        return said[-1]
    if not anywhere:
        return None
    lead = re.match(rf"[\s(\[]*([{cls}])[)\].:](?:\s|$)", text)  # "B) Paris", "B. Paris"
    if lead:
        return lead.group(1)
    marked = re.findall(rf"\(([{cls}])\)|(?<!\w)([{cls}])[).:](?!\w)", text)  # the last "(C)", "C)", "C."
    if marked:
        a, b = marked[-1]
        return a or b
    alone = re.findall(rf"(?<![\w'])([{cls}])(?![\w'])", text)
    return alone[-1] if alone else None


def _bounded(needle: str, hay: str) -> bool:
    """`needle` occurs in `hay` not glued to letters or digits ('19' is not in '119')."""
    return bool(needle) and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", hay) is not None


# -- the verifier ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verifier:
    """`verifier(answer, reference, instruction=None) -> bool | None`: None when there is no reference
    to check against (and, for `function`, whenever the function says so)."""

    spec: VerifierSpec

    def __call__(self, answer: str, reference: Any, instruction: Instruction | None = None) -> bool | None:
        spec = self.spec
        if spec.kind == "none":
            return None
        text = self._view(str(answer or ""))
        if spec.kind == "function":
            fn = load_function(spec.function or "")
            try:
                got = fn(text, reference, instruction)
            except Exception as err:  # noqa: BLE001 - a user function's bug, named in one line
                where = f" on instruction {instruction.id}" if instruction is not None else ""
                raise PluginError(f"verifier {spec.function} raised {type(err).__name__}: {err}{where}") from err
            return None if got is None else bool(got)
        refs = reference if isinstance(reference, (list, tuple)) else [reference]
        refs = [r for r in refs if r is not None and str(r).strip() != ""]
        if not refs:
            return None
        return any(self._check(text, str(r)) for r in refs)

    def _view(self, reply: str) -> str:
        """The part of a reply that holds the answer: extracted, then whole or last line."""
        spec = self.spec
        if spec.extract:
            found = list(re.finditer(spec.extract, reply, re.S))
            if not found:
                return ""
            m = found[-1]
            reply = m.group(1) if m.re.groups else m.group(0)
        reply = reply.strip()
        if spec.match == "last_line":
            lines = [ln.strip() for ln in reply.splitlines() if ln.strip()]
            return lines[-1] if lines else ""
        return reply

    def _check(self, text: str, ref: str) -> bool:
        spec, anywhere = self.spec, self.spec.match == "contains"
        if spec.kind == "exact":
            return _bounded(ref.strip(), text) if anywhere else text == ref.strip()
        if spec.kind == "normalized":
            a, b = normalize(text), normalize(ref)
            return (bool(b) and f" {b} " in f" {a} ") if anywhere else a == b
        if spec.kind == "numeric":
            want = numbers(ref)
            if not want:
                return False
            got = numbers(text)
            close = [g for g in (got if anywhere else got[-1:]) if self._close(g, want[-1])]
            return bool(close)
        if spec.kind == "choice":
            want = _choice_letter(ref, spec.letters, anywhere=True)
            return want is not None and _choice_letter(text, spec.letters, anywhere) == want
        if spec.kind == "regex":
            try:
                pattern = re.compile(ref.strip(), re.S)
            except re.error:
                return False
            return bool(pattern.search(text) if anywhere else pattern.fullmatch(text))
        raise AssertionError(spec.kind)  # every kind is handled above

    def _close(self, got: float, want: float) -> bool:
        if math.isnan(got) or math.isnan(want):
            return False
        return abs(got - want) <= self.spec.tolerance + self.spec.rel_tolerance * abs(want)


def reference_problem(spec: VerifierSpec, reference: Any) -> str | None:
    """Why a reference can never be matched under `spec` (None: it is fine), for load-time checks."""
    refs = reference if isinstance(reference, (list, tuple)) else [reference]
    for ref in (str(r) for r in refs if r is not None):
        if spec.kind == "numeric" and not numbers(ref):
            return f"no number in the reference {ref[:40]!r} (verifier kind: numeric)"
        if spec.kind == "choice" and _choice_letter(ref, spec.letters, anywhere=True) is None:
            return f"the reference {ref[:40]!r} is not an option letter ({spec.letters}; verifier kind: choice)"
        if spec.kind == "regex":
            try:
                re.compile(ref.strip())
            except re.error as err:
                return f"the reference is not a regular expression ({err}; verifier kind: regex)"
    return None


def build_verifier(spec: VerifierSpec | dict[str, Any] | str | None) -> Verifier:
    """A verifier from a spec, a dict of its fields, or a kind's name (`build_verifier("numeric")`)."""
    if spec is None:
        spec = VerifierSpec(kind="none")
    elif isinstance(spec, str):
        spec = VerifierSpec(kind=spec)
    elif isinstance(spec, dict):
        spec = VerifierSpec.model_validate(spec)
    return Verifier(spec)
