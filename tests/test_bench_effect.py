"""The effectiveness benchmark's arithmetic and arm configs (the runs themselves are `lionloop bench effect`)."""

from pathlib import Path

import pytest

from lionloop.bench.effect import arm_config, budget_to_reach, report, summarise


def test_budget_to_reach_interpolates_between_rounds():
    curve = [(100, 0.2), (300, 0.5), (500, 0.7)]
    assert budget_to_reach(curve, 0.6) == pytest.approx(400)
    assert budget_to_reach(curve, 0.2) == 100
    assert budget_to_reach(curve, 0.71) is None


def test_arms_differ_only_in_case_selection_and_generators(tmp_path: Path):
    cfgs = {a: arm_config(a, 1, 3, tmp_path / a, 200) for a in ("lion", "uniform", "seeds", "lion_cap")}
    assert {a: c.generate.max_accepted_per_round for a, c in cfgs.items()} == dict.fromkeys(cfgs, 200)
    assert cfgs["lion"].generate.case_selection != "uniform"
    assert cfgs["uniform"].generate.case_selection == "uniform"
    assert not cfgs["seeds"].generate.generators
    assert cfgs["lion_cap"].generate.generators["lion"].options["max_task_share"] == 0.25
    assert {c.seed for c in cfgs.values()} == {1}


def _runs(accs: list[float], skill: float) -> list[dict]:
    return [{"round": i + 1, "examples": 100 * (i + 1), "acc": a, "per_skill": {"add": skill, "copy": a},
             "teacher_calls": 0} for i, a in enumerate(accs)]


def test_summary_and_report_quote_mean_std_and_budget_to_uniform():
    results = {
        "lion": {0: _runs([0.2, 0.4, 0.5], 0.0), 1: _runs([0.2, 0.4, 0.7], 0.0)},
        "uniform": {0: _runs([0.2, 0.5, 0.6], 0.1), 1: _runs([0.2, 0.5, 0.6], 0.1)},
    }
    s = summarise(results)
    assert s["arms"]["lion"]["acc"][0] == pytest.approx(0.6)
    assert s["arms"]["lion"]["acc"][1] > 0
    assert s["arms"]["uniform"]["acc"] == pytest.approx((0.6, 0.0))
    # lion's mean curve: (100, .2), (200, .4), (300, .6) -> reaches 0.6 at 300
    assert s["budget_to_uniform_final"]["lion"] == pytest.approx(300)
    text = report(s, 60, "lionloop bench effect", None, {"lion": {"add": 30, "copy": 10}, "uniform": {"add": 5, "copy": 35}})
    assert "| lion | 300 | **60.0 ± 14.1** |" in text
    assert "75% of its generated instructions on `add`" in text
    assert "uniform 12%" in text
