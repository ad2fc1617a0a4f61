"""docs/plugins.md documents every hook with its exact signature: adding, removing or changing a
hookspec without the doc fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from lionloop.plugin import hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def specs() -> dict[str, object]:
    return {n: f for n, f in vars(hookspecs).items() if n.startswith("lionloop_") and hasattr(f, "lionloop_spec")}


def signature_line(name: str, fn: object) -> str:
    """`def name(arg: Type, ...) -> Ret` from the hookspec's own annotations (strings here)."""
    sig = inspect.signature(fn)
    args = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {name}({args}) -> {sig.return_annotation}"


def sections() -> dict[str, str]:
    """The doc's hook sections by hook name: from a `#### \\`lionloop_...\\`` heading to the next heading
    of level 4 or above."""
    parts = re.split(r"^#### `(lionloop_\w+)`\s*$", DOC.read_text(), flags=re.M)
    return {parts[i]: re.split(r"\n#{1,4} ", parts[i + 1])[0] for i in range(1, len(parts), 2)}


def test_every_hook_has_a_section_and_no_section_names_a_missing_hook() -> None:
    assert set(sections()) == set(specs())


@pytest.mark.parametrize("name", sorted(specs()))
def test_hook_section_has_exact_signature_semantics_arguments_and_example(name: str) -> None:
    fn = specs()[name]
    text = sections()[name]
    assert f"```python\n{signature_line(name, fn)}\n```" in text, f"{name}: signature differs from the hookspec"
    firstresult = fn.lionloop_spec["firstresult"]
    results = re.search(r"\*\*Results:\*\* (firstresult|collected|not collected)", text)
    assert results, f"{name}: no **Results:** line"
    assert (results[1] == "firstresult") == firstresult, f"{name}: firstresult is {firstresult} in the hookspec"
    params = list(inspect.signature(fn).parameters)
    for p in params:
        assert f"- `{p}`" in text, f"{name}: argument {p!r} is not documented"
    if not params:
        assert "**Arguments:** none" in text
    example = re.search(r"\*\*Example:\*\*\s*```python\n(.*?)```", text, re.S)
    assert example and "@hookimpl" in example[1] and f"def {name}(" in example[1], f"{name}: no example"
    compile(example[1], f"docs/plugins.md:{name}", "exec")  # at least valid Python
    # The example's arguments are ones the hook offers (pluggy allows a subset, never more).
    used = re.search(rf"def {name}\((.*?)\)", example[1])[1]
    assert {a.strip() for a in used.split(",") if a.strip()} <= set(params)


def test_hookspecs_keep_one_docstring_each() -> None:
    for name, fn in specs().items():
        assert inspect.getdoc(fn), name


def test_doc_check_catches_a_changed_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above is not vacuous: a hookspec with an extra argument no longer matches."""

    def lionloop_round_end(summary: dict, ctx: object, extra: int) -> None:  # noqa: ARG001
        """changed"""

    name = "lionloop_round_end"
    assert signature_line(name, specs()[name]) in sections()[name]
    assert signature_line(name, lionloop_round_end) not in sections()[name]
