"""Verifiers: each kind, each place an answer can sit in a reply, references that cannot match,
and a user function."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lionloop import (
    ConfigError,
    Instruction,
    PluginError,
    VerifierSpec,
    build_verifier,
    validate_options,
)
from lionloop.plugin.verifiers import reference_problem


def check(spec: dict | str, answer: str, reference: object) -> bool | None:
    return build_verifier(spec)(answer, reference)


@pytest.mark.parametrize(("spec", "answer", "reference", "right"), [
    # exact: the same text; contains: on word boundaries only
    ("exact", " Paris ", "Paris", True),
    ("exact", "paris", "Paris", False),
    ({"kind": "exact", "match": "contains"}, "It is Paris.", "Paris", True),
    ({"kind": "exact", "match": "contains"}, "x 119", "19", False),
    # normalized: case, punctuation, articles and spaces do not matter
    ("normalized", "The  Eiffel tower!", "eiffel Tower", True),
    ("normalized", "Eiffel towers", "eiffel tower", False),
    ({"kind": "normalized", "match": "contains"}, "It is the Eiffel Tower, in Paris.", "eiffel tower", True),
    ({"kind": "normalized", "match": "contains"}, "Tokyoite", "Tokyo", False),
    ({"kind": "normalized", "match": "last_line"}, "Let me think.\nParis is big.\n\nParis\n", "paris", True),
    ({"kind": "normalized", "match": "last_line"}, "Paris\nor Lyon", "paris", False),
    # numeric: the last number, within tolerance
    ("numeric", "The answer is 1,234.", "1234", True),
    ("numeric", "First 42, then 43.", "42", False),
    ({"kind": "numeric", "match": "contains"}, "First 42, then 43.", "42", True),
    ("numeric", "-3.5", "-3.50", True),
    ({"kind": "numeric", "tolerance": 0.01}, "3.14159", "3.14", True),
    ({"kind": "numeric", "rel_tolerance": 0.1}, "105", "100", True),
    ("numeric", "105", "100", False),
    ("numeric", "no number here", "7", False),
    # choice: a multiple-choice letter however it is written
    ("choice", "(B)", "B", True),
    ("choice", "b", "B", True),
    ("choice", "Answer: B", "B", True),
    ("choice", "B) Mars", "B", False),  # whole: only a bare letter (or "answer: X")
    ({"kind": "choice", "match": "contains"}, "B) Mars", "B", True),
    ({"kind": "choice", "match": "contains"}, "I think the answer is (C), not B.", "C", True),
    ({"kind": "choice", "match": "contains"}, "Mars is the red planet (B).", "B", True),
    ({"kind": "choice", "match": "contains"}, "a planet", "A", False),  # a lower-case article is no letter
    ("choice", "C", "B) Mars", False),
    # regex: the reference is the pattern
    ("regex", "colour", "colou?r", True),
    ("regex", "colours", "colou?r", False),
    ({"kind": "regex", "match": "contains"}, "the colour red", "colou?r", True),
    # extract: pull the answer out first (its last match, group 1)
    ({"kind": "numeric", "extract": r"####\s*(\S+)"}, "3 + 4 = 7 so #### 7", "7", True),
    ({"kind": "numeric", "extract": r"####\s*(\S+)"}, "the answer is 7", "7", False),  # no marker: wrong
    # several acceptable references: any one counts
    ("normalized", "NYC", ["New York", "nyc"], True),
])
def test_each_kind_and_match(spec: dict | str, answer: str, reference: object, right: bool) -> None:
    assert check(spec, answer, reference) is right


def test_no_reference_cannot_be_checked() -> None:
    assert check("normalized", "anything", None) is None
    assert check("normalized", "anything", "  ") is None
    assert check("none", "Paris", "Paris") is None


@pytest.mark.parametrize(("kind", "reference", "why"), [
    ("numeric", "many", "no number"),
    ("choice", "Mars", "not an option letter"),
    ("regex", "colou(r", "not a regular expression"),
])
def test_references_that_can_never_match_are_named(kind: str, reference: str, why: str) -> None:
    assert why in reference_problem(VerifierSpec(kind=kind), reference)
    assert reference_problem(VerifierSpec(kind="normalized"), reference) is None


def test_a_user_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_checks.py").write_text(
        "def same_length(answer, reference, instruction):\n"
        "    if reference is None:\n        return None\n"
        "    return len(answer) == len(reference) and instruction.task == 'words'\n"
        "def broken(answer, reference, instruction):\n    raise ValueError('oops')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    verify = build_verifier({"kind": "function", "function": "my_checks:same_length"})
    ins = Instruction(text="say a word", task="words")
    assert verify("abcd", "wxyz", ins) is True
    assert verify("abc", "wxyz", ins) is False
    assert verify("abc", None, ins) is None
    boom = build_verifier({"kind": "function", "function": "my_checks:broken"})
    with pytest.raises(PluginError, match=rf"verifier my_checks:broken raised ValueError: oops on instruction {ins.id}"):
        boom("a", "b", ins)
    sys.modules.pop("my_checks", None)


@pytest.mark.parametrize(("options", "message"), [
    ({"kind": "function"}, r"^v\.function: kind: function needs function"),
    ({"kind": "function", "function": "no_such_module_xyz:f"}, r"^v\.function: cannot import module 'no_such_module_xyz'"),
    ({"kind": "function", "function": "json:no_such"}, r"^v\.function: module 'json' has no function 'no_such'"),
    ({"kind": "function", "function": "json"}, r"^v\.function: 'json' is not of the form 'module:function'"),
    ({"kind": "exact", "function": "json:loads"}, r"^v\.function: only used with kind: function"),
    ({"kind": "numeric", "extract": "(unclosed"}, r"^v\.extract: Value error, not a regular expression|^v\.extract: not a regular"),
    ({"kind": "fuzzy"}, r"^v\.kind: Input should be"),
])
def test_bad_specs_are_config_errors_naming_the_field(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_options(VerifierSpec, options, "v")
