"""The door: every bad input (config, seed and data files, run directories, command lines) is refused
with exactly one line naming what is wrong and where, the right exit code (2: a config field), no
traceback, nothing written, and in seconds (most cases never load a model).

Most cases run in-process through Typer's CliRunner; the ones marked `proc` through a real
`python -m lionloop.cli`, as a user runs it. The cases the hostile review found are marked
`issue`; before the fix they ran for 15-25 s, printed 35-440-line tracebacks or exited 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MICRO, deep_merge
from typer.testing import CliRunner

BOUND_S = 20.0  # generous on 2 busy cores: most cases take well under a second in-process
PROC_BOUND_S = 60.0


@dataclass
class Case:
    id: str
    make: Callable[[Path], list[str]]  # writes its files under the folder, returns the CLI arguments
    code: int
    needle: str  # what the one line must name: a field path, file:line, ...
    proc: bool = False
    skip: Callable[[], str | None] = lambda: None


# -- building the inputs ------------------------------------------------------------------------


def config(over: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
    """`lionloop run cfg.yaml` with MICRO deep-merged with `over` (run_dir inside the folder)."""

    def make(d: Path) -> list[str]:
        data = deep_merge({**MICRO, "run_dir": str(d / "run")}, over or {})
        for k in drop:
            data.pop(k, None)
        (d / "cfg.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
        return ["run", str(d / "cfg.yaml")]

    return make


def raw_config(text: str | bytes) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        path = d / "cfg.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.replace("RUN", str(d / "run")).encode())
        return ["run", str(path)]

    return make


def seed_file(content: str | bytes, over: dict[str, Any] | None = None) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        path = d / "seeds.jsonl"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        return config(deep_merge({"task": {"seed_file": str(path)}}, over or {}))(d)

    return make


def with_file(name: str, content: str | bytes, then: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        return then(d)

    return make


def args(*argv: str) -> Callable[[Path], list[str]]:
    return lambda d: [a.replace("DIR", str(d)) for a in argv]


def run_dir(run_json: str | None = '{"run_id": "r1", "created": 0, "lionloop": "0.1.0"}',
            config_text: str | None = None, pool: bytes | None | str = "sound",
            command: str = "resume") -> Callable[[Path], list[str]]:
    """A run directory as `lionloop run` leaves it (config.yaml, run.json, pool.sqlite), damaged."""

    def make(d: Path) -> list[str]:
        run = d / "run"
        run.mkdir()
        if config_text is not None:
            (run / "config.yaml").write_text(config_text)
        else:
            (run / "config.yaml").write_text(yaml.safe_dump({**MICRO, "run_dir": str(run)}))
        if run_json is not None:
            (run / "run.json").write_text(run_json)
        if pool == "sound":
            _sound_pool(run / "pool.sqlite")
        elif pool == "foreign":
            import sqlite3

            conn = sqlite3.connect(run / "pool.sqlite")
            conn.execute("CREATE TABLE notes(x)")
            conn.commit()
            conn.close()
        elif isinstance(pool, bytes):
            (run / "pool.sqlite").write_bytes(pool)
        return [*command.split(), str(run)]

    return make


def _sound_pool(path: Path) -> None:
    from lionloop.stores.cache import CallCache
    from lionloop.stores.pool import Pool

    Pool(path).close()
    CallCache(path).close()


def no_gpu() -> str | None:
    import torch

    return "a CUDA GPU is visible here" if torch.cuda.is_available() else None


SQLITE_HEADER = b"SQLite format 3\x00"

# -- the corpus ---------------------------------------------------------------------------------

ISSUE = [
    # Tracebacks after model loading, before the fix.
    Case("issue-student-base-missing", config({"student": {"base": "/nonexistent/model"}}), 2, "student.base: /nonexistent/model does not exist"),
    Case("issue-dedup-model-missing", config({"dedup": {"model": "/nonexistent/minilm"}}), 2, "dedup.model: /nonexistent/minilm does not exist"),
    Case("issue-seed-past-numpy", config({"seed": 2**40}), 2, "seed:"),
    Case("issue-student-too-large", config({"student": {"hidden_size": 2**20, "num_heads": 2}}), 2, "student.hidden_size:"),
    Case("issue-heads-do-not-divide", config({"student": {"hidden_size": 30, "num_heads": 4}}), 2, "student.num_heads: 4 does not divide"),
    Case("issue-config-not-utf8", raw_config(b"name: caf\xe9\n"), 2, "line 1: not valid UTF-8", proc=True),
    Case("issue-device-cuda-no-gpu", config({"student": {"device": "cuda"}}), 2, "student.device: cuda", skip=no_gpu),
    Case("issue-run-dir-is-a-file", with_file("run", "x", config()), 2, "run_dir:"),
    Case("issue-seed-lone-surrogate", seed_file('{"instruction": "ok"}\n{"instruction": "a\\ud800b"}\n'), 1,
         "seeds.jsonl:2: field 'instruction' holds a lone UTF-16 surrogate", proc=True),
    # Accepted silently, before the fix.
    Case("issue-tau-inf", raw_config("run_dir: RUN\njudge:\n  tau: .inf\n"), 2, "judge.tau:"),
    Case("issue-generator-without-plugin", config({"generate": {"generators": {"nope": {"share": 0.5}}}}), 2, "generate.generators.nope:"),
    Case("issue-shares-sum-1.8", config({"generate": {"generators": {"lion": {"share": 0.9}, "rationale": {"share": 0.9}}}}), 2,
         "generate.generators: the enabled generators' shares sum to 1.8"),
    Case("issue-all-shares-zero", config({"generate": {"generators": {"lion": {"share": 0}}}}), 2, "generate.generators: no enabled generator"),
    Case("issue-duplicate-yaml-keys", raw_config("run_dir: RUN\njudge:\n  tau: 1\njudge:\n  tau: 2\n"), 2, "line 4: duplicate key 'judge'"),
    Case("issue-generator-option-type", config({"generate": {"generators": {"lion": {"options": {"per_hard": "two"}}}}}), 2,
         "generate.generators.lion.options.per_hard:"),
    Case("issue-name-with-nul", raw_config('run_dir: RUN\nname: "a\\0b"\n'), 2, "name: contains a NUL character"),
    # Config errors found at run time left a run dir that refused the fixed config.
    Case("issue-unknown-backend", config({"teacher": {"backend": "nope"}}), 2, "teacher.backend: unknown backend 'nope'"),
    Case("issue-unknown-pack", config({"task": {"pack": "nope"}}), 2, "task.pack: unknown task pack 'nope'"),
    Case("issue-unknown-skill", config({"task": {"skills": ["copy", "nope"]}}), 2, "task.skills: unknown skill"),
    Case("issue-unknown-trainer", config({"train": {"trainer": "nope"}}), 2, "train.trainer: unknown trainer 'nope'"),
    Case("issue-missing-prompts-dir", config({"teacher": {"prompts_dir": "/nonexistent/prompts"}}), 2, "teacher.prompts_dir:"),
    Case("issue-unset-api-key-env", config({"teacher": {"api_key_env": "LIONLOOP_TEST_UNSET_KEY"}}), 2,
         "teacher.api_key_env: environment variable LIONLOOP_TEST_UNSET_KEY is not set"),
    Case("cost-budget-oracle", config({"stop": {"max_teacher_cost": 5.0}}), 2,
         "stop.max_teacher_cost: teacher.backend oracle reports no token counts"),
    Case("cost-budget-no-price", config({"stop": {"max_teacher_cost": 5.0},
                                        "teacher": {"backend": "openai", "model": "m", "base_urls": ["http://127.0.0.1:9/v1"]}}), 2,
         "stop.max_teacher_cost: teacher has no price"),
    Case("cost-budget-negative", config({"stop": {"max_teacher_cost": -1}}), 2, "stop.max_teacher_cost:"),
    Case("issue-empty-config", raw_config(""), 2, "holds no settings"),
    Case("issue-comment-only-config", raw_config("# nothing here\n\n# at all\n"), 2, "holds no settings"),
    Case("issue-steps-true", config({"train": {"steps_per_round": True}}), 2, "train.steps_per_round: expected a number"),
    Case("issue-run-json-empty-object", run_dir(run_json="{}"), 1, "run.json: no run_id"),
    Case("issue-run-json-garbage", run_dir(run_json="\x00\xff garbage"), 1, "run.json: no run_id", proc=True),
    Case("issue-5mb-seed-line", seed_file(json.dumps({"instruction": "x" * 5_000_000}) + "\n"), 1, "seeds.jsonl:1: instruction and input hold"),
    # Storage found damaged only after stages ran on it (or an emptied one: ValueError).
    Case("issue-corrupt-pool", run_dir(pool=SQLITE_HEADER + os.urandom(8192)), 1, "pool.sqlite"),
    Case("issue-emptied-pool", run_dir(pool=b""), 1, "pool.sqlite: the run's pool is empty"),
]

MORE = [
    # Config values.
    Case("tau-nan", raw_config("run_dir: RUN\njudge:\n  tau: .nan\n"), 2, "judge.tau:"),
    Case("tau-past-the-scale", config({"judge": {"tau": 10}}), 2, "judge.tau:"),
    Case("tau-a-word", config({"judge": {"tau": "high"}}), 2, "judge.tau:"),
    Case("negative-temperature", config({"teacher": {"temperature": -1}}), 2, "teacher.temperature:"),
    Case("learning-rate-zero", config({"train": {"learning_rate": 0}}), 2, "train.learning_rate:"),
    Case("learning-rate-inf", raw_config("run_dir: RUN\ntrain:\n  learning_rate: .inf\n"), 2, "train.learning_rate:"),
    Case("seed-negative", config({"seed": -1}), 2, "seed:"),
    Case("seed-a-word", config({"seed": "abc"}), 2, "seed:"),
    Case("seed-true", config({"seed": True}), 2, "seed: expected a number"),
    Case("seed-at-the-edge", config({"seed": 2**32 - 2}), 2, "seed: 4294967294 + stop.max_rounds"),
    Case("max-rounds-zero", config({"stop": {"max_rounds": 0}}), 2, "stop.max_rounds:"),
    Case("heads-zero", config({"student": {"num_heads": 0}}), 2, "student.num_heads:"),
    Case("odd-head-size", config({"student": {"hidden_size": 30, "num_heads": 2}}), 2, "student.num_heads: hidden_size 30 / num_heads 2 = 15"),
    Case("share-below-one-candidate", config({"generate": {"generators": {"lion": {"share": 0.01}}}}), 2, "generate.generators.lion.share:"),
    Case("share-above-one", config({"generate": {"generators": {"lion": {"share": 2}}}}), 2, "generate.generators.lion.share:"),
    Case("dedup-threshold-past-one", config({"dedup": {"threshold": 1.5}}), 2, "dedup.threshold:"),
    Case("typo-top-level-key", config({"judg": {"tau": 1}}), 2, "judg: Extra inputs are not permitted"),
    Case("typo-nested-key", config({"teacher": {"bakend": "oracle"}}), 2, "teacher.bakend:"),
    Case("top-level-a-list", raw_config("- a\n- b\n"), 2, "top level must be a mapping"),
    Case("invalid-yaml", raw_config("stop:\n  max_rounds: [1,\n"), 2, "invalid YAML"),
    Case("lone-surrogate-in-config", raw_config('run_dir: RUN\ntask:\n  skills: ["copy", "a\\ud800"]\n'), 2, "task.skills.1: contains a lone UTF-16 surrogate"),
    Case("name-with-slash", config({"name": "a/b"}), 2, "name:"),
    Case("name-with-newline", config({"name": "a\nb"}), 2, "name:"),
    Case("referee-own-cache", config({"referee": {"backend": "oracle", "cache_path": "x.sqlite"}}), 2, "referee.cache_path"),
    Case("secret-in-options", config({"teacher": {"backend": "openai", "model": "m", "options": {"api_key": "sk-x"}}}), 2,
         "teacher.options:"),
    Case("cache-path-a-directory", with_file("cachedir/x", "", lambda d: config({"teacher": {"cache_path": str(d / "cachedir")}})(d)), 2,
         "teacher.cache_path:"),
    Case("run-dir-under-a-file", with_file("afile", "x", lambda d: config({"run_dir": str(d / "afile" / "run")})(d)), 2, "run_dir:"),
    Case("trainer-option-set-by-lionloop", config({"train": {"options": {"save_steps": 5}}}), 2, "train.options.save_steps: set by lionloop"),
    Case("task-option-typo", config({"task": {"options": {"extra_skil": True}}}), 2, "task.options.extra_skil:"),
    Case("student-base-is-a-file", with_file("model.bin", "x", lambda d: config({"student": {"base": str(d / "model.bin")}})(d)), 2,
         "student.base:"),
    Case("student-base-not-a-model", with_file("model/readme.txt", "x", lambda d: config({"student": {"base": str(d / "model")}})(d)), 2,
         "holds no config.json"),
    # Seed files.
    Case("seed-file-missing", config({"task": {"seed_file": "/nonexistent/seeds.jsonl"}}), 2, "task.seed_file: /nonexistent/seeds.jsonl does not exist"),
    Case("seed-file-a-directory", with_file("seeds/x", "", lambda d: config({"task": {"seed_file": str(d / "seeds")}})(d)), 2, "task.seed_file:"),
    Case("seed-file-not-utf8", seed_file(b'{"instruction": "ok"}\n{"instruction": "caf\xe9"}\n'), 1, "seeds.jsonl:2: not valid UTF-8"),
    Case("seed-file-bad-json", seed_file('{"instruction": "a"}\n\n{"instruction": "b",}\n'), 1, "seeds.jsonl:3: not valid JSON"),
    Case("seed-file-row-a-list", seed_file('["instruction", "a"]\n'), 1, "seeds.jsonl:1: expected a JSON object"),
    Case("seed-file-no-instruction", seed_file('{"input": "a"}\n'), 1, "seeds.jsonl:1: field 'instruction'"),
    Case("seed-file-blank-instruction", seed_file('{"instruction": "   "}\n'), 1, "seeds.jsonl:1: field 'instruction'"),
    Case("seed-file-input-a-number", seed_file('{"instruction": "a", "input": 3}\n'), 1, "seeds.jsonl:1: field 'input' must be a string"),
    Case("seed-file-bad-split", seed_file('{"instruction": "a", "split": "eval"}\n'), 1, "seeds.jsonl:1: field 'split'"),
    Case("seed-file-empty", seed_file("\n\n"), 1, "seeds.jsonl: no seed rows"),
    Case("seed-file-nested-too-deep", seed_file("[" * 100_000 + "]" * 100_000 + "\n"), 1, "seeds.jsonl:1: not valid JSON"),
    Case("seed-file-nul", seed_file('{"instruction": "a\\u0000b"}\n'), 1, "seeds.jsonl:1: field 'instruction' holds a NUL"),
    # Run directories given to resume / status / pool.
    Case("resume-no-such-dir", args("resume", "DIR/nope"), 1, "not a lionloop run directory"),
    Case("resume-a-file", with_file("f", "x", args("resume", "DIR/f")), 1, "not a lionloop run directory"),
    Case("resume-config-broken", run_dir(config_text="judge: {tau: [\n"), 2, "config.yaml: line"),
    Case("resume-config-bad-field", run_dir(config_text="judge:\n  tau: -1\n"), 2, "judge.tau:"),
    Case("resume-pool-missing", run_dir(pool=None), 1, "pool.sqlite: the run's pool is missing"),
    Case("resume-pool-foreign", run_dir(pool="foreign"), 1, "lacks its tables"),
    Case("resume-pool-not-sqlite", run_dir(pool=b"this is not a database at all" * 100), 1, "pool.sqlite"),
    Case("status-pool-not-sqlite", run_dir(pool=b"this is not a database at all" * 100, command="status"), 1, "pool.sqlite"),
    Case("pool-stats-pool-not-sqlite", run_dir(pool=SQLITE_HEADER + b"\x00" * 4000, command="pool stats"), 1, ""),
    Case("status-no-run", args("status", "DIR"), 1, "not a lionloop run directory"),
    # Command lines.
    Case("run-missing-argument", args("run"), 2, "Missing argument 'config'"),
    Case("run-config-missing", args("run", "DIR/nope.yaml"), 2, "nope.yaml: cannot read"),
    Case("run-config-a-directory", args("run", "DIR"), 2, "cannot read"),
    Case("unknown-command", args("rnu"), 2, "No such command 'rnu'"),
    Case("demo-rounds-a-word", args("demo", "--rounds", "abc"), 2, "Invalid value for '--rounds'"),
    Case("demo-rounds-zero", args("demo", "--rounds", "0", "--run-dir", "DIR/run"), 2, "stop.max_rounds:"),
    Case("demo-seed-negative", args("demo", "--seed", "-1", "--run-dir", "DIR/run"), 2, "seed:"),
    Case("run-dir-option-a-file", with_file("f", "x", lambda d: [*config()(d), "--run-dir", str(d / "f")]), 2, "run_dir:"),
    Case("unknown-option", args("status", "DIR", "--jsn"), 2, "No such option"),
    Case("init-over-a-file", with_file("l.yaml", "x", args("init", "DIR/l.yaml")), 1, "exists"),
    Case("unknown-option-proc", args("run", "--bogus"), 2, "No such option", proc=True),
]

CASES = ISSUE + MORE


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its content (SQLite's -shm index left out)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.endswith("-shm"):
            out[str(p.relative_to(folder))] = hashlib.sha1(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(folder)) + "/"] = ""
    return out


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    from lionloop.cli.app import app  # noqa: F401 - imported once, so the first case is not slower

    return CliRunner()


def test_the_corpus_is_big_enough() -> None:
    assert len(ISSUE) >= 30 and len(MORE) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_at_the_door(case: Case, tmp_path: Path, runner: CliRunner,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if reason := case.skip():
        pytest.skip(reason)
    monkeypatch.chdir(tmp_path)  # a stray runs/ folder would show in the tree
    monkeypatch.delenv("LIONLOOP_TEST_UNSET_KEY", raising=False)
    argv = case.make(tmp_path)
    before = tree(tmp_path)
    t0 = time.perf_counter()
    if case.proc:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        env.pop("LIONLOOP_TEST_UNSET_KEY", None)
        proc = subprocess.run([sys.executable, "-m", "lionloop.cli", *argv], capture_output=True, text=True,
                              timeout=PROC_BOUND_S * 2, cwd=tmp_path, env=env)
        code, out = proc.returncode, proc.stdout + proc.stderr
        bound = PROC_BOUND_S
    else:
        from lionloop.cli.app import app

        res = runner.invoke(app, argv)
        code, out = res.exit_code, res.stdout + res.stderr
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        bound = BOUND_S
    seconds = time.perf_counter() - t0
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert code == case.code, out
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert case.needle in lines[0], lines[0]
    assert "Traceback" not in out and "traceback in" not in lines[0], out  # a known fault, not a crash
    assert tree(tmp_path) == before, "the command wrote or removed files"
    assert seconds < bound, f"{seconds:.1f}s"


# -- whatever goes wrong inside: one line and a log holding the traceback ---------------------------


def test_an_unexpected_error_is_one_line_with_a_log_of_its_traceback(
    micro_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from lionloop.cli.app import app
    from lionloop.inspect import status
    from lionloop.teacher.secrets import register

    run = tmp_path / "run"
    shutil.copytree(micro_run, run)
    register("sk-crash-secret-0123456789")

    def boom(run_dir: Path) -> dict:
        raise ZeroDivisionError("division by zero near sk-crash-secret-0123456789")

    monkeypatch.setattr(status, "run_status", boom)
    res = CliRunner().invoke(app, ["status", str(run), "--json"])
    assert res.exit_code == 1
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: internal error: ZeroDivisionError: division by zero")
    assert "sk-crash-secret" not in lines[0] and "[redacted]" in lines[0]
    log = Path(lines[0].rsplit("(traceback in ", 1)[1].rstrip(")"))
    assert log.parent == run / "logs"  # in the run directory, since there is one
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError" in text and "def boom" not in lines[0]
    assert "sk-crash-secret" not in text


def test_an_unexpected_error_without_a_run_logs_to_the_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lionloop.cli.app import app
    from lionloop.plugin import manager

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR

    def broken(*a: Any, **k: Any) -> Any:
        raise KeyError("registry")

    monkeypatch.setattr(manager, "get_plugin_manager", broken)
    res = CliRunner().invoke(app, ["plugins"])
    assert res.exit_code == 1
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: internal error: KeyError"), lines
    log = Path(lines[0].rsplit("(traceback in ", 1)[1].rstrip(")"))
    assert log.parent == tmp_path / "lionloop" and "KeyError" in log.read_text()


def test_a_reader_that_goes_away_ends_the_output_quietly(micro_run: Path, tmp_path: Path) -> None:
    # `lionloop status RUN --json | head -1`: the reader closed the pipe while the command wrote.
    # Which write meets the closed pipe depends on timing, so the fault is injected where the
    # command writes (a real process: the quiet exit redirects the real stdout).
    script = (
        "import sys\n"
        "from lionloop.inspect import status\n"
        "def gone(*a, **k):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "status.run_status = gone\n"
        "from lionloop.cli.app import main\n"
        f"sys.argv = ['lionloop', 'status', {str(micro_run)!r}, '--json']\n"
        "main()\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=PROC_BOUND_S)
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr  # no "internal error", no flush noise
    assert not list((micro_run / "logs").glob("crash-*.log")) and not (tmp_path / "lionloop").exists()
