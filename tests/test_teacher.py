from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lionloop.stores.cache import CallCache
from lionloop.teacher.client import Reply, Teacher
from lionloop.teacher.requests import Answer, Rewrite, TeacherRequest


class Scripted:
    """Replies from a script per attempt; counts what was sent."""

    name = "scripted"
    model = "m"

    def __init__(self, script: dict[tuple[str, int], str]) -> None:
        self.script = script
        self.sent: list[tuple[str, int]] = []

    def params(self) -> dict[str, Any]:
        return {"temperature": 0}

    def prompt_for(self, request: TeacherRequest, attempt: int) -> Any:
        return {**request.payload(), "attempt": attempt}

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        for i, r in enumerate(requests):
            self.sent.append((r.instruction, attempt))
            text = self.script.get((r.instruction, attempt))
            if text is None:
                yield i, Reply(error="http 500")
            else:
                yield i, Reply(text=text, usage={"prompt_tokens": 10, "completion_tokens": 5})


def test_cache_means_no_second_payment(tmp_path: Path) -> None:
    backend = Scripted({("a", 0): "A", ("b", 0): "B"})
    t = Teacher(backend, CallCache(tmp_path / "c.sqlite"), "run").at(1, "curate")
    r1 = t.ask([Answer(instruction="a"), Answer(instruction="b")])
    assert [r.output.text for r in r1] == ["A", "B"] and not any(r.cached for r in r1)
    # A new Teacher over the same cache file (a resumed process) pays nothing.
    t2 = Teacher(backend, CallCache(tmp_path / "c.sqlite"), "run").at(1, "curate")
    r2 = t2.ask([Answer(instruction="b"), Answer(instruction="a")])
    assert [r.output.text for r in r2] == ["B", "A"] and all(r.cached for r in r2)
    assert len(backend.sent) == 2
    stats = t2.stats()[(1, "curate")]
    # Paid by this very stage before the "crash": resumed, not hits (a stage's hits read the
    # same with or without a crash); asked again by another stage, they are hits.
    assert stats["calls"] == 2 and stats["resumed"] == 2 and stats["hits"] == 0 and stats["prompt_tokens"] == 20
    t2.at(2, "curate").ask([Answer(instruction="a")])
    assert t2.stats()[(2, "curate")]["hits"] == 1 and len(backend.sent) == 2


def test_parse_failure_is_reasked_then_recorded(tmp_path: Path) -> None:
    backend = Scripted({
        ("x", 0): "no json here", ("x", 1): '{"instruction": "new x"}',
        ("y", 0): "nope", ("y", 1): "still nope",
    })
    t = Teacher(backend, CallCache(tmp_path / "c.sqlite"), "run", parse_retries=1)
    rx, ry = t.ask([Rewrite(instruction="x"), Rewrite(instruction="y")])
    assert rx.ok and rx.output.instruction == "new x"
    assert not ry.ok and ry.error.startswith("parse:") and ry.raw == "still nope"
    assert sorted(backend.sent) == [("x", 0), ("x", 1), ("y", 0), ("y", 1)]


def test_errors_become_results_and_are_not_cached(tmp_path: Path) -> None:
    backend = Scripted({})
    t = Teacher(backend, CallCache(tmp_path / "c.sqlite"), "run")
    (r,) = t.ask([Answer(instruction="z")])
    assert not r.ok and r.error == "http 500"
    t.ask([Answer(instruction="z")])
    assert len(backend.sent) == 2  # a failed call was never paid for, so it is retried


def test_budget_refuses_past_the_limit(tmp_path: Path) -> None:
    backend = Scripted({(c, 0): c.upper() for c in "abcd"})
    cache = CallCache(tmp_path / "c.sqlite")
    t = Teacher(backend, cache, "run", budget=lambda: max(0, 3 - cache.total_paid("run")))
    res = t.ask([Answer(instruction=c) for c in "abcd"])
    assert [r.ok for r in res] == [True, True, True, False]
    assert res[3].error == "teacher budget exhausted" and len(backend.sent) == 3
    # Cached answers stay free after the budget is spent.
    assert t.ask([Answer(instruction="a")])[0].ok
    # `limit` caps one batch.
    t2 = Teacher(Scripted({(c, 0): c for c in "pqr"}), cache, "other")
    assert [r.ok for r in t2.ask([Answer(instruction=c) for c in "pqr"], limit=1)] == [True, False, False]


def test_a_failed_call_leaves_its_budget_to_the_rest_of_the_batch(tmp_path: Path) -> None:
    """Calls go out in chunks the budget allows, each sized after the one before: a call that
    failed was not paid for, so the next request of the batch gets its place."""
    backend = Scripted({(c, 0): c.upper() for c in "acde"})  # b fails (http 500)
    cache = CallCache(tmp_path / "c.sqlite")
    t = Teacher(backend, cache, "run", budget=lambda: max(0, 3 - cache.total_paid("run")))
    res = t.ask([Answer(instruction=c) for c in "abcde"])
    assert [r.ok for r in res] == [True, False, True, True, False]
    assert res[1].error == "http 500" and res[4].error == "teacher budget exhausted"
    assert [c for c, _ in backend.sent] == list("abcd") and cache.total_paid("run") == 3
