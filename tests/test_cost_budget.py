"""A teacher budget in money (`stop.max_teacher_cost`): token counts x prices, paced and enforced.

The teacher is the `openai` backend over HTTP against a scripted OpenAI-compatible server on
loopback (`ScriptedServer`, whose "model" is a correct skills teacher reading lionloop's own
prompts): a paid API cannot run here, and the server reports token counts as one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import BackendDouble, micro_config

from lionloop.errors import ConfigError
from lionloop.loop.runtime import PRICING_CALLS, cost_calls_left

PRICE_IN, PRICE_OUT = 0.5, 1.5  # per 1k tokens


def test_calls_left_at_the_mean_price_so_far() -> None:
    assert cost_calls_left(1.0, 0, 0.0) == PRICING_CALLS == 1  # no price yet: the first call prices the rest
    assert cost_calls_left(1.0, 10, 0.25) == 30  # 0.75 left at 0.025 a call
    assert cost_calls_left(1.0, 10, 1.1) < 0  # overspent: none (the caller floors at 0)
    with pytest.raises(ConfigError, match="no price"):  # a server that reports no token counts
        cost_calls_left(1.0, PRICING_CALLS, 0.0)


def test_the_status_line_shows_what_the_teacher_cost() -> None:
    from lionloop.cli.status import teacher_lines

    oracle = {"paid": 4654, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
    assert teacher_lines({"teacher_calls": oracle, "budget": {"calls": 5000, "cost": None}}) == [
        "teacher: 4,654 of 5,000 paid calls"]  # no token counts, no price: neither is shown
    llm = {"paid": 12, "prompt_tokens": 3000, "completion_tokens": 400, "cost": 0.69}
    assert teacher_lines({"teacher_calls": llm, "budget": {"calls": None, "cost": 1.0}}) == [
        "teacher: 12 paid calls, 3,000 + 400 tokens, cost 0.69 of 1.00"]
    assert teacher_lines({"teacher_calls": {"paid": 0}, "budget": None}) == []


def _teacher(base_url: str) -> dict[str, Any]:
    return {"backend": "openai", "model": "skills-chat", "base_urls": [base_url], "concurrency": 8,
            "cost_per_1k_input": PRICE_IN, "cost_per_1k_output": PRICE_OUT}


@pytest.mark.slow
def test_a_cost_budget_is_paced_over_the_rounds_and_stops_the_run(tmp_path: Path) -> None:
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start
    from lionloop.testing.fault_server import ScriptedServer
    from lionloop.testing.skills_teacher import SkillsChat

    budget = 30.0  # about a third of what three rounds cost here without one
    with ScriptedServer(responder=SkillsChat()) as srv:
        out, final = start(micro_config(tmp_path / "run", teacher=_teacher(srv.base_url),
                                        generate={"max_new_per_round": 200},
                                        stop={"max_rounds": 3, "stop_when_no_hard": False,
                                              "max_teacher_cost": budget}))
    st = run_status(out)
    spent = st["teacher_calls"]
    mean = spent["cost"] / spent["paid"]
    # Spent to within a call or two of it, never over by more; nothing left for another call.
    assert budget - 2 * mean <= spent["cost"] <= budget + 2 * mean, (spent, budget)
    assert final["budget_left"] == 0 and final["stop_reason"] == "max_rounds"
    # Paced in cost: each generating round's part and a candidate's price are money, and every
    # generating round bought data (the first did not spend it all).
    # `lionloop status` shows what was spent against the budget.
    from lionloop.cli.status import teacher_lines

    assert st["budget"] == {"calls": None, "cost": budget}
    (line,) = teacher_lines(st)
    assert f"{spent['paid']:,} paid calls" in line and line.endswith(f"cost {spent['cost']:,.2f} of 30.00")
    r1, r2 = st["rounds"][:2]
    assert r1["pacing"]["unit"] == "cost" and r1["pacing"]["left"] < budget
    assert r2["pacing"]["left"] < r1["pacing"]["left"] and r1["accepted"] > 0 and r2["accepted"] > 0


def test_an_offline_run_priced_by_a_tokenizer_keeps_to_a_cost_budget_of_mixed_prices(real_model: Path,
                                                                                   tmp_path: Path) -> None:
    """The oracle with `options.tokenizer` reports each call's tokens as an LLM backend would be
    billed, so a cost budget works offline: paced, enforced, and spent to within a few calls."""
    from lionloop.inspect.status import run_figures, run_status
    from lionloop.loop.runner import start

    budget = 0.002  # at $0.15 / $0.60 per million tokens: about a third of what 3 rounds cost without one
    out, final = start(micro_config(tmp_path / "run", teacher={
        "options": {"tokenizer": str(real_model)}, "cost_per_1k_input": 0.00015, "cost_per_1k_output": 0.0006},
        generate={"max_new_per_round": 200}, stop={"max_rounds": 3, "stop_when_no_hard": False,
                                                   "max_teacher_cost": budget}))
    spent = run_status(out)["teacher_calls"]
    assert spent["prompt_tokens"] > 50 * spent["paid"] and spent["completion_tokens"] > 0
    priciest = max(v["cost"] / v["calls"] for v in run_figures(out)["teacher_by_stage"].values() if v["calls"])
    assert budget - 3 * priciest <= spent["cost"] <= budget + priciest, (spent, priciest)
    assert final["budget_left"] == 0


class PricedDouble(BackendDouble):
    """A backend double whose calls differ in price by kind (what a real server reports as token
    counts: a judge prompt ~10x an answer's). Here only the prices matter, not the replies."""

    cost_per_1k = (1.0, 0.0)  # 1.0 per 1k prompt tokens: an answer costs 0.01, a judge 0.1

    def complete(self, requests: Any, attempt: int) -> Any:
        from lionloop.teacher.client import Reply

        for i, req in enumerate(requests):
            if req.kind == "judge":
                yield i, Reply(text='{"explanation": "x", "score_1": 9, "score_2": 3}',
                               usage={"prompt_tokens": 100, "completion_tokens": 0})
            else:
                yield i, Reply(text="ok", usage={"prompt_tokens": 10, "completion_tokens": 0})


def test_chunks_of_calls_are_priced_by_their_kind_not_at_the_mean(tmp_path: Path) -> None:
    """After 40 cheap answers the run's mean price is an answer's; a batch of judge calls sized at
    that mean would spend ten times what is left. Priced by kind, the budget holds to the cent."""
    from lionloop.stores.cache import CallCache
    from lionloop.teacher.client import BUDGET_ERROR, Teacher
    from lionloop.teacher.requests import Answer, Judge

    limit = 1.0
    cache = CallCache(tmp_path / "c.sqlite")

    def calls_left() -> int:  # as the runtime computes it: what is left at the mean price so far
        paid, cost = cache.total_paid("r"), cache.total_cost("r")
        return max(0, cost_calls_left(limit, paid, cost))

    teacher = Teacher(PricedDouble(), cache, "r", budget=calls_left,
                      money_left=lambda: limit - cache.total_cost("r")).at(1, "generate")
    answers = teacher.ask([Answer(instruction=f"q{i}") for i in range(40)])  # 0.40
    assert all(r.ok for r in answers) and cache.total_cost("r") == pytest.approx(0.40)
    judged = teacher.ask([Judge(instruction=f"q{i}", answer_1="a", answer_2="b") for i in range(20)])
    assert sum(r.ok for r in judged) == 6 and cache.total_cost("r") == pytest.approx(1.0)  # 0.60 left: 6 judges
    assert {r.error for r in judged if not r.ok} == {BUDGET_ERROR}


def test_a_round_s_generators_spend_at_most_its_part_of_the_money(tmp_path: Path) -> None:
    """Under a cost budget each generator's calls are capped in money too (its quota's part of the
    round's): before any round has been measured, a candidate's price is a guess from the
    bootstrap's cheap answers, and the first round spent the whole budget on rewrites."""
    from lionloop.loop.generation import BudgetedTeacher, round_money
    from lionloop.stores.cache import CallCache
    from lionloop.teacher.client import BUDGET_ERROR, Teacher
    from lionloop.teacher.requests import Answer

    assert round_money({"lion": (30, 60), "disco": (10, 20)}, {"unit": "cost", "round_budget": 0.4}) == {
        "lion": pytest.approx(0.3), "disco": pytest.approx(0.1)}
    assert round_money({"lion": (30, 60)}, {"unit": "calls", "round_budget": 400}) is None
    assert round_money(None, None) is None
    cache = CallCache(tmp_path / "c.sqlite")
    teacher = Teacher(PricedDouble(), cache, "r").at(1, "generate")
    capped = BudgetedTeacher(teacher, limit=1000, plugin="lion", money=0.35)
    got = capped.ask([Answer(instruction=f"q{i}") for i in range(40)])
    assert sum(r.ok for r in got) == 35 and {r.error for r in got if not r.ok} == {BUDGET_ERROR}
    assert cache.total_cost("r") == pytest.approx(0.35) and capped.money == pytest.approx(0.0)
    assert capped.left == 1000 - 35


@pytest.mark.parametrize("cap", ["calls", "money"])
def test_a_resumed_stage_s_generators_buy_what_the_first_attempt_did(tmp_path: Path, cap: str) -> None:
    """A stage's replies paid before a crash are served as `resumed` after it, and count against
    the generator's calls and money as they did the first time: the resumed process does not buy
    more with the same cap (before, a resumed money cap bought 20 answers where the first bought 10)."""
    from lionloop.loop.generation import BudgetedTeacher
    from lionloop.stores.cache import CallCache
    from lionloop.teacher.client import BUDGET_ERROR, Teacher
    from lionloop.teacher.requests import Answer

    cache = CallCache(tmp_path / "c.sqlite")
    limits = {"limit": 10} if cap == "calls" else {"limit": 1000, "money": 0.10}  # 10 answers at 0.01
    first = BudgetedTeacher(Teacher(PricedDouble(), cache, "r").at(1, "generate"), plugin="lion", **limits)
    asked = [Answer(instruction=f"q{i}") for i in range(30)]
    half = first.ask(asked[:15])  # killed after this batch: its 10 paid replies are in the cache
    assert sum(r.ok for r in half) == 10
    again = BudgetedTeacher(Teacher(PricedDouble(), cache, "r").at(1, "generate"), plugin="lion", **limits)
    got = again.ask(asked[:15]) + again.ask(asked[15:])  # the resumed process asks the same
    assert [r.ok for r in got[:15]] == [r.ok for r in half] and not any(r.ok for r in got[15:])
    assert {r.error for r in got if not r.ok} == {BUDGET_ERROR}
    assert cache.total_paid("r") == 10 and again.stats(1)[(1, "generate")]["resumed"] == 10
    # A resumed reply asked again in the same process is a hit, as it was for the process that paid it.
    assert again.ask(asked[:1])[0].ok and again.stats(1)[(1, "generate")]["hits"] == 1
