from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lionloop.config import ConfigError, dump_config, load_config, parse_config


def test_defaults_validate_and_round_trip(tmp_path: Path) -> None:
    cfg = parse_config({})
    assert cfg.judge.tau == 1.0 and cfg.judge.both_orders
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"judge": {"tau": -1}}, "judge.tau"),
        ({"train": {"steps_per_round": "many"}}, "train.steps_per_round"),
        ({"stop": {"max_rounds": 0}}, "stop.max_rounds"),
        ({"generate": {"generators": {"lion": {"share": 2}}}}, "generate.generators.lion.share"),
        ({"teacher": {"bakend": "oracle"}}, "teacher.bakend"),
        ({"name": "a/b"}, "name"),
        ({"referee": {"backend": "oracle", "cache_path": "x.sqlite"}}, "referee.cache_path"),
    ],
)
def test_bad_field_names_its_path(data: dict, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "cfg.yaml")
    msg = str(err.value)
    assert msg.startswith(f"cfg.yaml: {path}:"), msg
    assert "\n" not in msg


def test_bad_yaml_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("stop:\n  max_rounds: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+"):
        load_config(p)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_config({"seed": "x"})


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("judge:\n  tau: nope\n")
    proc = subprocess.run(
        [sys.executable, "-m", "lionloop.cli", "run", str(p)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "judge.tau" in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_component_names_field(tmp_path: Path) -> None:
    from lionloop.loop.runtime import Runtime

    cfg = parse_config({"teacher": {"backend": "nope"}, "run_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"teacher.backend: unknown backend 'nope' \(known: .*oracle"):
        Runtime(cfg=cfg, run_dir=tmp_path, run_id="x")


def test_init_writes_a_commented_config_that_loads_to_the_defaults(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lionloop.cli.app import app

    path = tmp_path / "l.yaml"
    res = CliRunner().invoke(app, ["init", str(path)])
    assert res.exit_code == 0, res.output
    text = path.read_text()
    assert "# Lion's threshold" in text and "tau: 1.0" in text
    assert load_config(path) == parse_config({})
    again = CliRunner().invoke(app, ["init", str(path)])
    assert again.exit_code == 1 and "exists" in again.output
