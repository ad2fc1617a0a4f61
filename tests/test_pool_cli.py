"""`lionloop pool ...` on real micro-loop runs: output cross-checked against the SQLite contents,
read-only while another connection or a live loop writes, and on a crashed-then-resumed run."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MICRO, deep_merge, micro_config, pool_rows
from typer.testing import CliRunner

from lionloop.cli.app import app

runner = CliRunner()


def cli(*args: Any) -> Any:
    return runner.invoke(app, ["pool", *map(str, args)])


def cli_json(*args: Any) -> Any:
    res = cli(*args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output)



def one_line_error(res: Any, *needles: str) -> None:
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def fingerprint(run: Path) -> dict[str, str]:
    """Content hash of every file of a run dir except SQLite's shared-memory index (readers use it)."""
    out = {}
    for p in sorted(run.rglob("*")):
        if p.is_file() and not p.name.endswith("-shm"):
            out[str(p.relative_to(run))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def run_copy(micro_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(micro_run, dst, ignore=shutil.ignore_patterns("student"))
    return dst


# -- stats --------------------------------------------------------------------------------------


def test_stats_json_matches_sqlite(micro_run: Path) -> None:
    st = cli_json("stats", micro_run)
    assert st["instructions"] == pool_rows(micro_run, "SELECT COUNT(*) FROM instructions")[0][0]
    assert st["by_split"] == dict(pool_rows(micro_run, "SELECT split, COUNT(*) FROM instructions GROUP BY split"))
    assert st["by_origin"] == dict(pool_rows(micro_run, "SELECT origin, COUNT(*) FROM instructions WHERE split != 'eval' GROUP BY origin"))
    assert st["by_task"] == dict(pool_rows(micro_run, "SELECT task, COUNT(*) FROM instructions WHERE split != 'eval' GROUP BY task"))
    assert [r["round"] for r in st["rounds"]] == [r[0] for r in pool_rows(micro_run, "SELECT round FROM rounds ORDER BY round")]
    per_round = {r: (h, e) for r, h, e in pool_rows(
        micro_run, "SELECT round, SUM(hard = 1), SUM(hard = 0) FROM verdicts GROUP BY round")}
    size = 0
    for r in st["rounds"]:
        born = pool_rows(micro_run, "SELECT COUNT(*) FROM instructions WHERE split != 'eval' AND round_born = ?", r["round"])[0][0]
        size += born
        assert (r["born"], r["pool_size"]) == (born, size)
        assert (r["hard"], r["easy"]) == per_round.get(r["round"], (0, 0))
    r1 = st["rounds"][1]
    assert r1["accepted"] == pool_rows(micro_run, "SELECT COUNT(*) FROM instructions WHERE round_born = 1")[0][0] > 0
    assert r1["hard_ratio"] == round(r1["hard"] / (r1["hard"] + r1["easy"]), 4)
    # Every paid teacher call is one llm_cache row (the cache lives in pool.sqlite by default).
    assert st["teacher"]["calls"] == pool_rows(micro_run, "SELECT COUNT(*) FROM llm_cache")[0][0] > 0
    assert st["teacher"]["calls"] == sum(v["calls"] for v in st["teacher_by_stage"].values())
    rejected = dict(pool_rows(micro_run, "SELECT reason, COUNT(*) FROM candidates WHERE status = 'rejected' GROUP BY reason"))
    assert sum(st["rejections"].values()) == sum(rejected.values())


def test_stats_table(micro_run: Path) -> None:
    res = cli("stats", micro_run)
    assert res.exit_code == 0, res.output
    assert "boot" in res.output and "calls" in res.output and "seed" in res.output


# -- list ---------------------------------------------------------------------------------------


def test_list_filters_and_gap_sort(micro_run: Path) -> None:
    every = cli_json("list", micro_run, "--limit", 0)
    assert every["total"] == every["shown"] == pool_rows(micro_run, "SELECT COUNT(*) FROM instructions")[0][0]
    latest = {i: (r, d, h) for i, r, d, h in pool_rows(
        micro_run, "SELECT instruction_id, round, diff, hard FROM verdicts v WHERE round ="
        " (SELECT MAX(round) FROM verdicts w WHERE w.instruction_id = v.instruction_id)")}
    for row in every["rows"]:
        want = latest.get(row["id"])
        got = (row["verdict_round"], row["diff"], None if row["hard"] is None else int(row["hard"]))
        assert got == (want if want else (None, None, None)), row["id"]
    gaps = [r["diff"] for r in every["rows"]]
    scored = [g for g in gaps if g is not None]
    assert scored == sorted(scored, reverse=True) and gaps[: len(scored)] == scored  # unscored last

    hard = cli_json("list", micro_run, "--hard", "--limit", 0)
    assert hard["total"] == sum(1 for v in latest.values() if v[2] == 1) > 0
    assert all(r["hard"] is True for r in hard["rows"])
    easy = cli_json("list", micro_run, "--easy", "--limit", 0)
    assert easy["total"] == sum(1 for v in latest.values() if v[2] == 0)

    born1 = cli_json("list", micro_run, "--round", 1, "--origin", "lion", "--split", "train", "--limit", 0)
    assert born1["total"] == pool_rows(micro_run, "SELECT COUNT(*) FROM instructions WHERE round_born = 1"
                                 " AND origin = 'lion' AND split = 'train'")[0][0] > 0
    assert {(r["round_born"], r["origin"], r["split"]) for r in born1["rows"]} == {(1, "lion", "train")}
    rev = cli_json("list", micro_run, "--task", "reverse", "--limit", 3, "--sort", "id")
    assert rev["shown"] == 3 and rev["total"] > 3 and {r["task"] for r in rev["rows"]} == {"reverse"}
    assert [r["id"] for r in rev["rows"]] == sorted(r["id"] for r in rev["rows"])

    as_of_1 = cli_json("list", micro_run, "--judged", 1, "--limit", 0)
    assert {r["verdict_round"] for r in as_of_1["rows"]} == {1, None}
    assert sum(r["verdict_round"] == 1 for r in as_of_1["rows"]) == pool_rows(micro_run, "SELECT COUNT(*) FROM verdicts WHERE round = 1")[0][0]

    table = cli("list", micro_run, "--hard", "-n", 5)
    assert table.exit_code == 0 and f"5 of {hard['total']} instructions" in table.output


def test_list_bad_input(micro_run: Path, tmp_path: Path) -> None:
    one_line_error(cli("list", micro_run, "--round", 99), "round 99", "rounds 0..2")
    one_line_error(cli("list", micro_run, "--split", "test"), "unknown split")
    one_line_error(cli("list", micro_run, "--sort", "size"), "unknown sort")
    one_line_error(cli("list", tmp_path / "nope"), "no such run directory")
    one_line_error(cli("list", tmp_path), "no pool.sqlite")


# -- show ---------------------------------------------------------------------------------------


def test_show_by_prefix_has_every_answer_and_verdict(micro_run: Path) -> None:
    iid, parent = pool_rows(micro_run, "SELECT id, parent_id FROM instructions WHERE origin = 'lion' ORDER BY id LIMIT 1")[0]
    d = cli_json("show", micro_run, iid[:8])
    assert d["instruction"]["id"] == iid and d["parent"]["id"] == parent
    assert [(r["round"], r["role"], r["text"]) for r in d["responses"]] == pool_rows(
        micro_run, "SELECT round, role, text FROM responses WHERE instruction_id = ? ORDER BY round, role DESC", iid)
    assert {r["role"] for r in d["responses"]} == {"teacher", "student"}
    assert [(v["round"], v["diff"]) for v in d["verdicts"]] == pool_rows(
        micro_run, "SELECT round, diff FROM verdicts WHERE instruction_id = ? ORDER BY round", iid)
    assert len(d["examples"]) == pool_rows(micro_run, "SELECT COUNT(*) FROM examples WHERE instruction_id = ?", iid)[0][0]
    assert d["candidates"] and d["candidates"][0]["status"] == "accepted"
    seed = cli_json("show", micro_run, parent)
    assert iid in [c["id"] for c in seed["children"]]

    text = cli("show", micro_run, iid)
    assert text.exit_code == 0 and d["instruction"]["text"] in text.output and "answers and verdicts" in text.output


def test_show_bad_ids(micro_run: Path) -> None:
    one_line_error(cli("show", micro_run, "ffffffffffffffff0"), "no instruction with id")
    one_line_error(cli("show", micro_run, "not-hex"), "not an instruction id")
    ids = [r[0] for r in pool_rows(micro_run, "SELECT id FROM instructions ORDER BY id")]
    shared = next(a[:1] for a, b in zip(ids, ids[1:], strict=False) if a[:1] == b[:1])
    one_line_error(cli("show", micro_run, shared), "ambiguous")


# -- lineage ------------------------------------------------------------------------------------


def test_lineage_tree_matches_parent_links(micro_run: Path) -> None:
    parent_of = dict(pool_rows(micro_run, "SELECT id, parent_id FROM instructions"))
    child = next(i for i, p in sorted(parent_of.items()) if p)
    d = cli_json("lineage", micro_run, child)
    chain = [n["id"] for n in d["ancestors"]] + [d["id"]]
    assert parent_of[chain[0]] is None
    assert all(parent_of[b] == a for a, b in zip(chain, chain[1:], strict=False))

    root = chain[0]
    r = cli_json("lineage", micro_run, root)
    assert r["ancestors"] == []

    def walk(nodes: list[dict]) -> list[str]:
        return [x for n in nodes for x in [n["id"], *walk(n["children"])]]

    below: set[str] = set()
    frontier = {root}
    while frontier:
        frontier = {i for i, p in parent_of.items() if p in frontier}
        below |= frontier
    assert sorted(walk(r["descendants"])) == sorted(below) and r["descendant_count"] == len(below)
    assert child in below
    verdicts = pool_rows(micro_run, "SELECT round, hard FROM verdicts WHERE instruction_id = ? ORDER BY round", root)
    assert [(v["round"], int(v["hard"])) for v in r["node"]["verdicts"]] == verdicts

    tree = cli("lineage", micro_run, child)
    assert tree.exit_code == 0 and root[:12] in tree.output and child[:12] in tree.output and "r1:" in tree.output


# -- search -------------------------------------------------------------------------------------


def test_search_finds_the_instruction_itself_read_only(micro_run: Path) -> None:
    iid, text = pool_rows(micro_run, "SELECT id, text FROM instructions WHERE origin = 'lion' ORDER BY id LIMIT 1")[0]
    before = fingerprint(micro_run)
    res = cli_json("search", micro_run, text, "-k", 3)
    assert res["index"] == "index.faiss" and res["indexed"] == pool_rows(micro_run, "SELECT COUNT(*) FROM embeddings")[0][0]
    assert len(res["neighbours"]) == 3 and res["neighbours"][0]["id"] == iid
    assert res["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    sims = [n["similarity"] for n in res["neighbours"]]
    assert sims == sorted(sims, reverse=True)
    assert fingerprint(micro_run) == before  # the live run's index was only read

    table = cli("search", micro_run, text, "-k", 2)
    assert table.exit_code == 0 and iid[:12] in table.output


def test_search_rebuilds_a_stale_index_in_memory_only(run_copy: Path) -> None:
    meta = json.loads((run_copy / "index.meta.json").read_text())
    (run_copy / "index.meta.json").write_text(json.dumps({**meta, "count": meta["count"] - 1}))  # a stale index
    before = fingerprint(run_copy)
    res = cli_json("search", run_copy, "reverse abc", "-k", 2)
    assert res["index"].startswith("rebuilt in memory") and len(res["neighbours"]) == 2
    assert fingerprint(run_copy) == before
    one_line_error(cli("search", run_copy, "   "), "search text is empty")
    one_line_error(cli("search", run_copy, "x", "-k", 0), "-k must be >= 1")


# -- diff ---------------------------------------------------------------------------------------


def test_diff_counts_match_verdicts(micro_run: Path) -> None:
    d = cli_json("diff", micro_run, "--from", 1, "--to", 2, "--limit", 0)
    v1 = dict(pool_rows(micro_run, "SELECT instruction_id, hard FROM verdicts WHERE round = 1"))
    v2 = dict(pool_rows(micro_run, "SELECT instruction_id, hard FROM verdicts WHERE round = 2"))
    both = set(v1) & set(v2)
    c = d["counts"]
    assert c["stayed_hard"] == sum(1 for i in both if v1[i] == 1 and v2[i] == 1)
    assert c["became_easy"] == sum(1 for i in both if v1[i] == 1 and v2[i] == 0)
    assert c["became_hard"] == sum(1 for i in both if v1[i] == 0 and v2[i] == 1)
    assert c["new_hard"] + c["new_easy"] == len(set(v2) - set(v1)) > 0
    assert c["entered"] == pool_rows(micro_run, "SELECT COUNT(*) FROM instructions WHERE round_born = 2 AND split != 'eval'")[0][0]
    assert len(d["stayed_hard"]) == c["stayed_hard"] and {r["id"] for r in d["new_hard"]} <= set(v2) - set(v1)
    d0 = cli_json("diff", micro_run, "--from", 0, "--to", 1)
    assert d0["counts"]["entered"] == pool_rows(micro_run, "SELECT COUNT(*) FROM instructions WHERE round_born = 1")[0][0] > 0
    assert d0["counts"]["new_hard"] + d0["counts"]["new_easy"] == len(v1)
    assert d0["eval"]["to"] == json.loads(pool_rows(micro_run, "SELECT metrics FROM rounds WHERE round = 1")[0][0])["eval"]["overall"]

    table = cli("diff", micro_run, "--from", 1, "--to", 2)
    assert table.exit_code == 0 and f"{c['stayed_hard']} stayed hard" in table.output
    one_line_error(cli("diff", micro_run, "--from", 2, "--to", 1), "must be before")
    one_line_error(cli("diff", micro_run, "--from", 1, "--to", 7), "--to round 7 is not in this run")


# -- export -------------------------------------------------------------------------------------


def _check_lineage_columns(rows: list[dict], parent_of: dict[str, str | None]) -> None:
    for r in rows:
        iid = r["instruction_id"]
        chain, cur = [], parent_of[iid]
        while cur:
            chain.insert(0, cur)
            cur = parent_of[cur]
        assert list(r["lineage"]) == chain and r["depth"] == len(chain), iid
        assert r["root_id"] == (chain[0] if chain else iid) and r["parent_id"] == parent_of[iid]


def test_export_jsonl_and_parquet(micro_run: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    parent_of = dict(pool_rows(micro_run, "SELECT id, parent_id FROM instructions"))
    out = tmp_path / "rows.jsonl"
    assert cli_json("export", micro_run, "--format", "jsonl", "--out", out)["rows"] > 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    train_rows = pool_rows(micro_run, "SELECT e.id, e.completion FROM examples e JOIN instructions i ON i.id = e.instruction_id"
                                " WHERE i.split = 'train' ORDER BY e.round, e.id")
    assert [(r["id"], r["completion"]) for r in rows] == train_rows
    assert {r["origin"] for r in rows} == {"seed", "lion"}
    _check_lineage_columns(rows, parent_of)
    one_line_error(cli("export", micro_run, "--format", "jsonl", "--out", out), "already exists")
    assert cli("export", micro_run, "--format", "jsonl", "--out", out, "--force").exit_code == 0

    pq_out = tmp_path / "ins.parquet"
    res = cli("export", micro_run, "-f", "parquet", "-o", pq_out, "--what", "instructions", "--split", "eval")
    assert res.exit_code == 0, res.output
    table = pq.read_table(pq_out).to_pylist()
    assert sorted(r["instruction_id"] for r in table) == sorted(
        r[0] for r in pool_rows(micro_run, "SELECT id FROM instructions WHERE split = 'eval'"))
    assert {r["split"] for r in table} == {"eval"} and all(r["teacher_answer"] is None for r in table)
    _check_lineage_columns(table, parent_of)
    one_line_error(cli("export", micro_run, "-f", "csv", "-o", tmp_path / "x.csv"), "unknown format")


def test_export_hf_dataset_with_card(micro_run: Path, tmp_path: Path) -> None:
    from datasets import load_from_disk

    out = tmp_path / "hf"
    res = cli_json("export", micro_run, "--format", "hf", "--out", out, "--what", "instructions")
    ds = load_from_disk(str(out))
    assert len(ds) == res["rows"] == pool_rows(micro_run, "SELECT COUNT(*) FROM instructions")[0][0]
    assert {"instruction_id", "parent_id", "root_id", "depth", "lineage", "latest_hard", "teacher_answer"} <= set(ds.column_names)
    _check_lineage_columns(ds.to_list(), dict(pool_rows(micro_run, "SELECT id, parent_id FROM instructions")))
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "## Rounds" in card
    for rnd, metrics in pool_rows(micro_run, "SELECT round, metrics FROM rounds WHERE round > 0"):
        acc = json.loads(metrics)["eval"]["overall"]
        assert f"| {rnd} | {acc:.1%} |" in card
    one_line_error(cli("export", micro_run, "--format", "hf", "--out", out), "already exists")
    assert cli("export", micro_run, "--format", "hf", "--out", out, "--force").exit_code == 0
    (tmp_path / "notds").mkdir()
    (tmp_path / "notds" / "keep.txt").write_text("mine")
    one_line_error(cli("export", micro_run, "-f", "hf", "-o", tmp_path / "notds", "--force"), "not a saved dataset")
    assert (tmp_path / "notds" / "keep.txt").exists()


# -- read-only while something writes -----------------------------------------------------------


def test_reads_while_another_connection_holds_a_write_transaction(run_copy: Path) -> None:
    before = pool_rows(run_copy, "SELECT COUNT(*) FROM instructions")[0][0]
    writer = sqlite3.connect(run_copy / "pool.sqlite", isolation_level=None, timeout=1)
    writer.execute("PRAGMA journal_mode=WAL")
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO instructions(id, text, task, origin, round_born, split) VALUES"
            " ('00000000deadbeef', 'uncommitted', 'copy', 'probe', 2, 'train')")
        t0 = time.perf_counter()
        st = cli_json("stats", run_copy)
        assert st["instructions"] == before  # the uncommitted row is invisible, nothing blocked
        assert cli_json("list", run_copy, "--origin", "probe")["total"] == 0
        assert cli_json("diff", run_copy, "--from", 1, "--to", 2)["counts"]["entered"] >= 0
        one_line_error(cli("show", run_copy, "00000000deadbeef"), "no instruction")
        assert time.perf_counter() - t0 < 20
        writer.execute("COMMIT")
        assert cli_json("stats", run_copy)["instructions"] == before + 1
        assert cli_json("show", run_copy, "00000000de")["instruction"]["origin"] == "probe"
    finally:
        writer.close()


@pytest.mark.slow
def test_queries_during_a_live_run(tmp_path: Path) -> None:
    """A real loop writes in another process while every read command runs against it."""
    cfg = tmp_path / "cfg.yaml"
    run = tmp_path / "live"
    cfg.write_text(yaml.safe_dump(deep_merge(MICRO, {"run_dir": str(run), "teacher": {"latency_ms": 5}})))
    proc = subprocess.Popen([sys.executable, "-m", "lionloop.cli", "run", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: list[int] = []
    rounds_seen: set[int] = set()
    try:
        deadline = time.time() + 300
        while not (run / "pool.sqlite").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        while proc.poll() is None and time.time() < deadline:
            st = cli("stats", run, "--json")
            if st.exit_code != 0 and "no such table" in st.output:  # schema not created yet
                time.sleep(0.05)
                continue
            assert st.exit_code == 0, st.output
            st = json.loads(st.output)
            seen.append(st["instructions"])
            rounds_seen |= {r["round"] for r in st["rounds"]}
            assert cli("list", run, "--json", "-n", 5).exit_code == 0
            if st["last_round"]:
                d = cli("diff", run, "--from", 0, "--to", st["last_round"], "--json")
                assert d.exit_code == 0, d.output
            if st["instructions"]:
                iid = json.loads(cli("list", run, "--json", "-n", 1).output)["rows"][0]["id"]
                assert cli("show", run, iid, "--json").exit_code == 0
                assert cli("lineage", run, iid, "--json").exit_code == 0
            time.sleep(0.1)  # leave the loop some of the two cores
        assert proc.wait(timeout=max(1, deadline - time.time())) == 0, proc.stderr.read()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"live run: {len(seen)} snapshots, instruction counts {sorted(set(seen))}, rounds {sorted(rounds_seen)}")
    assert len(seen) >= 3, seen  # really queried while the loop ran
    assert seen == sorted(seen)  # the pool only grows, each read saw a consistent snapshot
    assert len(rounds_seen) >= 2
    assert cli_json("stats", run)["instructions"] == pool_rows(run, "SELECT COUNT(*) FROM instructions")[0][0]


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A micro run that crashed in round 1's curate, inspected, then resumed to the end."""
    from lionloop.loop import nodes
    from lionloop.loop.runner import resume, start

    run = tmp_path_factory.mktemp("resumed") / "run"

    def crash(rt: Any, r: int) -> Any:
        raise RuntimeError("injected crash in curate")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nodes, "curate_stage", crash)
        with pytest.raises(RuntimeError, match="injected crash"):
            start(micro_config(run))
    crashed = cli_json("stats", run)
    resume(run)
    return run, crashed


@pytest.mark.slow
def test_commands_on_a_crashed_then_resumed_run(resumed_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    run, crashed = resumed_run
    # Mid-crash: round 1 generated candidates that were never curated.
    r1 = next(r for r in crashed["rounds"] if r["round"] == 1)
    assert r1["candidates"] > 0 and r1["accepted"] == 0 and r1["born"] == 0
    st = cli_json("stats", run)
    assert [r["round"] for r in st["rounds"]] == [0, 1, 2]
    r1 = st["rounds"][1]
    assert r1["accepted"] == r1["born"] == pool_rows(run, "SELECT COUNT(*) FROM instructions WHERE round_born = 1")[0][0] > 0
    assert pool_rows(run, "SELECT COUNT(*) FROM candidates WHERE status = 'pending'")[0][0] == 0
    assert st["teacher"]["calls"] == pool_rows(run, "SELECT COUNT(*) FROM llm_cache")[0][0]
    d = cli_json("diff", run, "--from", 1, "--to", 2)
    assert d["counts"]["new_hard"] + d["counts"]["new_easy"] == r1["born"]
    child = pool_rows(run, "SELECT id FROM instructions WHERE round_born = 1 LIMIT 1")[0][0]
    assert cli_json("lineage", run, child)["ancestors"]
    assert cli_json("search", run, "copy abc", "-k", 1)["index"] == "index.faiss"
    out = tmp_path / "r.jsonl"
    assert cli_json("export", run, "-f", "jsonl", "-o", out)["rows"] == len(out.read_text().splitlines())
