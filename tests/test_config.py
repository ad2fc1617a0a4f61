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
        ({"judge": {"probes_first": "sometimes"}}, "judge.probes_first"),
        ({"referee": {"backend": "oracle", "cache_path": "x.sqlite"}}, "referee.cache_path"),
    ],
)
def test_bad_field_names_its_path(data: dict, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "cfg.yaml")
    msg = str(err.value)
    assert msg.startswith(f"cfg.yaml: {path}:"), msg
    assert "\n" not in msg


def test_every_bad_field_is_named_at_once() -> None:
    # Fixing one field a run at a time: the message used to name the first and add "(and 2 more)".
    with pytest.raises(ConfigError) as err:
        parse_config({"judge": {"tau": -1}, "stop": {"max_rounds": 0}, "seed": "x"}, "cfg.yaml")
    head, *rest = str(err.value).splitlines()
    assert head == "cfg.yaml: 3 problems:"
    assert sorted(line.split(":")[0].strip() for line in rest) == ["judge.tau", "seed", "stop.max_rounds"]


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


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("generate:\n  generators:\n    lion:\n      options: {max_task_shar: 0.25}\n",
         "generate.generators.lion.options.max_task_shar: Extra inputs are not permitted"),
        ("generate:\n  generators:\n    socratic:\n      options: {max_steps: many}\n",
         "generate.generators.socratic.options.max_steps: Input should be a valid integer"),
        ("task:\n  options: {extra_skill: true}\n", "task.options.extra_skill: Extra inputs are not permitted"),
        ("task:\n  options: {sample_error_rate: high}\n", "task.options.sample_error_rate: Input should be a valid number"),
        ("train:\n  options: {report_to: [wandb]}\n", "train.options.report_to: set by lionloop"),
        ("train:\n  options: {learning_rate: 0.1}\n", "train.options.learning_rate: set by lionloop: use train.learning_rate"),
        ("teacher:\n  options: {top_p: 0.9}\n", "teacher.options.top_p: the oracle backend takes no options but tokenizer"),
        ("generate:\n  allocation: {mode: fixed, weights: {cuont: 1}}\n",
         "generate.allocation.weights.cuont: no such task of the pack 'skills'; one of copy, upper,"),
        ("generate:\n  allocation: {mode: fixed}\n", "generate.allocation.weights: mode fixed needs a positive weight"),
        ("generate:\n  allocation: {weights: {count: 1}}\n", "generate.allocation.weights: only read with mode fixed"),
        ("generate:\n  allocation: {mode: fixed, weights: {count: -1}}\n", "generate.allocation.weights.count: -1 is negative"),
    ],
)
def test_cli_bad_plugin_option_exits_2_with_its_path_before_anything_is_written(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    run_dir = tmp_path / "run"
    p = tmp_path / "c.yaml"
    p.write_text(f"run_dir: {run_dir}\n" + yaml_text)
    proc = subprocess.run(
        [sys.executable, "-m", "lionloop.cli", "run", str(p)], capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not run_dir.exists() and not (tmp_path / "runs").exists()


def test_resume_checks_the_plugins_options_too(tmp_path: Path) -> None:
    """A run whose config the installed plugins no longer take is refused before it is touched."""
    from lionloop.config import dump_config
    from lionloop.loop.runner import resume
    from lionloop.rundir import RunDir

    cfg = parse_config({"run_dir": str(tmp_path), "generate": {"generators": {"lion": {}}}})
    files = RunDir(tmp_path)
    bad = cfg.model_copy(update={"train": cfg.train.model_copy(update={"options": {"report_to": ["wandb"]}})})
    files.config.write_text(dump_config(bad))
    files.run_file.write_text('{"run_id": "x", "created": 0, "lionloop": "0"}')
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ConfigError, match=r"^train\.options\.report_to: set by lionloop"):
        resume(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


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
    loaded = load_config(path)
    # init writes the task pack's options with their defaults (so they can be edited in place)
    assert loaded.model_copy(update={"task": loaded.task.model_copy(update={"options": {}})}) == parse_config({})
    assert loaded.task.options["answer_in_reply"] is False and "sample_error_rate" in loaded.task.options
    again = CliRunner().invoke(app, ["init", str(path)])
    assert again.exit_code == 1 and "exists" in again.output
