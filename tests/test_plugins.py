from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lionloop.errors import PluginError
from lionloop.plugin.hookspecs import hookimpl
from lionloop.plugin.manager import get_plugin_manager

BUILTINS = {"lion", "oracle", "skills", "trl", "rationale", "socratic", "disco", "finetune_cot",
            "openai", "hf", "vllm"}


def test_builtins_load_through_entry_points() -> None:
    pm = get_plugin_manager()
    infos = {i.name: i for i in pm.plugin_list()}
    assert BUILTINS <= set(infos)
    for name in BUILTINS:
        info = infos[name]
        assert info.origin.startswith(f"entry point lionloop:{name} = lionloop.plugins.")
        assert info.dist == "lionloop" and info.version
        assert info.error is None and info.hooks
    assert "lionloop_generate" in infos["lion"].hooks
    assert infos["disco"].generator["dedup_threshold"] == 0.99
    assert infos["rationale"].generator["consumes"] == ("hard",)
    assert infos["lion"].generator["calls_per_candidate"] == 2
    assert infos["skills"].generator is None
    reg = pm.build_registry()
    assert reg.names("task_pack") == ["skills"] and "oracle" in reg.names("backend")
    assert reg.entries["trainer"]["trl"].plugin == "trl"


def test_allow_list_restricts_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIONLOOP_PLUGINS", "skills, oracle")
    assert {i.name for i in get_plugin_manager().plugin_list()} == {"skills", "oracle"}


def test_duplicate_registration_names_both_plugins() -> None:
    class Again:
        @hookimpl
        def lionloop_register(self, registry):  # noqa: ANN001, ANN201
            registry.add_task_pack("skills", object)

    pm = get_plugin_manager(extra=[("again", Again())])
    with pytest.raises(PluginError, match="task_pack 'skills' registered twice: by plugin '(skills|again)' and '(again|skills)'"):
        pm.build_registry()


def test_register_that_raises_is_named() -> None:
    class Bad:
        @hookimpl
        def lionloop_register(self, registry):  # noqa: ANN001, ANN201
            raise KeyError("oops")

    with pytest.raises(PluginError, match="plugin 'bad' failed in lionloop_register"):
        get_plugin_manager(extra=[("bad", Bad())]).build_registry()


def _fake_dist(site: Path, name: str, module: str, source: str) -> None:
    """An installed distribution on sys.path with a `lionloop` entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[lionloop]\n{name} = {module}\n")


def test_third_party_entry_points_and_broken_ones(tmp_path: Path) -> None:
    _fake_dist(tmp_path, "good-plugin", "good_plugin", """
        from lionloop.plugin.hookspecs import hookimpl

        @hookimpl
        def lionloop_round_end(summary, ctx):
            pass
    """)
    _fake_dist(tmp_path, "broken-plugin", "broken_plugin", "raise ImportError('missing dependency xyz')\n")
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from lionloop.plugin.manager import get_plugin_manager;"
        "print(json.dumps([i.as_dict() for i in get_plugin_manager().plugin_list()]))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    infos = {i["name"]: i for i in json.loads(out.stdout)}
    assert infos["good-plugin"]["dist"] == "good-plugin" and infos["good-plugin"]["version"] == "1.2.3"
    assert infos["good-plugin"]["hooks"] == ["lionloop_round_end"]
    assert "missing dependency xyz" in infos["broken-plugin"]["error"]
    assert BUILTINS <= set(infos)  # one broken package does not take the others down


def test_cli_plugins_lists_origin_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "lionloop.cli", "plugins", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    infos = {i["name"]: i for i in json.loads(out.stdout)}
    assert BUILTINS <= set(infos)
    assert infos["lion"]["version"] and "entry point" in infos["lion"]["origin"]
    table = subprocess.run([sys.executable, "-m", "lionloop.cli", "plugins"],
                           capture_output=True, text=True, check=True, timeout=120).stdout
    assert "lion" in table and "entry point" in table
