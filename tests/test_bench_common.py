"""What the benchmarks share: where BENCHMARKS.md is (never a stray one in the current directory),
what a run directory says about its calls and events, the arm runs' figures, and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lionloop.bench import common
from lionloop.bench.arms import arm_dir, finished_figures, loop_rounds
from lionloop.cli.bench import bench_app
from lionloop.inspect.status import run_status

runner = CliRunner()


def test_benchmarks_md_is_the_source_checkouts() -> None:
    md = common.benchmarks_md()
    assert md == common.SOURCE_ROOT / "BENCHMARKS.md" and md.is_file()
    assert (common.SOURCE_ROOT / "pyproject.toml").is_file()


def test_no_benchmarks_md_is_refused_not_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "SOURCE_ROOT", tmp_path / "installed")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(common.BenchError, match="no BENCHMARKS.md in the source checkout"):
        common.write_section("loop", "## 4. Loop overhead")
    with pytest.raises(common.BenchError, match="does not exist"):
        common.benchmarks_md(tmp_path / "elsewhere.md")
    assert not list(tmp_path.iterdir())


def test_write_section_replaces_its_own_section_only(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n<!-- bench:a -->\nold a\n<!-- /bench:a -->\n\ntail\n")
    common.write_section("a", "new a", md)
    common.write_section("b", "new b", md)
    assert md.read_text() == ("# Benchmarks\n\n<!-- bench:a -->\nnew a\n<!-- /bench:a -->\n\ntail\n\n"
                              "<!-- bench:b -->\nnew b\n<!-- /bench:b -->\n")


def test_paid_calls_and_events_of_a_run(micro_run: Path) -> None:
    st = run_status(micro_run)
    assert common.paid_calls(micro_run) == (st["teacher_calls"]["paid"], 0)
    evs = common.events(micro_run)
    assert any(e["event"] == "stage_start" and e["stage"] == "bootstrap" for e in evs)
    assert common.events(micro_run / "nowhere") == []


def test_arm_figures_read_through_the_status_builder(micro_run: Path, tmp_path: Path) -> None:
    shutil.copytree(micro_run, arm_dir(tmp_path, "lion", 0), ignore=shutil.ignore_patterns("student"))
    results = {"lion": {0: [{"acc": 0.5}], 1: [{"acc": 0.5}]}, "uniform": {0: [{"acc": 0.5}]}}
    figures = finished_figures(tmp_path, results)
    assert set(figures) == {"lion"} and set(figures["lion"]) == {0}  # runs whose directory is gone: skipped
    st = run_status(micro_run)
    assert [r["round"] for r in loop_rounds(figures["lion"][0])] == [r["round"] for r in st["rounds"]]
    generated = figures["lion"][0]["generated_by_task"]
    accepted = sum(sum((r.get("accepted_by_group") or {}).values()) for r in st["rounds"])
    assert generated and sum(generated.values()) == accepted  # every accepted instruction, by its task


def test_bench_cli_writes_only_where_told_and_exits_1_on_failure(micro_run: Path, tmp_path: Path) -> None:
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n")
    res = runner.invoke(bench_app, ["loop", "--run-dir", str(micro_run), "--md", str(md)])
    assert res.exit_code == 0, res.output
    assert "<!-- bench:loop -->\n## 4. Loop overhead" in md.read_text()
    # A bad option value is a usage error (2); a benchmark that fails is 1, in one line.
    assert runner.invoke(bench_app, ["loop", "--run-dir", str(micro_run), "--md", str(tmp_path / "no.md")]).exit_code == 2
    res = runner.invoke(bench_app, ["loop", "--run-dir", str(tmp_path / "missing"), "--no-write"])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "error:" in res.output
    assert runner.invoke(bench_app, ["teacher", "--client", "bogus"]).exit_code == 2


def test_a_section_names_the_commits_its_runs_were_made_at() -> None:
    """A benchmark resumed or written after later commits says which commit its runs used."""
    from lionloop.bench.common import machine_line, run_commits, source_commit

    head = source_commit()
    results = {"loop": {0: [{"acc": 0.5}, {"acc": 0.6, "commit": "abc1234"}]},
               "uniform": {0: [{"acc": 0.5, "commit": "def5678"}], 1: [{"acc": 0.4}]}}
    assert run_commits(results) == ["abc1234", "def5678"]  # each run's last round carries it
    line = machine_line(run_commits(results))
    assert f"commit abc1234, def5678 (the runs; written at {head or '?'})" in line
    assert f"commit {head or '?'}:" in machine_line([head]) and "the runs" not in machine_line([head])
    assert "the runs" not in machine_line([])


def test_the_source_commit_is_marked_where_the_code_differs_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run made with uncommitted code is not that commit's: its commit carries a "+". Changes
    outside the code (BENCHMARKS.md, which the benchmarks write themselves) do not count."""

    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    (tmp_path / "lionloop").mkdir()
    (tmp_path / "lionloop" / "x.py").write_text("a = 1\n")
    (tmp_path / "BENCHMARKS.md").write_text("# B\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    monkeypatch.setattr(common, "SOURCE_ROOT", tmp_path)
    rev = common.source_commit()
    assert rev and not rev.endswith("+")
    (tmp_path / "BENCHMARKS.md").write_text("# B, rewritten\n")
    assert common.source_commit() == rev
    (tmp_path / "lionloop" / "x.py").write_text("a = 2\n")
    assert common.source_commit() == f"{rev}+"


def test_a_section_names_the_environment_and_where_it_leaves_the_lock(tmp_path: Path) -> None:
    """Runs made on other packages are not expected to repeat to the decimal: the machine line names the key packages, the runs' environments (flagging a mix), and where the
    installed packages differ from lock.txt's pins."""
    here = common.environment()
    assert len(here) == 8 and here == common.environment()
    line = common.machine_line()
    assert f"transformers {common.installed()['transformers']}" in line and f"environment {here}" in line
    assert "NOT ONE ENVIRONMENT" in common.machine_line(envs=["aaaaaaaa", "bbbbbbbb"])
    assert f"environment aaaaaaaa (the runs; written in {here})" in common.machine_line(envs=["aaaaaaaa"])
    assert "the runs" not in common.machine_line(envs=[here])
    version = common.installed()["trl"]
    lock = tmp_path / "lock.txt"
    lock.write_text(f"# a comment\ntrl=={version}\nPyYAML=={common.installed()['pyyaml']}  # a pin\n")
    assert common.lock_drift(lock) == []
    lock.write_text(f"trl=={version}.post9\nno-such-package==1.0\n")
    assert common.lock_drift(lock) == [f"trl {version} (lock {version}.post9)", "no-such-package missing (lock 1.0)"]
    assert common.lock_drift(tmp_path / "absent.txt") is None


def test_benchmarks_pin_the_kernels_where_the_processor_has_avx2(tmp_path: Path) -> None:
    """The same commit and packages trained the tiny student to other figures with other vector
    kernels: a benchmark pins them to AVX2 where the processor has it, keeps what the user set, and
    its machine line says which kernels the runs used (flagging a mix)."""
    env: dict[str, str] = {"MKL_CBWR": "COMPATIBLE"}
    assert common.pin_kernels(env, flags={"sse2", "avx2"}) == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert env == {**common.KERNEL_PINS, "MKL_CBWR": "COMPATIBLE"}
    arm: dict[str, str] = {}
    assert common.pin_kernels(arm, flags={"neon", "asimd"}) == {} and arm == {}
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert common.cpu_flags(info) == {"fpu", "sse2", "avx2", "fma"} and common.cpu_flags(tmp_path / "none") == set()
    assert common.kernels({}).endswith(", not pinned")
    assert "pinned (ATEN_CPU_CAPABILITY=avx2, MKL_CBWR=AVX2, ONEDNN_MAX_CPU_ISA=AVX2)" in common.kernels(common.KERNEL_PINS)
    here = common.machine()["kernels"]
    assert f"torch kernels {here}" in common.machine_line(kernels_of_runs=[here])
    mixed = common.machine_line(kernels_of_runs=["AVX2, not pinned", "AVX512, not pinned"])
    assert "AVX2, not pinned / AVX512, not pinned (the runs; NOT ONE KIND" in mixed
    # Runs made before the kernels were recorded count as unknown, not as the ones beside them.
    runs = {"loop": {0: [{"kernels": "AVX2, pinned"}], 1: [{"acc": 0.5}]}, "uniform": {0: [{"kernels": "AVX2, pinned"}]}}
    assert common.recorded(runs, "kernels", "not recorded") == ["AVX2, pinned", "not recorded"]
    assert common.recorded(runs, "kernels") == ["AVX2, pinned"]


@pytest.mark.parametrize("command", ["bench", "status"])
def test_the_cli_pins_the_kernels_for_a_benchmark_alone_before_torch_loads(command: str) -> None:
    """`lionloop bench ...` sets the pins before anything imports torch (the kernels are chosen when
    it loads); any other command leaves the user's fastest kernels alone."""
    code = ("import json, os, sys\n"
            f"sys.argv = ['lionloop', {command!r}, '--help']\n"
            "from lionloop.cli import app\n"
            "try:\n    app.main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps([os.environ.get('ATEN_CPU_CAPABILITY'), 'torch' in sys.modules]))\n")
    env = {k: v for k, v in os.environ.items() if k not in common.KERNEL_PINS}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    pinned, torch_loaded = json.loads(out.strip().splitlines()[-1])
    want = "avx2" if command == "bench" and "avx2" in common.cpu_flags() else None
    assert pinned == want and not torch_loaded
