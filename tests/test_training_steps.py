"""Training steps that scale with the data (`train.epochs_per_round`): each imitate stage trains
that many passes over its rows, so a round with a larger pool trains longer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import micro_config
from typer.testing import CliRunner

from lionloop.cli.app import app
from lionloop.config import TrainConfig
from lionloop.inspect.status import run_status
from lionloop.loop.training import round_steps


def test_steps_are_fixed_unless_epochs_are_given() -> None:
    assert round_steps(TrainConfig(steps_per_round=300, batch_size=32), 1000) == 300
    by_epochs = TrainConfig(steps_per_round=300, batch_size=32, epochs_per_round=12)
    assert round_steps(by_epochs, 280) == 105  # ceil(12 x 280 / 32)
    assert round_steps(by_epochs, 1300) == 488
    assert round_steps(TrainConfig(batch_size=32, epochs_per_round=0.01), 10) == 1  # never 0 steps
    floored = TrainConfig(batch_size=32, epochs_per_round=12, min_steps_per_round=300)
    assert round_steps(floored, 280) == 300  # the floor lifts round 1's 105 steps
    assert round_steps(floored, 1300) == 488  # and leaves a larger pool's steps alone


@pytest.mark.slow
def test_a_larger_pool_trains_longer_with_epochs_per_round(tmp_path: Path) -> None:
    from lionloop.loop.runner import start

    cfg = micro_config(tmp_path / "run", train={"steps_per_round": 15, "batch_size": 16, "warmup_steps": 2,
                                                 "epochs_per_round": 2})
    out, final = start(cfg)
    assert final.get("stop_reason") == "max_rounds"
    trains = [r["train"] for r in run_status(out)["rounds"]]
    assert len(trains) == 2 and trains[1]["rows"] > trains[0]["rows"]  # round 1's new data joined the pool
    for t in trains:
        assert t["steps"] == math.ceil(2 * t["rows"] / 16)
    assert trains[1]["steps"] > trains[0]["steps"]
    # The distilled model's card says how it was trained: passes, not a step count it did not use.
    res = CliRunner().invoke(app, ["export-model", str(out), "--out", str(tmp_path / "model")])
    assert res.exit_code == 0, res.output
    card = (tmp_path / "model" / "README.md").read_text()
    assert "training: 2 epochs over the train pool per round" in card and "15 steps" not in card
