"""The allocation of a round's candidates by learning progress, and budget pacing: arithmetic on
hand-made figures, then a micro loop with a teacher budget end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import micro_config, pool_rows

from lionloop.config import AllocationConfig
from lionloop.loop.allocation import prior_scores, progress, shares_from, split_quota
from lionloop.loop.state import stop_reason


def test_slope_is_accuracy_moved_per_example_paid_for() -> None:
    accs = [{"a": (0.2, 30), "b": (0.0, 30), "c": (0.9, 30)},
            {"a": (0.5, 30), "b": (0.0, 30), "c": (0.8, 30)}]
    spends = [{"a": 60, "b": 60, "c": 0}]
    lp = progress(accs, spends, window=2, estimate="slope")
    # a: +0.3 over 60 examples + a pseudo-count of the mean spend (40) + 1; b: nothing moved;
    # c: forgotten (-0.1) counts by its size, over its 0 examples + 40 + 1.
    assert lp["a"] == pytest.approx(0.3 / 101)
    assert lp["b"] == 0
    assert lp["c"] == pytest.approx(0.1 / 41)
    assert progress(accs[:1], [], window=2) == {}  # one measurement: no progress yet


def test_logistic_progress_is_rate_times_room() -> None:
    from lionloop.loop.allocation import logit, smoothed

    accs = [{"fast": (0.2, 30), "slow": (0.3, 30), "stuck": (0.0, 30), "done": (0.9, 30)},
            {"fast": (0.6, 30), "slow": (0.35, 30), "stuck": (0.0, 30), "done": (1.0, 30)}]
    spends = [dict.fromkeys(["fast", "slow", "stuck", "done"], 40)]
    lp = progress(accs, spends, window=2)
    assert lp["fast"] > lp["slow"] > lp["stuck"]
    assert lp["done"] < lp["slow"]  # mastered: little left to gain however fast it learnt
    # The rate is the logit change per example shrunk towards the pooled rate (pseudo-count 41).
    moved = {g: logit(smoothed(*accs[1][g])) - logit(smoothed(*accs[0][g])) for g in accs[0]}
    pooled = sum(moved.values()) / 160
    p = smoothed(0.6, 30)
    assert lp["fast"] == pytest.approx((moved["fast"] + 41 * pooled) / 81 * p * (1 - p))


def test_ahead_takes_the_room_where_a_group_is_heading() -> None:
    from lionloop.loop.allocation import heading, smoothed

    # Two groups at the same accuracy and the same rate: one rising fast (it will have mastered
    # its task from the data it has), one steady. "ahead" gives the rising one less; "logistic"
    # cannot tell them apart.
    accs = [{"rising": (0.2, 30), "steady": (0.8, 30)}, {"rising": (0.8, 30), "steady": (0.8, 30)}]
    spends = [{"rising": 40, "steady": 40}]
    flat = progress(accs, spends, window=2)
    ahead = progress(accs, spends, window=2, estimate="ahead")
    assert flat["steady"] == pytest.approx(ahead["steady"])  # no change, nothing carried on
    assert ahead["rising"] < flat["rising"] / 3
    assert heading((0.2, 30), (0.8, 30)) > 0.95
    # One probe of 30 right where none was: mostly noise, carried on only a little.
    noisy = heading((0.0, 30), (1 / 30, 30))
    assert smoothed(1 / 30, 30) < noisy < 0.1
    # Forgetting is carried on too: a falling group is headed below where it is.
    assert heading((0.9, 30), (0.6, 30)) < smoothed(0.6, 30)
    assert heading(None, (0.6, 30)) == pytest.approx(smoothed(0.6, 30))


def test_progress_averages_the_last_window_of_round_pairs() -> None:
    accs = [{"a": (0.0, 10)}, {"a": (0.5, 10)}, {"a": (0.6, 10)}]
    spends = [{"a": 9}, {"a": 9}]
    assert progress(accs, spends, window=1, estimate="slope")["a"] == pytest.approx(0.1 / 19)
    assert progress(accs, spends, window=2, estimate="slope")["a"] == pytest.approx(0.6 / (18 + 19))


def test_a_group_the_round_did_not_measure_keeps_its_last_figure() -> None:
    """A sampled referee may judge none of a group's probes in a round: the group stays in the
    allocation at its last measured accuracy (no progress that round), not dropped from it."""
    from lionloop.loop.allocation import carried

    accs = carried([{"a": (0.2, 30), "b": (0.5, 30)}, {"a": (0.4, 30)}, {"b": (0.7, 30)}])
    assert accs[1] == {"a": (0.4, 30), "b": (0.5, 30)}
    assert accs[2] == {"a": (0.4, 30), "b": (0.7, 30)}
    lp = progress(accs[:2], [{"a": 10, "b": 10}], window=1, estimate="slope")
    assert lp["b"] == 0 and lp["a"] > 0


def test_shares_follow_scores_with_an_exploration_floor() -> None:
    s = shares_from({"a": 3.0, "b": 1.0, "c": 0.0}, exploration=0.3)
    assert sum(s.values()) == pytest.approx(1.0)
    assert s["a"] == pytest.approx(0.7 * 0.75 + 0.1)
    assert s["c"] == pytest.approx(0.1)  # a stalled group is still retried
    assert shares_from({"a": 0.0, "b": 0.0}, 0.1) == {"a": 0.5, "b": 0.5}


def test_priors() -> None:
    acc = {"mastered": (1.0, 30), "half": (0.5, 30), "none": (0.0, 30)}
    frontier = prior_scores(AllocationConfig(prior="frontier"), acc)
    assert frontier["half"] > 10 * frontier["mastered"] and frontier["mastered"] == pytest.approx(frontier["none"])
    errors = prior_scores(AllocationConfig(prior="errors"), acc)
    assert errors["none"] > errors["half"] > errors["mastered"] == 0
    assert set(prior_scores(AllocationConfig(prior="uniform"), acc).values()) == {1.0}


def test_split_quota_adds_up() -> None:
    q = split_quota(10, {"a": 0.55, "b": 0.3, "c": 0.15})
    assert sum(q.values()) == 10 and q["a"] >= q["b"] >= q["c"]
    assert split_quota(0, {"a": 1.0}) == {"a": 0}


def test_spent_budget_stops_only_after_training_on_what_it_bought() -> None:
    from lionloop.config import StopConfig

    cfg = StopConfig(max_rounds=9, max_teacher_calls=100)
    assert stop_reason({"round": 2, "teacher_calls": 100, "untrained": 40}, cfg) is None
    assert stop_reason({"round": 3, "teacher_calls": 100, "untrained": 0}, cfg) == "teacher_budget"


@pytest.mark.parametrize(("ratio", "parts"), [(1.0, 4.0), (0.5, 1.875), (2.0, 15.0)])
def test_pace_ratio_weights_the_rounds_still_to_generate(tmp_path: Path, ratio: float, parts: float) -> None:
    """generate.pace_ratio: round 1 of 5 (four rounds to generate) may spend 1 / (1 + q + q^2 + q^3)
    of what is left, in calls, and buys that many candidates at the plan's price; the verifier
    referee pays nothing, so nothing is set aside for it."""
    from types import SimpleNamespace

    from lionloop.loop.budget import paced_quotas

    cfg = micro_config(tmp_path / "run", generate={"pace_ratio": ratio},
                       judge={"mode": "verifier"}, stop={"max_rounds": 5, "max_teacher_calls": 1300})
    gen = SimpleNamespace(name="lion", quota=400, max_calls=800, calls_per_candidate=2.0)
    rt = SimpleNamespace(cfg=cfg, run_id="r", plan=[gen], budget_left=lambda: 1000,
                         cache=SimpleNamespace(paid=lambda run_id: {}),
                         pool=SimpleNamespace(stage_result=lambda r, stage: None))
    quotas, figures = paced_quotas(rt, 1)
    assert figures["round_parts"] == pytest.approx(parts, abs=1e-3)
    assert figures["round_budget"] == int(1000 // parts) and figures["referee_reserve"] == 0
    assert quotas == {"lion": (int(400 * min(1.0, figures["round_budget"] / 2.0 / 400)),
                               round(800 * min(1.0, figures["round_budget"] / 2.0 / 400)))}
    # The last round to generate spends all that is left, whatever the ratio.
    _, last = paced_quotas(rt, 4)
    assert last["round_parts"] == 1.0 and last["round_budget"] == 1000


def test_a_candidate_measured_below_one_call_buys_more_of_the_last_round(tmp_path: Path) -> None:
    """Candidates are priced at what earlier rounds paid for them, also below one call (rewrites
    packed four to a call, answers the student gave itself): the last round spends what is left."""
    from types import SimpleNamespace

    from lionloop.loop.budget import paced_quotas

    cfg = micro_config(tmp_path / "run", judge={"mode": "verifier"}, teacher={"rewrites_per_call": 4},
                       stop={"max_rounds": 3, "max_teacher_calls": 1000})
    gen = SimpleNamespace(name="lion", quota=4000, max_calls=8000, calls_per_candidate=2.0)
    paid = {(1, "generate"): {"calls": 100, "cost": 0.0}, (1, "curate"): {"calls": 200, "cost": 0.0}}
    rt = SimpleNamespace(cfg=cfg, run_id="r", plan=[gen], budget_left=lambda: 400,
                         cache=SimpleNamespace(paid=lambda run_id, *a: paid),
                         pool=SimpleNamespace(stage_result=lambda r, stage: {"candidates": 400} if r == 1 else None))
    _, first = paced_quotas(rt, 1)
    assert first["calls_per_candidate"] == 1.25  # the prior: a rewrite at 1/4 of a call, and its answer
    quotas, last = paced_quotas(rt, 2)
    assert last["calls_per_candidate"] == 0.75  # 300 calls bought 400 candidates in round 1
    assert last["round_budget"] == 400 and quotas["lion"][0] == int(400 / 0.75)
    # generate.pace_price: last — the round before's price, where the mean of all earlier rounds lags.
    paid.update({(2, "generate"): {"calls": 50, "cost": 0.0}, (2, "curate"): {"calls": 50, "cost": 0.0}})
    rt.pool = SimpleNamespace(stage_result=lambda r, stage: {"candidates": 400 if r == 1 else 200} if r < 3 else None)
    _, mean = paced_quotas(rt, 3)
    assert mean["calls_per_candidate"] == round(400 / 600, 3)
    rt.cfg = rt.cfg.model_copy(update={"generate": rt.cfg.generate.model_copy(update={"pace_price": "last"})})
    _, recent = paced_quotas(rt, 3)
    assert recent["calls_per_candidate"] == 0.5


@pytest.mark.slow
def test_budget_is_paced_never_overspent_and_its_last_data_trained_on(tmp_path: Path) -> None:
    """A micro loop with a teacher budget: it spends no more than the budget, spreads it over the
    rounds, trains the last round on what the last generating round bought, and records where each
    round's data went and why."""
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    budget = 300
    run_dir, final = start(micro_config(
        tmp_path / "run", generate={"max_new_per_round": 400, "allocation": {"train_mix": 0.5}},
        # Every case judged: a sampled referee (budget_share) may leave a 300-call run's cache unjudged.
        judge={"last_round": False, "budget_share": None},
        stop={"max_rounds": 3, "max_teacher_calls": budget, "stop_when_no_hard": False}))
    st = run_status(run_dir)
    assert st["teacher_calls"]["paid"] <= budget
    r1, r2, r3 = st["rounds"]
    assert final["stop_reason"] == "max_rounds"
    # Paced: both generating rounds bought data, not the first alone (max_new_per_round would allow it).
    assert r1["accepted"] > 0 and r2["accepted"] > 0
    assert r1["pacing"]["rounds_to_generate"] == 2 and r2["pacing"]["rounds_to_generate"] == 1
    assert r1["pacing"]["round_parts"] == 1.6 and r2["pacing"]["round_parts"] == 1.0  # pace_ratio 0.6
    # The last round trained on everything bought (rows = train instructions) and judged nothing.
    trained = pool_rows(run_dir, "SELECT COUNT(*) FROM instructions WHERE split = 'train'")[0][0]
    assert r3["train"]["rows"] == trained and r3["teacher_calls"] == 0
    # Where the data went: per task, accepted counts that add up, shares and cache accuracy behind them.
    for r in (r1, r2):
        assert sum(r["accepted_by_group"].values()) == r["accepted"]
        groups = r["allocation"]["groups"]
        assert set(groups) == {"add", "copy", "reverse"}
        assert sum(g["share"] for g in groups.values()) == pytest.approx(1.0, abs=1e-3)
        assert all(0 <= g["acc"] <= 1 for g in groups.values())
    assert all(g["progress"] is None for g in r1["allocation"]["groups"].values())  # nothing measured yet
    assert all(g["progress"] is not None for g in r2["allocation"]["groups"].values())
    # train_mix: from round 2 the training samples lean on the groups the last round's shares
    # favoured; every row still trained on (rows count distinct ones), repeats on top of them.
    assert "mix" not in r1["train"]
    for prev, r in ((r1, r2), (r2, r3)):
        mix = r["train"]["mix"]
        assert sum(g["rows"] for g in mix.values()) == r["train"]["rows"] <= r["train"]["mixed_rows"]
        assert sum(g["share"] for g in mix.values()) == pytest.approx(1.0, abs=1e-3)
        shares = {g: v["share"] for g, v in prev["allocation"]["groups"].items()}
        for g, m in mix.items():
            assert m["share"] == pytest.approx(0.5 * m["rows"] / r["train"]["rows"] + 0.5 * shares[g], abs=2e-3)


@pytest.mark.slow
def test_a_paying_referee_judges_a_share_of_the_budget_by_default(tmp_path: Path) -> None:
    """With a budget and the LLM referee (the oracle's judge, every call paid) the default config
    judges a sample of 10% of each round's part of the budget, so every generating round still buys
    data; judging every case (budget_share null) takes more."""
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    budget = 600
    runs = {}
    for share in (0.1, None):
        run_dir, _ = start(micro_config(
            tmp_path / str(share), judge={"last_round": False, "budget_share": share},
            stop={"max_rounds": 3, "max_teacher_calls": budget, "stop_when_no_hard": False}))
        runs[share] = run_status(run_dir)
    sampled, every = runs[0.1]["rounds"], runs[None]["rounds"]
    judge_calls = [r["teacher_by_stage"]["discriminate"]["calls"] for r in sampled[:2]]
    for r, calls in zip(sampled[:2], judge_calls, strict=True):
        cap = r["judge_sample"]
        left = r["pacing"]["left"] + calls  # what was left when the referee judged
        assert cap == max(1, int(0.1 * left / r["pacing"]["round_parts"] // 2))
        assert 0 < calls <= 2 * cap and r["accepted"] > 0
    assert all(r["judge_sample"] is None for r in every)
    assert every[0]["teacher_by_stage"]["discriminate"]["calls"] > judge_calls[0]


@pytest.mark.slow
def test_budget_spent_mid_loop_trains_once_more_then_stops(tmp_path: Path) -> None:
    """Without pacing, a budget that runs out in round 1 still has its data trained on in round 2,
    which is not judged, and the loop then stops on the budget."""
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    # 36 seed answers and 72 judge calls, then 15 rewrites: the budget runs out among the answers.
    budget = 36 + 72 + 15 + 8
    run_dir, final = start(micro_config(
        tmp_path / "run", generate={"pace": False, "max_new_per_round": 15}, judge={"budget_share": None},
        stop={"max_rounds": 5, "max_teacher_calls": budget, "stop_when_no_hard": False}))
    st = run_status(run_dir)
    assert final["stop_reason"] == "teacher_budget"
    assert st["teacher_calls"]["paid"] == budget  # spent to the last call, never past it
    assert len(st["rounds"]) == 2
    r1, r2 = st["rounds"]
    assert r1["accepted"] > 0 and r2["hard"] is None and r2["teacher_calls"] == 0
    trained = pool_rows(run_dir, "SELECT COUNT(*) FROM instructions WHERE split = 'train'")[0][0]
    assert r2["train"]["rows"] == trained


def test_referee_sample_caps_paid_judgements_and_keeps_free_ones() -> None:
    import random

    from lionloop.loop.referee import free_cases, sample_for_referee
    from lionloop.records import Instruction

    items = [Instruction(f"copy {c}", task="copy") for c in ("a", "b", "c", "d", "e", "f")]
    teacher = {i.id: i.text[5:] for i in items}
    student = {i.id: (i.text[5:] if k < 2 else "x") for k, i in enumerate(items)}  # 2 right, 4 wrong
    free = free_cases(items, teacher, student, True)
    assert free == {i.id for i in items[:2]} and not free_cases(items, teacher, student, False)
    picked = sample_for_referee(items, free, 3, random.Random(0))
    assert {i.id for i in items[:2]} <= {i.id for i in picked} and len(picked) == 5
    assert sample_for_referee(items, free, None, random.Random(0)) == items
    again = sample_for_referee(items, free, 3, random.Random(0))
    assert again == picked  # seeded
    assert sample_for_referee(items, free, 0, random.Random(0)) == items[:2]  # free ones only


def test_referee_sample_by_group_splits_the_cap_evenly_over_the_groups() -> None:
    """sample_by group: a group failing on everything (add) no longer fills the sample; each group
    gets an even part of the cap, a group with fewer cases than its part gives the rest away."""
    import random

    from lionloop.loop.referee import even_split, free_cases, sample_for_referee
    from lionloop.records import Instruction

    items = ([Instruction(f"add {k}", task="add") for k in range(40)]
             + [Instruction(f"copy {k}", task="copy") for k in range(6)]
             + [Instruction(f"sort {k}", task="sort") for k in range(2)])
    teacher = {i.id: "gold" for i in items}
    student = {i.id: "wrong" for i in items}
    groups = {i.id: i.task for i in items}
    free = free_cases(items, teacher, student, True)
    picked = sample_for_referee(items, free, 12, random.Random(1), groups)
    by_task = {t: sum(i.task == t for i in picked) for t in ("add", "copy", "sort")}
    assert by_task == {"add": 5, "copy": 5, "sort": 2}
    assert picked == sample_for_referee(items, free, 12, random.Random(1), groups)
    # Drawn over the cases, add (40 of 48) takes most of the same cap.
    flat = sample_for_referee(items, free, 12, random.Random(1))
    assert len(flat) == 12 and sum(i.task == "add" for i in flat) > 5
    # probes_first: a group's part comes from its cache probes first, then its train rows.
    probes = {i.id for i in items if i.text in ("add 0", "add 1", "copy 0")}
    picked = sample_for_referee(items, free, 12, random.Random(1), groups, probes)
    assert probes <= {i.id for i in picked} and sum(i.task == "add" for i in picked) == 5
    assert even_split(7, {"a": 10, "b": 10, "c": 1}, random.Random(0)) == {"a": 3, "b": 3, "c": 1}
    assert sorted(even_split(5, {"a": 10, "b": 10}, random.Random(0)).values()) == [2, 3]  # remainder drawn
    assert even_split(50, {"a": 3, "b": 4}, random.Random(0)) == {"a": 3, "b": 4}
    assert even_split(0, {"a": 3}, random.Random(0)) == {"a": 0}


def test_probes_first_auto_reads_how_right_answers_show() -> None:
    """probes_first: auto leads with the probes unless identical answers outnumber the right answers
    that differ from the teacher's (estimated from the last round's paid verdicts)."""
    from lionloop.loop.referee import probes_lead

    # Exact answers (§1c's runs): ~45 identical in round 1, every paid verdict hard.
    assert probes_lead("auto", 45, 1200, None) is False
    assert probes_lead("auto", 900, 500, {"judged_paid": 24, "easy_paid": 0}) is False
    # Free-form answers: nothing identical, from the first round; later the paid verdicts say so.
    assert probes_lead("auto", 0, 1300, None) is True
    assert probes_lead("auto", 3, 1300, {"judged_paid": 24, "easy_paid": 16}) is True
    # A judge that accepts a few different answers does not flip it where identical ones dominate.
    assert probes_lead("auto", 400, 900, {"judged_paid": 24, "easy_paid": 2}) is False
    assert probes_lead(True, 900, 10, None) is True and probes_lead(False, 0, 10, None) is False


@pytest.mark.slow
def test_probes_first_auto_leads_with_probes_when_every_verdict_is_paid(tmp_path: Path) -> None:
    """With skip_identical: false (every verdict paid, as with free-form answers) the default
    `auto` draws each group's part of a small sample from its cache probes; `false` draws over the
    train pool too."""
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    splits = {}
    for setting in ("auto", False):
        run_dir, _ = start(micro_config(
            tmp_path / str(setting), judge={"max_cases": 4, "skip_identical": False, "last_round": False,
                                            "probes_first": setting},
            stop={"max_rounds": 2, "max_teacher_calls": 300, "stop_when_no_hard": False}))
        lead = pool_rows(run_dir, "SELECT json_extract(result, '$.probes_first') FROM stages"
                                  " WHERE round = 1 AND stage = 'discriminate'")[0][0]
        assert lead == (setting == "auto")
        assert run_status(run_dir)["rounds"][0]["judge_probes_first"] is (setting == "auto")  # shown by `status`
        splits[setting] = [s for (s,) in pool_rows(
            run_dir, "SELECT i.split FROM verdicts v JOIN instructions i ON i.id = v.instruction_id"
                     " WHERE v.round = 1 AND v.teacher_score IS NOT NULL")]
    assert len(splits["auto"]) == 4 and set(splits["auto"]) == {"cache"}
    assert "train" in splits[False]


def test_cases_the_budget_ran_out_on_are_not_a_referee_outage() -> None:
    from lionloop.errors import RefereeError
    from lionloop.loop.quorum import require_decided
    from lionloop.records import Verdict
    from lionloop.teacher.client import BUDGET_ERROR

    decided = [Verdict(f"d{k}", 1, 8.0, 3.0, True) for k in range(2)]
    refused = [Verdict(f"b{k}", 1, None, None, None, raw=f"judge failed: {BUDGET_ERROR}") for k in range(8)]
    require_decided(decided + refused, 0.5, 1, Path("run"))  # 2 of the 2 the budget paid for
    failed = [Verdict(f"f{k}", 1, None, None, None, raw="judge failed: http 500: boom") for k in range(3)]
    with pytest.raises(RefereeError, match="decided 2 of 13"):
        require_decided(decided + refused + failed, 0.5, 1, Path("run"))  # 2 of 5 asked: an outage


def test_referee_sample_under_a_budget_is_a_share_of_the_round() -> None:
    """With a budget and a paying referee the sample is budget_share of the round's part of what is
    left, in cases (two calls each in both orders); max_cases, no budget, the verifier or a null
    share leave it as configured."""
    from lionloop.config import RefereeConfig
    from lionloop.loop.referee import referee_cap

    assert referee_cap(RefereeConfig(), 1910, 4) == 23  # 0.1 x 1910 / 4 = 47.75 calls
    assert referee_cap(RefereeConfig(both_orders=False), 1910, 4) == 47
    assert referee_cap(RefereeConfig(), 1910, 0) == 95  # the last round: all that is left is its part
    assert referee_cap(RefereeConfig(), 10, 4) == 1  # never a sample of none the budget can pay
    assert referee_cap(RefereeConfig(), 1, 1) == 0  # one call left: both orders cannot be paid
    assert referee_cap(RefereeConfig(both_orders=False), 1, 1) == 1
    assert referee_cap(RefereeConfig(max_cases=5), 1910, 4) == 5
    assert referee_cap(RefereeConfig(), None, 4) is None  # no budget: every case (Lion)
    assert referee_cap(RefereeConfig(budget_share=None), 1910, 4) is None
    assert referee_cap(RefereeConfig(mode="verifier"), 1910, 4) is None  # judging is free


def test_cache_accuracy_counts_unjudged_cases_at_the_judged_rate(tmp_path: Path) -> None:
    """Sampled judging leaves wrong-looking cases unjudged: they count at the easy rate of the judged
    different answers of their group, not as absent (which would flatter the group)."""
    from types import SimpleNamespace

    from lionloop.loop.allocation import cache_accuracy
    from lionloop.records import Instruction, Verdict
    from lionloop.stores.pool import Pool

    pool = Pool(tmp_path / "pool.sqlite")
    cache = [Instruction(f"copy {c}", task="copy", split="cache") for c in "abcdefgh"]
    pool.add_instructions(cache)
    pool.add_responses("teacher", "t", 0, {i.id: i.text[5:] for i in cache})
    # The student gets a, b right; the other six differ from the teacher.
    pool.add_responses("student", "s", 1, {i.id: (i.text[5:] if i.text[5:] in "ab" else "zz") for i in cache})
    # Judged: a, b easy (identical); c easy (a different answer the referee accepted), d hard; e-h unjudged.
    pool.add_verdicts([Verdict(cache[0].id, 1, None, None, False), Verdict(cache[1].id, 1, None, None, False),
                       Verdict(cache[2].id, 1, 9, 9, False), Verdict(cache[3].id, 1, 9, 1, True)])
    rt = SimpleNamespace(pool=pool)
    acc, n = cache_accuracy(rt, 1, {})["copy"]
    assert n == 8 and acc == pytest.approx((3 + 4 * 0.5) / 8)
    # judge.skip_identical: false — identical answers cost a judge call too, so a sample leaves some
    # unjudged: b (identical) counts at the judged identical answers' rate (a: easy), not as wrong.
    # Round 2: a judged easy, c easy, d hard; b and e-h unjudged.
    pool.add_responses("student", "s", 2, {i.id: (i.text[5:] if i.text[5:] in "ab" else "zz") for i in cache})
    pool.add_verdicts([Verdict(cache[0].id, 2, 9, 9, False), Verdict(cache[2].id, 2, 9, 9, False),
                       Verdict(cache[3].id, 2, 9, 1, True)])
    acc, n = cache_accuracy(rt, 2, {})["copy"]
    assert n == 8 and acc == pytest.approx((1 + 1 + 1 + 4 * 0.5) / 8)  # a, b; c; e-h at c-d's rate
    pool.close()


def test_a_group_no_sample_measured_yet_is_estimated_from_every_groups_verdicts(tmp_path: Path) -> None:
    """A paying referee's sample can miss every probe of a group in round 1. It is estimated from
    all groups' judged answers of each kind (here: different answers were all hard, so a group
    without one identical answer reads 0) and keeps a share, where before it dropped out of the
    round, exploration included."""
    from types import SimpleNamespace

    from lionloop.loop.allocation import allocate, probe_accuracy
    from lionloop.records import Instruction, Verdict
    from lionloop.stores.pool import Pool

    pool = Pool(tmp_path / "pool.sqlite")
    cache = [Instruction(f"{task} {c}", task=task, split="cache") for task in ("copy", "sort", "add") for c in "abcd"]
    pool.add_instructions(cache)
    pool.add_responses("teacher", "t", 0, {i.id: i.text for i in cache})
    right = ("copy a", "copy b", "sort a", "add a")
    pool.add_responses("student", "s", 1, {i.id: i.text if i.text in right else "zz" for i in cache})
    # The sample judged copy's and sort's probes (identical answers for free, two different ones
    # paid for, hard) and none of add's (its identical answer is the skip_identical: false case).
    pool.add_verdicts([Verdict(i.id, 1, None, None, False) for i in cache if i.text in right[:3]]
                      + [Verdict(i.id, 1, 9, 1, True) for i in cache if i.text in ("copy c", "sort b")])
    cfg = micro_config(tmp_path, stop={"max_teacher_calls": 300})
    rt = SimpleNamespace(pool=pool, cfg=cfg, memo={})
    measured, estimated = probe_accuracy(rt, 1, {})
    assert set(measured) == {"copy", "sort"}  # add has no figure of its own
    # add a (identical, unjudged) at the judged identical answers' rate, b-d at the different ones'.
    assert estimated == {"add": (0.25, 4)}
    alloc = allocate(rt, 1)
    assert alloc is not None and set(alloc.shares) == {"copy", "sort", "add"}
    assert alloc.figures["add"]["acc"] == 0.25 and alloc.figures["add"]["judged"] == 0
    assert alloc.figures["copy"]["acc"] == 0.5 and alloc.figures["sort"]["acc"] == 0.25
    assert alloc.shares["add"] == pytest.approx(alloc.shares["sort"])  # the same figure, the same prior
    assert sum(alloc.shares.values()) == pytest.approx(1.0)
    pool.close()


@pytest.mark.slow
def test_rows_without_task_labels_are_allocated_by_embedding_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """group_by: cluster (what `auto` picks when instructions carry no task): FAISS k-means over the
    stored vectors; each round's shares are per cluster and every candidate names the cluster that
    paid for it."""
    import faiss

    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    run_dir, _ = start(micro_config(tmp_path / "run", generate={"allocation": {"group_by": "cluster", "clusters": 3}}))
    st = run_status(run_dir)
    r1 = st["rounds"][0]
    groups = r1["allocation"]["groups"]
    assert r1["allocation"]["group_by"] == "cluster" and set(groups) <= {"c0", "c1", "c2"} and len(groups) >= 2
    assert sum(g["judged"] for g in groups.values()) == 18  # every cache probe in one cluster
    tagged = pool_rows(run_dir, "SELECT json_extract(meta, '$.group'), COUNT(*) FROM instructions"
                                " WHERE origin = 'lion' GROUP BY 1")
    assert dict(tagged) == r1["accepted_by_group"] and sum(dict(tagged).values()) == r1["accepted"]

    # Under a budget the paid referee's sample and the fill go by cluster too (the defaults
    # judge.sample_by and generate.fill: group): rows without labels, an LLM teacher as referee.
    fits = []
    kmeans = faiss.Kmeans

    class Counted(kmeans):
        def train(self, x, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
            fits.append(len(x))
            return super().train(x, *a, **kw)

    monkeypatch.setattr(faiss, "Kmeans", Counted)
    run_dir, _ = start(micro_config(tmp_path / "budget", generate={"allocation": {"group_by": "cluster", "clusters": 3}},
                                    judge={"max_cases": 4, "last_round": False},
                                    stop={"max_rounds": 3, "max_teacher_calls": 400, "stop_when_no_hard": False}))
    st = run_status(run_dir)
    assert [r["judge_sample"] for r in st["rounds"][:2]] == [4, 4]
    groups = {g for r in st["rounds"][:2] for g in r["allocation"]["groups"]}
    paid = pool_rows(run_dir, "SELECT instruction_id FROM verdicts WHERE round = 1 AND teacher_score IS NOT NULL")
    assert len(paid) == 4
    filled = dict(pool_rows(run_dir, "SELECT json_extract(meta, '$.group'), COUNT(*) FROM instructions"
                                     " WHERE json_extract(meta, '$.fill') = 'group' GROUP BY 1"))
    assert filled and set(filled) <= set(groups) <= {"c0", "c1", "c2"}
    # One fit per pool: discriminate, generate and the next round's training share it, and the
    # pool changes once a round (the curate stage).
    assert 1 <= len(fits) <= len(st["rounds"])


def _mix_runtime(tmp_path: Path, mix: float, shares: dict[str, float], sizes: dict[str, int]) -> tuple[Any, list[Any]]:
    """A pool with `sizes` train rows per task and round 1's allocation `shares`; the runtime parts
    `training_mix` reads."""
    import random
    from types import SimpleNamespace

    from lionloop.records import Example, Instruction
    from lionloop.stores.pool import Pool

    pool = Pool(tmp_path / "pool.sqlite")
    ins = [Instruction(f"{task} {k}", task=task, split="train") for task, n in sizes.items() for k in range(n)]
    pool.add_instructions(ins)
    pool.merge_metrics(1, {"allocation": {"group_by": "task", "groups": {g: {"share": s} for g, s in shares.items()}}})
    rows = [Example(i.id, i.text, "x") for i in ins]
    cfg = SimpleNamespace(generate=SimpleNamespace(allocation=AllocationConfig(train_mix=mix)))
    rt = SimpleNamespace(pool=pool, cfg=cfg, context=lambda r: SimpleNamespace(rng=lambda *p: random.Random(f"{r}{p}")))
    return rt, rows


def test_training_mix_repeats_the_rows_of_favoured_groups_and_drops_none(tmp_path: Path) -> None:
    """train_mix: half the training samples follow last round's shares, half the pool's proportions;
    rows are repeated, never dropped, and the same round mixes the same way again (resume)."""
    from collections import Counter

    from lionloop.loop.allocation import training_mix

    sizes = {"copy": 60, "add": 20, "sort": 20}
    rt, rows = _mix_runtime(tmp_path, 0.5, {"copy": 0.1, "add": 0.1, "sort": 0.8}, sizes)
    out, mix = training_mix(rt, 2, rows)
    assert set(out) == set(rows)  # none dropped
    assert mix == {"add": {"rows": 20, "share": 0.15}, "copy": {"rows": 60, "share": 0.35},
                   "sort": {"rows": 20, "share": 0.5}}
    task = {r.instruction_id: r.prompt.split()[0] for r in rows}
    got = Counter(task[r.instruction_id] for r in out)
    assert got["copy"] == 60  # the least favoured group: each row once
    assert got["sort"] / len(out) == pytest.approx(0.5, abs=0.03)
    assert got["add"] / len(out) == pytest.approx(0.15, abs=0.03)
    assert training_mix(rt, 2, rows)[0] == out
    # No mix in round 1 (no allocation yet), nor with train_mix 0.
    assert training_mix(rt, 1, rows) == (rows, None)
    rt.pool.close()
    (tmp_path / "zero").mkdir()
    rt0, rows0 = _mix_runtime(tmp_path / "zero", 0.0, {"copy": 0.1, "add": 0.1, "sort": 0.8}, sizes)
    assert training_mix(rt0, 2, rows0) == (rows0, None)
    rt0.pool.close()
    # train_mix 1 with shares only for groups no row belongs to: nothing to steer by, rows unchanged.
    (tmp_path / "elsewhere").mkdir()
    rt1, rows1 = _mix_runtime(tmp_path / "elsewhere", 1.0, {"mood": 1.0}, sizes)
    assert training_mix(rt1, 2, rows1) == (rows1, None)
    rt1.pool.close()


def test_warmup_rounds_expand_uniformly_while_the_referee_judges(tmp_path: Path) -> None:
    """generate.warmup_rounds: in a warm-up round every pool instruction is a case, in the uniform
    baseline's order, carrying the referee's verdict (judged, so progress is measured from round 1),
    and no allocation steers; after it the referee's hard/easy split and the allocation take over."""
    import random
    from types import SimpleNamespace

    from lionloop.config import GenerateConfig
    from lionloop.loop.allocation import allocate
    from lionloop.loop.selection import select_cases
    from lionloop.records import Instruction, Verdict
    from lionloop.stores.pool import Pool

    pool = Pool(tmp_path / "pool.sqlite")
    ins = [Instruction(f"copy {c}", task="copy", split=split) for c, split in zip("abcdef", ["train"] * 4 + ["cache"] * 2, strict=True)]
    pool.add_instructions(ins)
    pool.add_responses("teacher", "t", 0, {i.id: i.text[5:] for i in ins})
    for r in (1, 2):
        pool.add_responses("student", "s", r, {i.id: (i.text[5:] if k < 2 else "zz") for k, i in enumerate(ins)})
        pool.add_verdicts([Verdict(i.id, r, None, None, k >= 2) for k, i in enumerate(ins)])

    def runtime(case_selection: str, warmup: int) -> Any:
        cfg = SimpleNamespace(generate=GenerateConfig(case_selection=case_selection, warmup_rounds=warmup))
        return SimpleNamespace(pool=pool, cfg=cfg, context=lambda r: SimpleNamespace(rng=lambda *p: random.Random(f"{r}{p}")))

    warm, uniform = runtime("referee", 1), runtime("uniform", 0)
    cases = select_cases(warm, 1)
    assert not cases.easy and [c.instruction.id for c in cases.hard] == [c.instruction.id for c in select_cases(uniform, 1).hard]
    assert sorted(c.verdict.hard for c in cases.hard) == [False, False, True, True, True, True]  # the referee's
    assert allocate(warm, 1) is None and allocate(uniform, 1) is None
    steered = select_cases(warm, 2)  # past the warm-up: Lion's split
    assert len(steered.hard) == 4 and len(steered.easy) == 2
    assert len(select_cases(runtime("referee", 0), 1).easy) == 2  # no warm-up: steered from round 1
    pool.close()


@pytest.mark.slow
def test_a_small_referee_sample_still_spends_the_budget_by_filling_uniformly(tmp_path: Path) -> None:
    """judge.max_cases 2 finds a handful of hard cases a round: without a fill the paced rounds
    propose far fewer candidates than their budget allows and most of it is never spent; with
    `generate.fill: uniform` the rest of each generator's quota goes to pool
    instructions the referee did not judge, drawn uniformly and tagged as such, and the budget is
    spent to within a round's slack; with `group` (the default) each group's unused share first."""
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    budget = 300
    spent: dict[str, int] = {}
    for fill in ("uniform", "group", "none"):
        run_dir, _ = start(micro_config(
            tmp_path / fill, generate={"max_new_per_round": 400, "fill": fill}, judge={"max_cases": 2, "last_round": False},
            stop={"max_rounds": 3, "max_teacher_calls": budget, "stop_when_no_hard": False}))
        st = run_status(run_dir)
        spent[fill] = st["teacher_calls"]["paid"]
        tagged = dict(pool_rows(run_dir, "SELECT json_extract(meta, '$.fill'), COUNT(*) FROM instructions"
                                         " WHERE origin = 'lion' GROUP BY 1"))
        made = [pool_rows(run_dir, "SELECT json_extract(result, '$.filled.lion') FROM stages"
                                   " WHERE round = ? AND stage = 'generate'", r)[0][0] for r in (1, 2)]
        assert [r["filled"].get("lion") for r in st["rounds"][:2]] == made  # shown by `status`
        if fill == "uniform":
            assert all(m and m > 0 for m in made) and tagged.get("uniform", 0) > 0
            # What each group bought counts the fill too: the accepted candidates add up.
            st_rounds = st["rounds"][:2]
            assert all(sum(r["accepted_by_group"].values()) == r["accepted"] for r in st_rounds)
            # The fill expands what the referee did not judge that round: its verdicts stand.
            assert not pool_rows(run_dir, "SELECT i.id FROM instructions i JOIN verdicts v ON v.instruction_id ="
                                          " i.parent_id AND v.round = i.round_born AND v.hard IS NOT NULL WHERE json_extract(i.meta, '$.fill')"
                                          " IS NOT NULL")
        elif fill == "group":
            # The allocation steers the fill: each group's unused share is filled from its own
            # unjudged instructions (tagged group, with their parent's group), before any uniform fill.
            assert tagged.get("group", 0) > 0
            rows = pool_rows(run_dir, "SELECT json_extract(i.meta, '$.group'), p.task FROM instructions i JOIN"
                                      " instructions p ON p.id = i.parent_id WHERE json_extract(i.meta, '$.fill') = 'group'")
            assert rows and all(g == task for g, task in rows)
            assert not pool_rows(run_dir, "SELECT i.id FROM instructions i JOIN verdicts v ON v.instruction_id ="
                                          " i.parent_id AND v.round = i.round_born AND v.hard IS NOT NULL WHERE json_extract(i.meta, '$.fill')"
                                          " IS NOT NULL")
        else:
            assert made == [None, None] and "uniform" not in tagged
    assert spent["none"] < budget // 2 and budget - 10 <= spent["uniform"] <= budget
    assert budget - 10 <= spent["group"] <= budget


@pytest.mark.slow
def test_fixed_weights_give_the_named_tasks_the_round(tmp_path: Path) -> None:
    """allocation.mode fixed: every round's candidates go to the groups `weights` names, in its
    proportions (here all to reverse, the rest getting no exploration share); progress is still
    measured and shown beside the fixed shares."""
    from lionloop.inspect.status import run_status
    from lionloop.loop.runner import start

    run_dir, _ = start(micro_config(
        tmp_path / "run", judge={"mode": "verifier"},
        generate={"allocation": {"mode": "fixed", "weights": {"reverse": 1.0}, "exploration": 0.0}},
        stop={"max_rounds": 3, "stop_when_no_hard": False}))
    st = run_status(run_dir)
    bought = [r["accepted_by_group"] for r in st["rounds"][:2]]
    assert all(b and set(b) == {"reverse"} for b in bought), bought
    born = dict(pool_rows(run_dir, "SELECT task, COUNT(*) FROM instructions WHERE origin = 'lion' GROUP BY task"))
    assert set(born) == {"reverse"}, born
    alloc = [pool_rows(run_dir, "SELECT json_extract(metrics, '$.allocation.groups') FROM rounds WHERE round = ?", r)[0][0]
             for r in (1, 2)]
    import json

    groups = [json.loads(a) for a in alloc]
    assert all(g["reverse"]["share"] == 1.0 and g["copy"]["share"] == 0.0 for g in groups)
    assert groups[1]["reverse"]["progress"] is not None  # measured from round 2 on, though not used
