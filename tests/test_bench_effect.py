"""The effectiveness benchmark's arithmetic, arm configs and report (the runs themselves are
`lionloop bench effect`)."""

from pathlib import Path

import pytest

from lionloop.bench.effect import at, baseline, reach, summarise
from lionloop.bench.effect_arms import LEVERS, arm_config, known_arm, student_overrides
from lionloop.bench.effect_report import report


def test_reach_interpolates_between_rounds() -> None:
    curve = [(100, 0.2), (300, 0.5), (500, 0.7)]
    assert reach(curve, 0.6) == pytest.approx(400)
    assert reach(curve, 0.2) == 100
    assert reach(curve, 0.71) is None
    assert at(curve, 200) == pytest.approx(0.35)
    assert at(curve, 500) == pytest.approx(0.7)
    assert at(curve, 501) is None


def test_arms_share_budget_rounds_and_seed_and_differ_in_one_place(tmp_path: Path) -> None:
    cfgs = {a: arm_config(a, 1, 5, 2000, tmp_path / a) for a in ("loop", "uniform", "lion", "loop@40")}
    for c in cfgs.values():
        assert (c.stop.max_teacher_calls, c.stop.max_rounds, c.seed) == (2000, 5, 1)
        assert c.generate.pace and not c.judge.last_round
    assert cfgs["uniform"].generate.case_selection == "uniform"
    assert cfgs["lion"].generate.allocation.mode == "lion"
    assert cfgs["loop"].generate.allocation.mode == "progress"  # the default is what is measured
    assert cfgs["loop@40"].judge.max_cases == 40 and cfgs["loop"].judge.max_cases is None
    # A paying referee judges a sample of the budget in the loop, every case in the paper's loop.
    assert cfgs["loop"].judge.budget_share == 0.1 and cfgs["lion"].judge.budget_share is None
    assert {c.judge.mode for c in cfgs.values()} == {"verifier"}  # wrong = hard, no referee call
    assert arm_config("loop", 1, 5, 2000, tmp_path / "llm", referee="llm").judge.mode == "llm"
    ten = arm_config("loop", 0, 3, 900, tmp_path / "ten", skills=["copy", "chain", "sum", "mood"])
    assert ten.task.skills == ["copy", "chain", "sum", "mood"]
    assert known_arm("loop@25") and known_arm("loop-slope") and not known_arm("loop@x") and not known_arm("nope")


def test_a_percent_arm_is_the_same_arm_on_a_share_of_the_budget(tmp_path: Path) -> None:
    # budget-to-match: `loop%60` is the default loop paced over the same rounds on 60% of the calls
    full, part = arm_config("loop", 1, 5, 2000, tmp_path / "a"), arm_config("loop%60", 1, 5, 2000, tmp_path / "b")
    assert (part.stop.max_teacher_calls, part.generate.max_new_per_round) == (1200, 1200)
    assert part.model_dump(exclude={"name", "run_dir", "stop", "generate"}) == \
        full.model_dump(exclude={"name", "run_dir", "stop", "generate"})
    assert part.stop.max_rounds == full.stop.max_rounds == 5
    both = arm_config("loop@25%50", 1, 5, 2000, tmp_path / "c")
    assert (both.judge.max_cases, both.stop.max_teacher_calls) == (25, 1000)
    assert arm_config("uniform%60", 1, 5, 2000, tmp_path / "d").generate.case_selection == "uniform"
    assert known_arm("loop%60") and known_arm("loop@25%50") and known_arm("uniform%100")
    assert not any(known_arm(a) for a in ("loop%0", "loop%101", "loop%x", "loop%60@25", "nope%60"))


def test_every_lever_parses_and_changes_the_loop_it_is_measured_against(tmp_path: Path) -> None:
    # A misspelt option is refused by the config; one that sets a default would measure the default.
    def settings(arm: str) -> dict:
        return arm_config(arm, 1, 5, 2000, tmp_path / "run").model_dump(exclude={"name"})

    loop = settings("loop")
    inert = [lever for lever in LEVERS if settings(lever) == loop]
    assert not inert
    assert settings("loop-probes100")["task"]["cache_per_skill"] == 100


def test_an_arms_change_wins_over_a_pretrained_students_sizing(tmp_path: Path) -> None:
    """`--student`'s sizing (16 LoRA steps a round, 4 cache probes a skill) is the bench's; a lever
    measured on it changes exactly what it names."""
    over = student_overrides(tmp_path / "model")
    base, more = (arm_config(a, 1, 4, 400, tmp_path / a, overrides=over) for a in ("loop", "loop-steps48"))
    assert (base.train.steps_per_round, more.train.steps_per_round) == (16, 48)
    assert base.train.lora.enabled and more.train.lora.enabled and more.task.skills == base.task.skills
    assert arm_config("loop-probes10", 1, 4, 400, tmp_path / "p", overrides=over).task.cache_per_skill == 10
    assert arm_config("uniform-steps48", 1, 4, 400, tmp_path / "u", overrides=over).generate.case_selection == "uniform"


def test_the_seeds_arm_trains_on_the_seeds_alone(tmp_path: Path) -> None:
    # the baseline that says what expansion adds: the same rounds, no new instruction, no paid call
    # past the bootstrap's answers
    from conftest import MICRO, pool_rows

    from lionloop.bench.arms import run_arm

    over = {k: MICRO[k] for k in ("task", "student", "train")}
    figures, _ = run_arm(arm_config("seeds", 0, 2, 400, tmp_path / "seeds", overrides=over))
    assert known_arm("seeds")
    # A benchmark stopped after the run and before its figures were saved finds the run there
    # and reads it back (resumed: already finished), instead of refusing the folder.
    again, seconds = run_arm(arm_config("seeds", 0, 2, 400, tmp_path / "seeds", overrides=over))
    assert again == figures
    # ... and says how long the run took, not how long reading it back did
    assert seconds == pytest.approx(sum(sum(r["seconds"].values()) for r in figures["rounds"]), rel=1e-6)
    assert seconds > 0.5
    assert pool_rows(tmp_path / "seeds", "SELECT COUNT(*) FROM instructions WHERE origin != 'seed'") == [(0,)]
    assert [r["teacher_calls"] for r in figures["rounds"] if r["round"] > 0] == [0, 0]
    assert figures["calls"]["paid"] > 0 and len([r for r in figures["rounds"] if r["round"] > 0]) == 2
    # The verifier checks the cache probes without the teacher: the bootstrap pays for the seeds alone.
    boot = [r for r in figures["rounds"] if r["round"] == 0][0]
    assert boot["teacher_calls"] == pool_rows(tmp_path / "seeds", "SELECT COUNT(*) FROM instructions"
                                              " WHERE split = 'train'")[0][0]


def _runs(calls: list[int], accs: list[float], skill: float, groups: dict[str, int] | None = None) -> list[dict]:
    out = [{"round": i + 1, "calls": c, "examples": 100 * (i + 1), "acc": a, "per_skill": {"add": skill, "copy": a},
            "accepted_by_group": groups or {}, "share": {}, "progress": {}} for i, (c, a) in enumerate(zip(calls, accs, strict=True))]
    out[-1]["total_calls"] = calls[-1] + 10
    return out


def test_summary_pairs_seeds_and_finds_the_calls_to_match_uniform() -> None:
    results = {
        "uniform": {0: _runs([100, 300, 500], [0.2, 0.4, 0.6], 0.1), 1: _runs([100, 300, 500], [0.2, 0.5, 0.6], 0.1)},
        "loop": {0: _runs([100, 300, 500], [0.2, 0.6, 0.7], 0.0, {"copy": 30}),
                 1: _runs([100, 300, 500], [0.2, 0.5, 0.55], 0.0, {"copy": 10})},
    }
    s = summarise(results)
    loop = s["arms"]["loop"]
    assert loop["diff"] == {0: pytest.approx(0.1), 1: pytest.approx(-0.05)}
    assert loop["ahead_every_seed"] is False
    # Seed 0 reaches uniform's 0.6 at 300 calls (uniform spent 510): 59%; seed 1 never does.
    assert loop["reach"] == {0: pytest.approx(300), 1: None}
    assert loop["reach_share"][0] == pytest.approx(300 / 510)
    # Mean curves: loop (300, .55), (500, .625) reaches uniform's mean final .6 at 300 + 200 * .05 / .075.
    assert s["mean_reach"]["loop"] == pytest.approx(300 + 200 * 0.05 / 0.075)
    assert s["allocation"]["loop"]["total"] == {"copy": pytest.approx(3 * 20)}
    text = report(s, results, "lionloop bench effect", 120, None, "verifier", 510)
    # Two seeds (+10, -5): the 95% t-interval is 2.5 ± 12.706 × 10.607 / √2 (1 degree of freedom).
    assert loop["diff_ci"] == (pytest.approx(0.025 - 0.953, abs=1e-3), pytest.approx(0.025 + 0.953, abs=1e-3))
    assert "| `loop` | 510 | **62.5 ± 10.6** | +2.5 ± 10.6 | [-92.8, +97.8] | 1/2 |" in text
    assert "| 0 | 60.0 | 70.0 | loop > uniform |" in text
    assert "59%, —" in text
    assert "budget-to-match" not in text
    # A loop on part of the budget: its calls spent and its Δ to uniform's full-budget final.
    part = {**results, "loop%60": {0: _runs([100, 200, 300], [0.2, 0.5, 0.65], 0.0),
                                   1: _runs([100, 200, 300], [0.2, 0.5, 0.6], 0.0)}}
    text = report(summarise(part), part, "c", 1, None, "verifier", 510)
    assert "| `loop%60` | 310 | **62.5 ± 3.5** | +2.5 ± 3.5 | [-29.3, +34.3] | 1/2 |" in text
    assert "`ARM%P` is ARM given P% of the budget" in text
    tied = {**results, "lion": {0: _runs([100, 300, 500], [0.2, 0.5, 0.6], 0.0), 1: _runs([100, 300], [0.2, 0.5], 0.0)}}
    assert "| 0 | 60.0 | 70.0 | 60.0 | loop > uniform = lion |" in report(summarise(tied), tied, "c", 1, None, "verifier", 1)
    # A lever run on its own (no uniform arm): reported without paired figures, not a crash.
    alone = {"loop": results["loop"]}
    text = report(summarise(alone), alone, "lionloop bench effect --arm loop", 120, None, "verifier", 510)
    assert "| `loop` | 510 | **62.5 ± 10.6** |  |  | - | - | - |" in text
    # Levers changing both arms (loop-pack4 beside uniform-pack4): paired with the uniform lever.
    assert baseline(["loop-pack4", "uniform-pack4", "loop-pack4%60"]) == "uniform-pack4"
    assert baseline(["loop", "uniform", "uniform-steps48"]) == "uniform"
    assert baseline(["loop-steps48", "uniform-steps48", "uniform-even"]) == "uniform"  # which one: not guessed
    both = {"uniform-pack4": results["uniform"], "loop-pack4": results["loop"]}
    text = report(summarise(both, baseline(list(both))), both, "c", 1, None, "verifier", 510)
    assert "| `loop-pack4` | 510 | **62.5 ± 10.6** | +2.5 ± 10.6 |" in text and "Δ is the paired difference to `uniform-pack4`" in text


def test_running_one_arm_keeps_the_saved_runs_of_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from lionloop.bench import arms as arms_mod

    # The runs themselves are stand-ins (what they measure is not the point here): each returns
    # figures whose accuracy names its arm and seed.
    ran: list[tuple[str, int]] = []

    def fake_run(cfg, reporter=None):  # noqa: ANN001, ANN202
        arm, seed = cfg["arm"], cfg["seed"]
        ran.append((arm, seed))
        return {"acc": seed / 100}, 1.0

    monkeypatch.setattr(arms_mod, "run_arm", fake_run)
    monkeypatch.setattr(arms_mod, "source_commit", lambda: "abc1234")
    config = lambda arm, seed, run_dir: {"arm": arm, "seed": seed}  # noqa: E731
    per_round = lambda figures, seconds: [{"acc": figures["acc"]}]  # noqa: E731
    arms_mod.run_arms("effect", ["loop", "uniform"], [1, 2], tmp_path, config, per_round)
    out = arms_mod.run_arms("effect", ["lever"], [1], tmp_path, config, per_round)
    assert set(out["results"]) == {"lever"}  # the report sees the arms asked for
    saved = json.loads((tmp_path / "effect.json").read_text())["results"]
    assert set(saved) == {"loop", "uniform", "lever"}
    assert saved["uniform"]["2"][0]["acc"] == 0.02 and saved["lever"]["1"][0]["commit"] == "abc1234"
    # Asked again, nothing saved is run again.
    arms_mod.run_arms("effect", ["loop", "lever"], [1, 2], tmp_path, config, per_round)
    assert ran == [(a, s) for s in (1, 2) for a in ("loop", "uniform")] + [("lever", 1), ("lever", 2)]


@pytest.mark.parametrize("arm", ["loop", "loop-pack4%60", "uniform-pack4", "loop@40%60", "lion+"])
def test_a_run_folder_names_its_arm_back(tmp_path: Path, arm: str) -> None:
    """`bench tokens` groups run folders by the arm `bench effect` named them after."""
    from lionloop.bench.arms import arm_dir, arm_of

    assert arm_of(arm_dir(tmp_path, arm, 12)) == arm.strip("+")
    assert arm_of(tmp_path / "my-run") == "my-run"
