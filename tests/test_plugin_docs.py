"""docs/plugins.md documents every hook with its exact signature: adding, removing or changing a
hookspec without the doc fails here. Every ```python block of the page runs as written: hook
signatures (checked against the hookspecs) and blocks marked `# snippet` (parts of a larger plugin)
are compiled only, and reported as skipped."""

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
    of level 4 or above (a `#` line inside a code block is code, not a heading)."""
    out: dict[str, list[str]] = {}
    current, fenced = None, False
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,4} ", line):
            m = re.fullmatch(r"#### `(lionloop_\w+)`\s*", line)
            current = m[1] if m else None
            if current:
                out[current] = []
                continue
        if current:
            out[current].append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in out.items()}


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


def blocks() -> list[tuple[int, str]]:
    """Every ```python block of the page: (line of its first code line, code)."""
    text = DOC.read_text()
    return [(text[: m.start(1)].count("\n") + 1, m[1]) for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)]


def kind(code: str) -> str:
    if re.fullmatch(r"def lionloop_\w+\(.*\) -> .+\n", code):
        return "signature"
    return "snippet" if code.startswith("# snippet") else "example"


def runs_a_loop(code: str) -> bool:
    return "build_graph()" in code


@pytest.mark.parametrize(
    ("line", "code"),
    [pytest.param(n, code, id=f"plugins.md:{n}", marks=[pytest.mark.slow] if runs_a_loop(code) else [])
     for n, code in blocks()],
)
def test_every_code_block_runs_as_written(line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    what = kind(code)
    source = code.rstrip("\n") + ": ..." if what == "signature" else code  # a signature has no body
    compiled = compile(source, f"docs/plugins.md:{line}", "exec")  # every block is valid Python
    if what != "example":
        pytest.skip(f"{what}: compiled, not run" + (f" ({code.splitlines()[0]})" if what == "snippet" else ""))
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    exec(compiled, {"__name__": f"plugins_md_{line}"})


def test_the_page_is_mostly_runnable_examples() -> None:
    """Snippets are the exception: a page of unrunnable fragments would pass the test above."""
    kinds = [kind(code) for _, code in blocks()]
    assert kinds.count("signature") == len(specs())
    assert kinds.count("example") >= 12 and kinds.count("snippet") <= 2, kinds


def test_docs_and_the_example_plugin_import_from_lionloop_alone() -> None:
    """Plugin code on the page and in tests/example_plugin uses the plugin API, `from lionloop import`;
    the page's one exception is the loop its testing example runs."""
    loop_only = {"lionloop.loop.graph", "lionloop.loop.runtime"}
    for _, code in blocks():
        for mod in re.findall(r"^\s*from (lionloop[\w.]*) import", code, re.M):
            assert mod == "lionloop" or mod in loop_only, mod
    example = DOC.parents[1] / "tests" / "example_plugin" / "src" / "lionloop_mirror" / "__init__.py"
    assert set(re.findall(r"^\s*(?:from|import) (lionloop[\w.]*)", example.read_text(), re.M)) == {"lionloop"}


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
