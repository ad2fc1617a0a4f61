"""The `dataset` task pack: every file format, Alpaca and chat rows, the column mapping and its
errors (one line naming file, row and column), duplicates, overlap, the held-out draw, and the
door: a bad file stops `lionloop run` before anything is written."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from lionloop import ConfigError, SeedError
from lionloop.cli.app import app
from lionloop.config import TaskConfig
from lionloop.plugin.manager import get_plugin_manager

REGISTRY = get_plugin_manager().build_registry()
ROWS = [
    {"instruction": "What is 2 + 2?", "input": "", "output": "4", "category": "math"},
    {"instruction": "What is 3 + 5?", "input": "", "output": "8", "category": "math"},
    {"instruction": "What is 9 - 1?", "input": "", "output": "8", "category": "math"},
    {"instruction": "Capital of France?", "input": "", "output": "Paris", "category": "geo"},
    {"instruction": "Capital of Spain?", "input": "", "output": "Madrid", "category": "geo"},
    {"instruction": "Translate", "input": "bonjour", "output": "hello", "category": "words"},
    {"instruction": "Translate", "input": "merci", "output": "thank you", "category": "words"},
]


def pack(options: dict[str, Any], **task: Any) -> Any:
    resolved = REGISTRY.resolve("task_pack", "dataset", "task.pack", options, "task.options")
    return resolved.build(TaskConfig(pack="dataset", **task), 0)


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write(fmt: str, d: Path, rows: list[dict[str, Any]]) -> str:
    if fmt == "jsonl":
        return str(jsonl(d / "rows.jsonl", rows))
    if fmt == "json":
        (d / "rows.json").write_text(json.dumps(rows, indent=1))
        return str(d / "rows.json")
    if fmt in ("csv", "tsv"):
        path = d / f"rows.{fmt}"
        with open(path, "w", newline="", encoding="utf-8-sig") as f:  # Excel's BOM: not data
            w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
            w.writeheader()
            w.writerows(rows)
        return str(path)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), d / "rows.parquet")
        return str(d / "rows.parquet")
    if fmt == "disk":
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(d / "rows_ds"))
        return str(d / "rows_ds")
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "parquet", "disk"])
def test_every_format_gives_the_same_instructions(tmp_path: Path, fmt: str) -> None:
    p = pack({"train": write(fmt, tmp_path, ROWS), "eval_fraction": 0.5})
    got = sorted((i.text, i.input, i.task, i.meta["reference"]) for i in p.seeds() + p.eval_set())
    assert got == sorted((r["instruction"], r["input"], r["category"], r["output"]) for r in ROWS)
    # Half of each task held out (at least one, at least one seed left), the same draw every time.
    assert sorted(i.task for i in p.eval_set()) == ["geo", "math", "math", "words"]  # 1.5 rounds up
    again = pack({"train": write(fmt, tmp_path, ROWS), "eval_fraction": 0.5})
    assert [i.id for i in again.eval_set()] == [i.id for i in p.eval_set()]
    assert all(i.split == "eval" for i in p.eval_set()) and all(i.split == "train" for i in p.seeds())
    # Each row keeps where a person finds it: the line of a text file (after a CSV's header), else the record.
    header = 1 if fmt in ("csv", "tsv") else 0
    for ins in p.seeds() + p.eval_set():
        k = next(k for k, r in enumerate(ROWS) if (r["instruction"], r["input"]) == (ins.text, ins.input))
        assert ins.meta["source"].endswith(f":{k + 1 + header}"), (ins.meta["source"], k)


def test_a_datasets_folder_with_splits(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(ROWS[:5]), "test": Dataset.from_list(ROWS[5:])}).save_to_disk(str(tmp_path / "dd"))
    p = pack({"train": str(tmp_path / "dd"), "eval_split": "test"})
    assert {i.input for i in p.eval_set()} == {"bonjour", "merci"} and len(p.seeds()) == 5
    assert p.report()["eval"].endswith("[test]") and p.report()["held_out"] == 0
    with pytest.raises(ConfigError, match=r"^task\.options\.train: .*dd holds the splits train, test, not 'validation'"):
        pack({"train": str(tmp_path / "dd"), "train_split": "validation"})


def test_a_hub_name_offline_is_one_clear_error() -> None:
    with pytest.raises(ConfigError) as err:
        pack({"train": "tatsu-lab/alpaca"})
    msg = str(err.value)
    assert msg.startswith("task.options.train: 'tatsu-lab/alpaca' is not a local file or folder, and the Hugging Face "
                          "hub cannot be reached") and "\n" not in msg


def test_chat_rows_load_without_a_mapping(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"},
                      {"role": "assistant", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "Count to 2"}, {"role": "assistant", "content": "1 2"},
                      {"role": "user", "content": "and 3?"}, {"role": "assistant", "content": "3"}]},
        {"messages": [{"role": "user", "content": "No answer here"}]},
    ]
    p = pack({"train": str(jsonl(tmp_path / "chat.jsonl", rows)), "eval": str(jsonl(tmp_path / "ev.jsonl", rows[:1]))
              } | {"overlap": "remove"})
    seeds = {i.text: i for i in p.seeds()}
    assert set(seeds) == {"Count to 2", "No answer here"}  # "Say hi" is an eval row: removed from the seeds
    assert seeds["Count to 2"].meta["reference"] == "1 2" and seeds["Count to 2"].meta["turns"] == 2
    assert "reference" not in seeds["No answer here"].meta
    (ev,) = p.eval_set()
    assert (ev.text, ev.meta["reference"], ev.meta["system"]) == ("Say hi", "hi", "Be brief.")
    assert p.report()["multi_turn"] == 1 and p.report()["overlap_removed"] == 1


def test_a_column_mapping(tmp_path: Path) -> None:
    rows = [{"question": f"q{k}", "context": f"c{k}", "answer": [f"a{k}", f"A{k}"], "topic": "t" if k % 2 else "u"}
            for k in range(6)]
    p = pack({"train": write("parquet", tmp_path, rows),
              "columns": {"instruction": "question", "input": "context", "reference": "answer", "task": "topic"}})
    got = {i.text: i for i in p.seeds() + p.eval_set()}
    assert got["q1"].input == "c1" and got["q1"].task == "t" and got["q1"].meta["reference"] == ["a1", "A1"]
    assert p.verify(got["q1"], "A1") is True and p.verify(got["q1"], "a2") is False


@pytest.mark.parametrize(("rows", "options", "error", "message"), [
    ([{"question": "x", "answer": "y"}], {}, ConfigError,
     r"^task\.options\.columns\.instruction: .*data\.jsonl has no 'instruction' or 'messages' column \(columns: question, answer\)"),
    (ROWS, {"columns": {"reference": "answer"}}, ConfigError,
     r"^task\.options\.columns\.reference: .*data\.jsonl has no column 'answer' \(columns: instruction, input, output, category\)$"),
    (ROWS[:2] + [{"instruction": "  ", "output": "1"}], {}, SeedError,
     r"^.*data\.jsonl: line 3, column 'instruction': empty$"),
    (ROWS[:2] + [{"output": "1"}], {}, SeedError, r"^.*data\.jsonl: line 3, column 'instruction': missing$"),
    (ROWS[:2] + [{"instruction": {"text": "hi"}}], {}, SeedError,
     r"^.*data\.jsonl: line 3, column 'instruction': expected text, got dict$"),
    (ROWS[:2] + [{"instruction": "ok", "output": {"a": 1}}], {}, SeedError,
     r"^.*data\.jsonl: line 3, column 'output': expected text, got dict$"),
    (ROWS[:3] + [{"instruction": "ok", "output": "many", "category": "math"}],
     {"verifier_by_task": {"math": "numeric"}}, SeedError,
     r"^.*data\.jsonl: line 4, column 'output': no number in the reference 'many' \(verifier kind: numeric\)$"),
    ([{"messages": "hi"}], {}, SeedError, r"^.*data\.jsonl: line 1, column 'messages': expected a list of"),
    ([{"messages": [{"role": "assistant", "content": "hi"}]}], {}, SeedError,
     r"^.*data\.jsonl: line 1, column 'messages': no user turn$"),
])
def test_bad_rows_and_mappings_name_file_row_and_column(
    tmp_path: Path, rows: list[dict], options: dict, error: type, message: str
) -> None:
    path = jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(error, match=message):
        pack({"train": str(path), **options})


def test_unreadable_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a"}\n{"instruction": \n')
    with pytest.raises(SeedError, match=r"bad\.jsonl: line 2: not valid JSON \(Expecting value"):
        pack({"train": str(tmp_path / "bad.jsonl")})
    (tmp_path / "list.jsonl").write_text('["a", "b"]\n')
    with pytest.raises(SeedError, match=r"list\.jsonl: line 1: expected a JSON object, got list"):
        pack({"train": str(tmp_path / "list.jsonl")})
    (tmp_path / "wide.csv").write_text("instruction,output\nhi,there,extra\n")
    with pytest.raises(SeedError, match=r"wide\.csv: line 2: 3 cells, the header has 2 columns"):
        pack({"train": str(tmp_path / "wide.csv")})
    (tmp_path / "latin.csv").write_bytes("instruction\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(SeedError, match=r"latin\.csv: not UTF-8 text"):
        pack({"train": str(tmp_path / "latin.csv")})
    (tmp_path / "rows.xlsx").write_text("x")
    with pytest.raises(ConfigError, match=r"^task\.options\.train: cannot tell the format of .*rows\.xlsx"):
        pack({"train": str(tmp_path / "rows.xlsx")})
    with pytest.raises(ConfigError, match=r"^task\.options\.eval: no such file or folder: .*nope\.jsonl"):
        pack({"train": write("jsonl", tmp_path, ROWS), "eval": str(tmp_path / "nope.jsonl")})
    (tmp_path / "notds").mkdir()
    with pytest.raises(ConfigError, match=r"notds is a folder but not one written by datasets' save_to_disk"):
        pack({"train": str(tmp_path / "notds")})
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(SeedError, match=r"x\.parquet: cannot read as Parquet"):
        pack({"train": str(tmp_path / "x.parquet")})


def test_duplicates_are_dropped_and_counted(tmp_path: Path) -> None:
    train = jsonl(tmp_path / "t.jsonl", ROWS + [ROWS[0], dict(ROWS[1], output="7"), dict(ROWS[5])])
    ev = jsonl(tmp_path / "e.jsonl", [{"instruction": "Capital of Peru?", "output": "Lima"}] * 3)
    p = pack({"train": str(train), "eval": str(ev)})
    assert len(p.seeds()) == len(ROWS) and len(p.eval_set()) == 1
    assert p.report()["duplicates"] == {"train": 3, "eval": 2}
    # The first of twins stays (with its reference).
    assert next(i for i in p.seeds() if i.text == ROWS[1]["instruction"]).meta["reference"] == "8"


def test_overlap_is_refused_or_removed(tmp_path: Path) -> None:
    train = jsonl(tmp_path / "t.jsonl", ROWS)
    ev = jsonl(tmp_path / "e.jsonl", [ROWS[3], {"instruction": "  Translate ", "input": "merci"}])
    with pytest.raises(ConfigError, match=r"^task\.options\.overlap: 2 seed row\(s\) are also eval rows, e\.g\. "
                                          r".*t\.jsonl:4 = .*e\.jsonl:1 \('Capital of France\?'\)"):
        pack({"train": str(train), "eval": str(ev)})
    p = pack({"train": str(train), "eval": str(ev), "overlap": "remove"})
    assert p.report()["overlap_removed"] == 2 and len(p.seeds()) == len(ROWS) - 2
    assert not {i.id for i in p.seeds()} & {i.id for i in p.eval_set()}


def test_caps_cache_and_task_filter(tmp_path: Path) -> None:
    rows = [{"instruction": f"q{k}", "output": str(k), "task": "a" if k < 12 else "b"} for k in range(16)]
    train = str(jsonl(tmp_path / "t.jsonl", rows))
    p = pack({"train": train, "eval_fraction": 0.25, "cache_fraction": 0.5})
    splits = [(i.task, i.split) for i in p.seeds()]
    assert splits.count(("a", "cache")) == 5 and splits.count(("a", "train")) == 4  # 12 - 3 held out = 9; 4.5 -> 5
    assert splits.count(("b", "cache")) == 2 and splits.count(("b", "train")) == 1  # 4 - 1 held out = 3
    p = pack({"train": train, "eval_fraction": 0.25}, seeds_per_skill=2, cache_per_skill=1, eval_per_skill=1)
    splits = [(i.task, i.split) for i in p.seeds()]
    assert splits.count(("a", "train")) == 2 and splits.count(("a", "cache")) == 1 and len(p.eval_set()) == 2
    assert p.report()["capped"] == (9 - 3) + (3 - 3)
    p = pack({"train": train}, skills=["b"])
    assert {i.task for i in p.seeds() + p.eval_set()} == {"b"}
    with pytest.raises(ConfigError, match=r"^task\.skills: no rows of task\(s\) \['c'\] \(tasks: \['a', 'b'\]\)"):
        pack({"train": train}, skills=["c"])


def test_scoring_follows_the_references(tmp_path: Path) -> None:
    with_refs = pack({"train": write("jsonl", tmp_path, ROWS)})
    assert with_refs.scoring == "verifier" and with_refs.has_verifier
    bare = [{"instruction": r["instruction"], "input": r["input"]} for r in ROWS]
    no_refs = pack({"train": str(jsonl(tmp_path / "bare.jsonl", bare))})
    assert no_refs.scoring == "referee" and no_refs.verify(no_refs.eval_set()[0], "anything") is None
    assert pack({"train": write("jsonl", tmp_path, ROWS), "verifier": "none"}).scoring == "referee"


# -- at the door: the run's preflight and `lionloop init` --------------------------------------


runner = CliRunner()


def _config(tmp_path: Path, options: dict[str, Any], **over: Any) -> Path:
    cfg = {"task": {"pack": "dataset", "options": options}, "run_dir": str(tmp_path / "run"),
           "teacher": {"backend": "openai", "model": "t", "base_urls": ["http://127.0.0.1:9/v1"]}, **over}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(("options", "over", "code", "message"), [
    ({"columns": {"instruction": "question"}}, {}, 2, "task.options.columns.instruction: "),
    ({"eval": "missing.jsonl"}, {}, 2, "task.options.eval: no such file or folder: missing.jsonl"),
    ({}, {"teacher": {"backend": "oracle"}}, 2, "teacher.backend: the task pack 'dataset' has no oracle"),
    ({"verifier": "none"}, {"judge": {"mode": "verifier"}}, 2, "judge.mode: 'verifier' needs a verifier"),
    ({"verifier": "none"}, {"evaluate": {"scoring": "verifier"}}, 2, "evaluate.scoring: the verifier cannot check"),
    ({"verifier": {"kind": "numeric"}}, {}, 1, "line 4, column 'output': no number in the reference 'Paris'"),
])
def test_a_bad_file_or_setting_stops_the_run_before_it_writes(
    tmp_path: Path, options: dict, over: dict, code: int, message: str
) -> None:
    train = write("jsonl", tmp_path, ROWS)
    res = runner.invoke(app, ["run", str(_config(tmp_path, {"train": train, **options}, **over))])
    assert res.exit_code == code, res.output
    assert message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_init_writes_a_config_for_a_data_file(tmp_path: Path) -> None:
    rows = [{"question": f"What is {k} + 1?", "answer": str(k + 1), "subject": "math"} for k in range(8)]
    data = write("csv", tmp_path, rows)
    out = tmp_path / "lionloop.yaml"
    res = runner.invoke(app, ["init", str(out), "--pack", "dataset", "--data", data])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "# Seed rows: a .jsonl/.json" in text  # the pack's options are written with their descriptions
    from lionloop.config import load_config
    from lionloop.loop.preflight import preflight

    cfg = load_config(out)
    opts = cfg.task.options
    assert opts["train"] == data and opts["columns"]["instruction"] == "question"
    assert opts["columns"]["reference"] == "answer" and opts["columns"]["task"] == "subject"
    assert opts["verifier"]["kind"] == "numeric" and cfg.teacher.backend == "openai" and cfg.judge.mode == "both"
    p = preflight(cfg, get_plugin_manager())  # the written config runs as it is
    assert {i.task for i in p.seeds()} == {"math"}
    bad = runner.invoke(app, ["init", str(tmp_path / "x.yaml"), "--pack", "dataset"])
    assert bad.exit_code == 2 and "--pack dataset needs --data FILE" in bad.output
