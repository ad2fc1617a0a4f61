"""The generator ablation benchmark: equal budgets per arm, its table, and (slow) a tiny resumable run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lionloop.bench import ablation as ab


@pytest.mark.parametrize("arm", ab.ARMS)
def test_every_arm_spends_the_same_new_data_budget(arm: str, tmp_path: Path) -> None:
    gens = ab.generators(arm, 120)
    names = set(gens)
    assert "lion" in names
    assert names == ({"lion", *ab.PLUGINS} if arm == "all" else {"lion", arm[1:].split("-")[0]} if arm != "lion"
                     else {"lion"})
    # lion's answers are paid by curate, the plugins' inside their budget: count lion twice.
    spent = sum(g["options"]["max_calls"] * (2 if n == "lion" else 1) for n, g in gens.items())
    assert 120 - len(names) * 2 < spent <= 120
    cfg = ab.arm_config(arm, 1, 3, tmp_path / "run", 120)
    assert set(cfg.generate.generators) == names and cfg.seed == 1 and cfg.stop.max_rounds == 3
    assert {"chain", "sum", "mood"} <= set(__import__("lionloop.plugins.skills", fromlist=["x"]).SkillsPack(
        cfg.task, 0).skills())
    if arm.startswith("+socratic"):
        assert cfg.generate.generators["socratic"].options["solve_prefix"] == "[s] "
        assert cfg.generate.generators["socratic"].options.get("mode") == ("separate" if arm.endswith("separate") else None)


def _fake(acc: float, methods: dict[str, float] | None = None) -> list[dict]:
    last = {"round": 2, "acc": acc, "per_skill": {"mood": acc, "sum": acc / 2}, "methods": methods or {},
            "rows": 100, "accepted": 0, "by_generator": {}, "new_data_calls": 0, "teacher_calls": 10,
            "seconds": 60.0, "total_calls": 300}
    return [{**last, "round": 1, "accepted": 40, "new_data_calls": 118}, last]


def test_summary_and_table() -> None:
    results = {"lion": {0: _fake(0.2), 1: _fake(0.4)}, "+socratic": {0: _fake(0.5, {"socratic": 0.1}), 1: _fake(0.5, {"socratic": 0.3})}}
    s = ab.summarise(results)
    assert s["skills"] == ["mood", "sum"] and s["arms"]["lion"]["acc"] == [0.2, 0.4]
    assert s["arms"]["+socratic"]["new_data_calls"] == [118, 118]
    text = ab.report(s, "lionloop bench ablation")
    assert text.startswith("## 7. Generator ablation")
    row = next(line for line in text.splitlines() if line.startswith("| +socratic"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "**50.0 ± 0.0**" and cells[2] == "+20.0" and cells[5] == "socratic 20.0 ± 14.1"
    assert "(4 min for 4 runs, 1.0 min per run)" in text and "No arm is above lion" not in text
    assert "Arms above lion alone on mean accuracy: +socratic." in text and "| +socratic | 50 | 25 |" in text


@pytest.mark.slow
def test_a_tiny_ablation_runs_and_resumes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tiny = {
        "task": {"seeds_per_skill": 4, "cache_per_skill": 4, "eval_per_skill": 4,
                 "skills": ["reverse", "sum", "mood"], "options": {}},
        "student": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_length": 80, "max_new_tokens": 8},
        "train": {"steps_per_round": 10, "batch_size": 16, "warmup_steps": 1},
    }
    arms = ("lion", "+disco")
    with caplog.at_level("WARNING", logger="lionloop.bench.arms"):
        summary, text = ab.main(seeds=1, rounds=2, budget=24, out_dir=tmp_path, arms=arms, write=False,
                                overrides=tiny)
    # progress a person reading the log file of an hour-long benchmark can follow: run k of N, round, stage
    said = [r.getMessage() for r in caplog.records]
    assert "ablation: +disco seed 0 (run 2 of 2): round 1 generate" in said
    assert any(m.startswith("ablation: lion seed 0 (run 1 of 2): round 2 held-out accuracy ") for m in said)
    assert set(summary["arms"]) == set(arms) and "| +disco |" in text
    saved = json.loads((tmp_path / "ablation.json").read_text())["results"]
    first = saved["+disco"]["0"][0]
    assert first["by_generator"].get("disco", 0) > 0 and 0 < first["new_data_calls"] <= 24
    from lionloop.bench.common import environment, source_commit

    assert saved["lion"]["0"][-1]["commit"] == source_commit() and summary["commits"] == [source_commit()]
    assert saved["lion"]["0"][-1]["env"] == environment() and summary["envs"] == [environment()]
    before = (tmp_path / "ablation.json").stat().st_mtime
    ab.main(seeds=1, rounds=2, budget=24, out_dir=tmp_path, arms=arms, write=False, overrides=tiny)
    assert (tmp_path / "ablation.json").stat().st_mtime == before  # nothing re-run
