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

BUILTINS = {"lion", "oracle", "skills", "trl", "rationale", "socratic", "disco", "finetune_cot", "scott", "icl", "mt_cot", "fu_cot",
            "openai", "hf", "vllm", "dataset"}


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
    assert reg.names("task_pack") == ["dataset", "skills"] and "oracle" in reg.names("backend")
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


def test_cli_plugins_lists_origin_and_version_and_components_by_kind() -> None:
    out = subprocess.run([sys.executable, "-m", "lionloop.cli", "plugins", "--json"],
                         capture_output=True, text=True, check=True, timeout=120)
    infos = {i["name"]: i for i in json.loads(out.stdout)}
    assert BUILTINS <= set(infos)
    assert infos["lion"]["version"] and "entry point" in infos["lion"]["origin"]
    assert infos["skills"]["registers"] == {"task_pack": ["skills"]}
    assert infos["socratic"]["registers"] == {"request_type": ["decompose"]}
    assert infos["trl"]["registers"] == {"trainer": ["trl"]} and infos["lion"]["registers"] == {}
    table = subprocess.run([sys.executable, "-m", "lionloop.cli", "plugins"],
                           capture_output=True, text=True, check=True, timeout=120).stdout
    assert "lion" in table and "entry point" in table
    assert "registered components" in table
    for kind, name in (("task pack", "skills"), ("backend", "oracle"), ("trainer", "trl"), ("request type", "cot_sample")):
        assert any(line.split("│")[1:3] and kind in line.split("│")[1] and name in line.split("│")[2]
                   for line in table.splitlines() if line.count("│") >= 4), (kind, name)


# -- options of registered components --------------------------------------------------------------


def test_registry_keeps_each_components_options_model_and_builds_with_it() -> None:
    from lionloop import ConfigError, PluginOptions, Registry

    class Opts(PluginOptions):
        size: int = 3

    made: list[tuple] = []
    reg = Registry()
    reg.add_task_pack("typed", lambda cfg, seed, options: made.append((cfg, seed, options)), options=Opts)
    reg.add_task_pack("loose", lambda cfg, seed: made.append((cfg, seed)))
    assert reg.entries["task_pack"]["typed"].options is Opts and reg.entries["task_pack"]["loose"].options is None
    reg.resolve("task_pack", "typed", "task.pack", {"size": "4"}, "task.options").build("cfg", 0)
    reg.resolve("task_pack", "loose", "task.pack", {"anything": 1}, "task.options").build("cfg", 0)
    assert made == [("cfg", 0, Opts(size=4)), ("cfg", 0)]  # a factory without a model: called as before
    with pytest.raises(ConfigError, match=r"^task\.options\.sise: Extra inputs are not permitted$"):
        reg.resolve("task_pack", "typed", "task.pack", {"sise": 4}, "task.options")
    with pytest.raises(ConfigError, match=r"^task\.pack: unknown task pack 'nope' \(known: loose, typed\)$"):
        reg.resolve("task_pack", "nope", "task.pack", {}, "task.options")
    with pytest.raises(PluginError, match="options must be a pydantic model class"):
        reg.add_trainer("bad", object, options={"size": int})


def test_option_error_names_the_key_it_refuses() -> None:
    from pydantic import ConfigDict, model_validator

    from lionloop import ConfigError, OptionError, PluginOptions, validate_options

    class Opts(PluginOptions):
        model_config = ConfigDict(extra="allow")

        @model_validator(mode="after")
        def _known(self):  # noqa: ANN202
            for key in self.model_extra or {}:
                if key.startswith("x"):
                    raise OptionError(key, "no x keys")
            return self

    assert validate_options(Opts, {"a": 1}, "train.options").model_extra == {"a": 1}
    with pytest.raises(ConfigError, match=r"^train\.options\.xy: no x keys$"):
        validate_options(Opts, {"a": 1, "xy": 2}, "train.options")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"teacher": {"options": {"top_p": 0.9}}}, "teacher.options.top_p: the oracle backend takes no options but tokenizer"),
        ({"teacher": {"backend": "hf", "model": "m", "options": {"device": "tpu"}}},
         "teacher.options.device: Input should be 'auto', 'cpu' or 'cuda'"),
        ({"teacher": {"backend": "hf", "model": "m", "options": {"max_new_tokens": 9}}},
         "teacher.options.max_new_tokens: set by lionloop: use teacher.max_tokens"),
        ({"referee": {"backend": "vllm", "model": "m", "options": {"temperature": 0.5}}},
         "referee.options.temperature: set by lionloop: use teacher.temperature"),
        ({"generator_teacher": {"backend": "vllm", "model": "m", "options": {"engine_args": {"model": "x"}}}},
         "generator_teacher.options.engine_args.model: set by lionloop: use teacher.model"),
        ({"train": {"options": {"report_to": ["wandb"]}}}, "train.options.report_to: set by lionloop:"),
        ({"train": {"options": {"max_steps": 5}}}, "train.options.max_steps: set by lionloop: use train.steps_per_round"),
        ({"train": {"options": {"optimiser": "adamw"}}}, "train.options.optimiser: not an option of the trl trainer"),
        ({"train": {"options": {"kind_weights": {"cot": "x"}}}}, "train.options.kind_weights.cot: Input should be a valid number"),
        ({"task": {"options": {"eval_sed": 1}}}, "task.options.eval_sed: Extra inputs are not permitted"),
        ({"generate": {"generators": {"nope": {}}}}, "generate.generators.nope: no such generator plugin is loaded"),
    ],
)
def test_preflight_checks_every_component_and_its_options(section: dict, message: str) -> None:
    from lionloop.config import parse_config
    from lionloop.errors import ConfigError
    from lionloop.loop.preflight import preflight

    with pytest.raises(ConfigError) as err:
        preflight(parse_config(section), get_plugin_manager())
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_preflight_passes_what_the_builtins_accept() -> None:
    from lionloop.config import parse_config
    from lionloop.loop.preflight import preflight

    preflight(parse_config({
        "task": {"options": {"extra_skills": True, "eval_seed": 5}},
        "teacher": {"backend": "openai", "model": "m", "options": {"top_p": 0.9, "seed": 1}},
        "referee": {"backend": "hf", "model": "m", "options": {"dtype": "bfloat16", "top_k": 5}},
        "train": {"options": {"kind_weights": {"rationale": 0.5}, "weight_decay": 0.01}},
        "generate": {"generators": {n: {"share": 0.2, "options": {"max_calls": 10}}
                                    for n in ("lion", "rationale", "socratic", "disco", "finetune_cot")}},
    }), get_plugin_manager())


def test_builtin_plugins_import_the_plugin_api_from_lionloop_alone() -> None:
    """Written exactly as a third-party plugin would be: `from lionloop import ...`, no submodule."""
    import ast

    for path in sorted((Path(__file__).resolve().parents[1] / "plugins").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lionloop"):
                assert node.module == "lionloop", f"{path.name}: from {node.module} import ..."
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("lionloop.") for a in node.names), path.name
