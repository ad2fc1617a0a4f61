"""Rewrites packed k to a call (`teacher.rewrites_per_call`): the same rewrites for fewer paid calls,
one result per asked request, failures kept per item, and resumes that pay nothing twice."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import BackendDouble, micro_config, pool_rows
from pydantic import ValidationError

from lionloop.config import TaskConfig, TeacherConfig
from lionloop.plugin.manager import get_plugin_manager
from lionloop.stores.cache import CallCache
from lionloop.teacher.client import BUDGET_ERROR, Reply, Teacher
from lionloop.teacher.packing import Rewrites, pack
from lionloop.teacher.replies import ParseError
from lionloop.teacher.requests import Answer, Rewrite, TeacherRequest

REGISTRY = get_plugin_manager().build_registry()
SkillsPack = REGISTRY.get("task_pack", "skills", "task.pack")
OracleBackend = REGISTRY.get("backend", "oracle", "teacher.backend")


def _rewrites(n: int, mode: str = "hard", first: int = 0) -> list[Rewrite]:
    """n rewrite requests of the skills pack's instructions, two variants of each instruction."""
    pack_ = SkillsPack(TaskConfig(), 0)
    skills = pack_.skills()
    out = []
    for k in range(first, first + n):
        ins = pack_.make(skills[k // 2 % len(skills)], 1 + k // 2 % 3, random.Random(f"i{k // 2}"), split="cache")
        out.append(Rewrite(instruction=ins.text, task=ins.task, mode=mode, variant=k % 2))
    return out


def _oracle(tmp_path: Path, k: int, cache: str = "cache") -> Teacher:
    pack_ = SkillsPack(TaskConfig(), 0)
    backend = OracleBackend(TeacherConfig(), SimpleNamespace(task_pack=pack_))
    return Teacher(backend, CallCache(tmp_path / f"{cache}.sqlite"), "t", rewrites_per_call=k).at(1, "generate")


def test_pack_groups_rewrites_of_one_mode_in_the_order_asked() -> None:
    hard, easy = _rewrites(5), _rewrites(2, "easy", first=10)
    answer = Answer(instruction="copy abc")
    asked: list[TeacherRequest] = [hard[0], answer, *hard[1:3], easy[0], *hard[3:], easy[1]]
    sent, members = pack(asked, 4)
    assert [type(s).__name__ for s in sent] == ["Answer", "Rewrites", "Rewrite", "Rewrites"]
    assert members == [[1], [0, 2, 3, 5], [6], [4, 7]]
    assert sent[1].items == (hard[0], hard[1], hard[2], hard[3]) and sent[1].mode == "hard"
    assert sent[2] is hard[4]  # a chunk of one is the plain request: the same prompt and cache key
    assert sent[3].items == tuple(easy) and sent[3].mode == "easy"
    assert pack(asked, 1) == (asked, [[i] for i in range(len(asked))])
    with pytest.raises(ValidationError, match="mode"):
        Rewrites(items=(hard[0], easy[0]), mode="hard")


def test_packed_rewrites_are_the_single_ones_for_fewer_calls_and_a_resume_pays_nothing(tmp_path: Path) -> None:
    asked = [*_rewrites(10), *_rewrites(3, "easy", first=20)]
    single, packed = _oracle(tmp_path, 1, "single"), _oracle(tmp_path, 4, "packed")
    one, four = single.ask(asked), packed.ask(asked)
    assert [r.request for r in four] == asked and all(r.ok for r in four)
    assert [r.output for r in four] == [r.output for r in one]
    assert single.cache.total_paid("t") == 13
    assert packed.cache.total_paid("t") == 3 + 1  # 10 hard: 4 + 4 + 2; 3 easy: one call
    again = _oracle(tmp_path, 4, "packed").ask(asked)  # a resumed stage asks the same requests
    assert [r.output for r in again] == [r.output for r in four] and all(r.cached for r in again)
    assert packed.cache.total_paid("t") == 4


def test_a_call_limit_counts_packed_calls(tmp_path: Path) -> None:
    asked = _rewrites(8)
    got = _oracle(tmp_path, 4).ask(asked, limit=1)
    assert [r.ok for r in got] == [True] * 4 + [False] * 4
    assert {r.error for r in got[4:]} == {BUDGET_ERROR}


class ScriptedRewriter(BackendDouble):
    """An LLM double for packed rewrites (this test's scripted replies; the chat path itself is
    tested over HTTP below): `replies` per attempt, each a function of the packed request."""

    def __init__(self, *replies: Any) -> None:
        self.replies = replies
        self.calls = 0

    def complete(self, requests: Sequence[TeacherRequest], attempt: int) -> Iterator[tuple[int, Reply]]:
        for i, req in enumerate(requests):
            self.calls += 1
            yield i, Reply(text=self.replies[min(attempt, len(self.replies) - 1)](req))


def _outputs(items: Sequence[Rewrite], same: int | None = None) -> str:
    return json.dumps({"outputs": [{"instruction": it.instruction if j == same else f"new {j}: {it.instruction}", "input": ""}
                                   for j, it in enumerate(items)]})


def _reply(req: TeacherRequest, same: int | None = None, short: bool = False) -> str:
    """A packed reply (`same`: the item copied back; `short`: one output missing), or a single one."""
    if isinstance(req, Rewrites):
        return _outputs(req.items[:-1] if short else req.items, same)
    return json.dumps({"instruction": req.instruction if same is not None else f"new: {req.instruction}", "input": ""})


def test_a_reply_short_of_items_is_re_asked_and_a_copied_item_is_asked_again(tmp_path: Path) -> None:
    asked = _rewrites(3)
    short = Rewrites(items=tuple(asked), mode="hard")
    with pytest.raises(ParseError, match="2 outputs for 3 items"):
        short.parse(_outputs(asked[:2]))
    # attempt 0: short; attempt 1: item 1 copied, then asked alone (a re-ask prompt) and rewritten.
    backend = ScriptedRewriter(lambda req: _reply(req, short=True),
                               lambda req: _reply(req, same=1 if isinstance(req, Rewrites) else None))
    teacher = Teacher(backend, CallCache(tmp_path / "c.sqlite"), "t", parse_retries=1, rewrites_per_call=3)
    got = teacher.ask(asked)
    assert backend.calls == 3  # the short reply, its re-ask, and the copied item's re-ask
    assert all(r.ok for r in got) and [r.request for r in got] == asked
    assert got[0].output.instruction == f"new 0: {asked[0].instruction}"
    assert got[1].output.instruction == f"new: {asked[1].instruction}"
    assert teacher.cache.total_paid("t") == 3
    assert teacher.acct.kinds[(0, "")]["rewrite"]["reasks"] == 1
    # With the re-asks spent, an item copied again fails alone, for its own reason.
    stubborn = ScriptedRewriter(lambda req: _reply(req, same=1 if isinstance(req, Rewrites) else 0))
    got = Teacher(stubborn, CallCache(tmp_path / "s.sqlite"), "t", parse_retries=1, rewrites_per_call=3).ask(asked)
    assert stubborn.calls == 2 and [r.ok for r in got] == [True, False, True]
    assert got[1].rejected and "repeats the original" in got[1].error and got[1].request is asked[1]
    # A call limit reached before the re-ask leaves the item its first failure.
    capped = ScriptedRewriter(lambda req: _reply(req, same=1 if isinstance(req, Rewrites) else None))
    got = Teacher(capped, CallCache(tmp_path / "l.sqlite"), "t", parse_retries=1, rewrites_per_call=3).ask(asked, limit=1)
    assert capped.calls == 1 and [r.ok for r in got] == [True, False, True] and "repeats the original" in got[1].error


def test_packed_rewrites_over_http_render_parse_and_match_the_oracle(tmp_path: Path) -> None:
    from lionloop.testing.fault_server import ScriptedServer
    from lionloop.testing.skills_teacher import SkillsChat

    OpenAIBackend = REGISTRY.get("backend", "openai", "teacher.backend")
    asked = [*_rewrites(5), *_rewrites(2, "simpler", first=10)]
    chat = SkillsChat()
    with ScriptedServer(responder=chat, keep_bodies=50) as srv:
        cfg = TeacherConfig(backend="openai", model="skills-chat", base_urls=[srv.base_url], timeout_s=5.0,
                            max_retries=1)
        teacher = Teacher(OpenAIBackend(cfg), CallCache(tmp_path / "llm.sqlite"), "llm", rewrites_per_call=3)
        got = teacher.ask(asked)
        bodies = list(srv.stats.bodies)
    want = _oracle(tmp_path, 1).ask(asked)
    assert [r.output for r in got] == [r.output for r in want] and all(r.ok for r in got)
    # 5 hard: 3 + 2; 2 simpler: one call. Each packed call's schema holds exactly its items.
    assert chat.kinds == {"rewrites": 3}
    sizes = sorted(b["response_format"]["json_schema"]["schema"]["properties"]["outputs"]["minItems"] for b in bodies)
    assert sizes == [2, 2, 3]


@pytest.fixture(scope="module")
def packed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro run (conftest) with its rewrites packed four to a call."""
    from lionloop.loop.runner import start

    run, final = start(micro_config(tmp_path_factory.mktemp("runs") / "packed", teacher={"rewrites_per_call": 4}))
    assert final.get("stop_reason"), final
    return run


def test_a_run_packing_its_rewrites_grows_the_same_pool_for_fewer_generate_calls(micro_run: Path, packed_run: Path) -> None:
    packed = packed_run
    texts = "SELECT text, split, origin FROM instructions ORDER BY text"
    assert pool_rows(packed, texts) == pool_rows(micro_run, texts)
    generate = "SELECT COUNT(*) FROM candidates WHERE status = 'accepted'"
    assert pool_rows(packed, generate) == pool_rows(micro_run, generate)

    def generate_calls(run: Path) -> int:
        return pool_rows(run, "SELECT COUNT(*) FROM llm_cache WHERE stage = 'generate'")[0][0]

    one, four = generate_calls(micro_run), generate_calls(packed)
    assert 0 < four <= one // 3 + 2, (one, four)


def test_a_real_model_on_the_hf_backend_keeps_to_a_packed_calls_item_count(real_model: Path, tmp_path: Path) -> None:
    """SmolLM2-135M under the hf backend's schema-constrained decoding: a packed call of three
    rewrites comes back as exactly three outputs, read at the first attempt (each may still fail its
    own check: a 135M model often copies the given instruction); the copied ones are asked again in
    one more call, and what fails then fails for its own reason."""
    from lionloop.plugins.backend_hf import HFBackend

    asked = _rewrites(6)[::2]  # three different instructions
    cfg = TeacherConfig(backend="hf", model=str(real_model), max_tokens=256)
    backend = HFBackend(cfg, SimpleNamespace(section="teacher"))
    first = Teacher(backend, CallCache(tmp_path / "one.sqlite"), "hf", parse_retries=0, rewrites_per_call=3).ask(asked)
    assert [r.request for r in first] == asked
    assert all(r.ok or r.rejected for r in first), [r.error for r in first]
    teacher = Teacher(backend, CallCache(tmp_path / "hf.sqlite"), "hf", parse_retries=1, rewrites_per_call=3)
    got = teacher.ask(asked)
    copied = sum(r.rejected for r in first)
    # One call held three outputs (no re-ask of the packed reply); the copied items, one more call.
    assert teacher.cache.total_paid("hf") == 1 + (copied > 0)
    assert all(r.ok or r.rejected for r in got), [r.error for r in got]


def test_bench_tokens_prices_a_packed_run_s_rewrites_below_single_ones(micro_run: Path, packed_run: Path,
                                                                      real_model: Path, tmp_path: Path) -> None:
    """`lionloop bench tokens`: every paid call of an offline run rendered and counted; a packed
    call's prompt is longer than one rewrite's, its rewrites together shorter than single ones."""
    from lionloop.bench.tokens import run_tokens
    from lionloop.teacher.tokens import TokenCounter

    tok = TokenCounter(real_model)
    one, four = run_tokens(micro_run, tok), run_tokens(packed_run, tok)
    paid = pool_rows(micro_run, "SELECT stage, COUNT(*) FROM llm_cache WHERE repaid = 0 GROUP BY stage")
    assert {s: one[s]["calls"] for s, _ in paid} == dict(paid) and one["total"]["calls"] == sum(n for _, n in paid)
    assert all(one[s]["prompt_tokens"] > 10 * one[s]["calls"] for s, _ in paid)  # rendered, not the payload
    g1, g4 = one["generate"], four["generate"]
    assert g4["prompt_tokens"] / g4["calls"] > 1.3 * g1["prompt_tokens"] / g1["calls"]
    assert g4["prompt_tokens"] < 0.75 * g1["prompt_tokens"]
    assert four["curate"] == one["curate"]  # the same pool: the same answers asked, the same prompts
    (tmp_path / "loop%60-0").symlink_to(micro_run)  # a bench arm's folder name is a path, not a URI escape
    assert run_tokens(tmp_path / "loop%60-0", tok) == one
