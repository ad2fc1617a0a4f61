"""The plugin author's path, end to end: the example package in tests/example_plugin is built,
installed into a throwaway virtualenv beside a wheel of lionloop, discovered through its entry
point, and run for a loop round through nothing but the public API.

The virtualenv borrows lionloop's dependencies (torch, transformers, ...) from the running one
with a plain `.pth` path entry (offline, no download); lionloop itself comes from a wheel built
from a copy of the sources, so the editable install is not what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = Path(__file__).resolve().parent / "example_plugin"
SOURCES = ("pyproject.toml", "README.md", "lionloop", "plugins", "stores", "prompts")


def _wheel(src: Path, out: Path) -> Path:
    """Build a wheel from a copy of `src` (in-tree builds would leave build/ dirs behind)."""
    copy = out / f"src-{src.name}"
    if src == ROOT:
        copy.mkdir(parents=True)
        for name in SOURCES:
            f = src / name
            if f.is_dir():
                shutil.copytree(f, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(f, copy / name)
    else:
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out / "dist"), str(copy)], check=True, timeout=300, capture_output=True)
    return max((out / "dist").glob("*.whl"), key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A throwaway virtualenv with lionloop and lionloop-mirror installed from wheels."""
    tmp = tmp_path_factory.mktemp("example-plugin")
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    target = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    wheels = [_wheel(ROOT, tmp / "lionloop"), _wheel(EXAMPLE, tmp / "mirror")]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(target), *map(str, wheels)], check=True, timeout=300)
    # Dependencies from this interpreter's site-packages as a plain path entry: its .pth files
    # (the editable lionloop among them) are not run, so only the wheel's lionloop is importable.
    (target / "zz_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIONLOOP_PLUGINS")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return py, env


def _run(venv: tuple[Path, dict[str, str]], *args: str, cwd: Path, env: dict[str, str] | None = None,
         timeout: int = 120) -> str:
    py, base_env = venv
    out = subprocess.run([str(py), *args], capture_output=True, text=True, cwd=cwd, env={**base_env, **(env or {})},
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_installed_plugin_is_discovered_with_its_dist_version_and_hooks(venv, tmp_path: Path) -> None:
    infos = {i["name"]: i for i in json.loads(_run(venv, "-m", "lionloop.cli", "plugins", "--json", cwd=tmp_path))}
    mirror = infos["mirror"]
    assert mirror["dist"] == "lionloop-mirror" and mirror["version"] == "0.2.0" and mirror["error"] is None
    assert mirror["origin"] == "entry point lionloop:mirror = lionloop_mirror"
    assert mirror["hooks"] == ["lionloop_filter_candidate", "lionloop_format_examples", "lionloop_generate",
                               "lionloop_generator_spec", "lionloop_register", "lionloop_round_end"]
    assert infos["lion"]["dist"] == "lionloop"  # the built-ins come from the same (wheel) install
    table = _run(venv, "-m", "lionloop.cli", "plugins", cwd=tmp_path, env={"COLUMNS": "250"})
    assert "mirror" in table and "lionloop-mirror 0.2.0" in table
    # The allow-list leaves it out.
    listed = json.loads(_run(venv, "-m", "lionloop.cli", "plugins", "--json", cwd=tmp_path,
                             env={"LIONLOOP_PLUGINS": "skills,oracle,trl,lion"}))
    assert {i["name"] for i in listed} == {"skills", "oracle", "trl", "lion"}
    # lionloop is the wheel's, and the plugin's template renders from the plugin's own package.
    code = (
        "import json, lionloop, lionloop_mirror as m; from lionloop.teacher.chat import Prompts;"
        "msgs = Prompts().messages(m.Mirror(instruction='reverse abc'));"
        "print(json.dumps({'lionloop': lionloop.__file__, 'user': msgs[-1]['content']}))"
    )
    out = json.loads(_run(venv, "-c", code, cwd=tmp_path))
    assert "/site-packages/lionloop/" in out["lionloop"] and str(ROOT) not in out["lionloop"]
    assert "reverse abc" in out["user"] and "mirror image" in out["user"]


@pytest.mark.slow
def test_installed_plugin_runs_a_loop_round_and_its_rows_land_in_the_pool(venv, tmp_path: Path) -> None:
    from conftest import MICRO, deep_merge

    run_dir = tmp_path / "run"
    cfg = deep_merge(MICRO, {
        "run_dir": str(run_dir),
        "teacher": {"backend": "mirror_oracle"},  # the plugin's own backend answers its requests
        "generate": {"max_new_per_round": 20, "generators": {"lion": {"share": 0.5}, "mirror": {"share": 0.5}}},
        "stop": {"max_rounds": 2, "stop_when_no_hard": False},
    })
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    _run(venv, "-m", "lionloop.cli", "run", str(tmp_path / "config.yaml"), cwd=tmp_path, timeout=600)
    with sqlite3.connect(run_dir / "pool.sqlite") as c:
        born = c.execute("SELECT i.text, p.text, i.round_born, i.split FROM instructions i "
                         "JOIN instructions p ON p.id = i.parent_id WHERE i.origin = 'mirror'").fetchall()
        rows = c.execute("SELECT e.kind, e.generator, e.completion, i.text FROM examples e "
                         "JOIN instructions i ON i.id = e.instruction_id WHERE i.origin = 'mirror'").fetchall()
        metrics = json.loads(c.execute("SELECT metrics FROM rounds WHERE round = 1").fetchone()[0])
    assert born, "no instruction with origin 'mirror' in the pool"
    for text, parent, round_born, split in born:
        head, *args = parent.split()
        expected = " ".join([head, *reversed(args)]) if all(a.isdigit() for a in args) else " ".join([head, *args[:-1], args[-1][::-1]])
        assert text == expected and round_born == 1 and split == "train"
    assert rows and {(k, g) for k, g, _, _ in rows} == {("mirror", "mirror")}
    skills = __import__("lionloop.plugins.skills", fromlist=["SkillsPack"])
    pack = skills.SkillsPack(__import__("lionloop.config", fromlist=["TaskConfig"]).TaskConfig(), 0)
    assert all(completion == pack.solve(text) for _, _, completion, text in rows)  # the teacher's answers
    assert metrics["generate"]["plugin_errors"] == {} and metrics["generate"]["by_generator"]["mirror"] > 0
    log = [json.loads(line) for line in (run_dir / "mirror.log").read_text().splitlines()]
    assert [entry["round"] for entry in log] == [1, 2] and log[0]["accepted"] == len(born)
