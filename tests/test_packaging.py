"""A non-editable wheel install works as well as the editable one."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_maps_plugins_stores_prompts_into_lionloop(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves lionloop.egg-info in the folder it builds, and a stale
    # one in the checkout shadowed the editable install's entry points (new plugins went missing).
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv*", "runs", "*.egg-info", "__pycache__",
                                                            ".pytest_cache", "artifacts", "node_modules"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("lionloop-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("lionloop-")}
    assert tops == {"lionloop"}, tops  # the only top-level import name
    for must in ("lionloop/plugins/lion.py", "lionloop/stores/pool.py", "lionloop/prompts/judge.j2",
                 "lionloop/cli/app.py"):
        assert must in names, must
    # Every subpackage of the source tree ships (a folder missing from pyproject's list would not).
    for init in sorted((ROOT / "lionloop").glob("*/__init__.py")):
        assert f"lionloop/{init.parent.name}/__init__.py" in names, init.parent.name
    ep = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lion = lionloop.plugins.lion" in zipfile.ZipFile(wheel).read(ep).decode()

    # Install it into a fresh venv that borrows the dependencies (not lionloop) from this one.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    target = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, timeout=300)
    # A plain path entry: the editable install's finder (.pth) is not activated this way.
    (target / "zz_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    code = (
        "import json, importlib.resources as r, lionloop.plugins.skills as s;"
        "from lionloop.plugin.manager import get_plugin_manager;"
        "print(json.dumps({'file': s.__file__, 'judge': r.files('lionloop.prompts').joinpath('judge.j2').is_file(),"
        "'plugins': [i.as_dict() for i in get_plugin_manager().plugin_list()]}))"
    )
    out = json.loads(subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True,
                                    cwd=tmp_path).stdout)
    assert out["file"].startswith(str(target))
    assert out["judge"] is True
    lion = next(p for p in out["plugins"] if p["name"] == "lion")
    assert lion["error"] is None and lion["dist"] == "lionloop"


def _requirements() -> list[str]:
    """pyproject's dependencies and the extras `make setup` installs (dev, bench)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["dev"],
            *project["optional-dependencies"]["bench"]]


def test_the_lock_pins_every_dependency_within_pyprojects_bounds() -> None:
    """`make setup` installs with lock.txt as constraints: a dependency added to pyproject without
    `make lock` would be resolved afresh (the drift the lock is there to stop), and a pin outside
    pyproject's bounds would make the install fail. torch is constraints.txt's, not the lock's."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from lionloop.bench.common import lock_pins

    pins = lock_pins(ROOT / "lock.txt")
    assert pins and "torch" not in pins and "lionloop" not in pins
    problems = []
    for text in _requirements():
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        if name not in pins:
            problems.append(f"{req.name} is not in lock.txt")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"lock.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}")
    assert not problems, "; ".join(problems) + " (run `make lock`)"
