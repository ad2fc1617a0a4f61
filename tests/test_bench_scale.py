"""The scale benchmark's small-size path (its figures agree with the pool they describe), the
large-pool dedup benchmark at a small size, and the report's sampled embedding map. Figures are
checked for consistency, never for speed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lionloop.bench import dedup_large, scale, scale_report
from lionloop.inspect import report as report_mod
from lionloop.records import Instruction
from lionloop.stores.pool import Pool


def test_scale_bench_small_pool_figures_match_the_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_mod, "MAP_POINTS", 1_000)  # the map is sampled past this many points
    monkeypatch.setattr(report_mod, "TSNE_UP_TO", 0)  # PCA: t-SNE's seconds test nothing here
    run_dir = tmp_path / "run"
    # bulk growth: the rounds between the sizes are filled, the last 3 before each size curated
    d = scale.run(run_dir, sizes=(1_200, 3_000), batch=300, seeds=400, eval_n=40, index_kind="ivf")
    pool = Pool(run_dir / "pool.sqlite")
    stored = pool.query("SELECT COUNT(*) FROM instructions")[0][0]
    statuses = dict(pool.query("SELECT status, COUNT(*) FROM candidates GROUP BY status"))
    pool.close()
    first, last = d["steps"]
    assert first["size"] >= 1_200 and last["size"] >= 3_000 and last["rounds"] - first["rounds"] > 3
    assert last["size"] == stored == sum(last["pool_by_split"].values())
    # Every figure of a size describes that pool: stored, indexed, counted, listed, searched, mapped.
    for s in d["steps"]:
        n = s["size"]
        assert s["embeddings"] == s["index_count"] == s["stats_instructions"] == s["list_total"] == s["search_indexed"] == n
        assert s["list_shown"] == 50 and s["search_hits"] == 10
        assert s["report_points"] == min(n, 1_000) and s["report_projection"] == "pca"
        assert s["pool_bytes"] > 0 and s["index_bytes"] > 0 and s["rss"] > 0 and s["rss_peak"] >= s["rss"] * 0.5
        assert 0.5 < s["accept_rate"] < 1.0
    assert last["index_kind"] == "ivf" and last["index_nlist"] >= 16
    # The near-duplicates the generator plants are found: against the pool, within a batch, repeats.
    assert last["rejected"].get("dup_pool", 0) > 0 and last["rejected"].get("dup_batch", 0) > 0
    assert statuses["accepted"] == stored - 400  # every accepted candidate is stored (400 seeds)
    assert json.loads((run_dir / "bench-scale.json").read_text())["steps"][-1]["size"] == last["size"]
    text = scale_report.report(d, "lionloop bench scale --sizes 1200,3000 --batch 300")
    assert f"| {last['size']:,} |" in text and "Growth exponents" in text
    assert scale_report.growth(d["steps"], "pool_bytes") is not None


def test_scale_bench_refuses_a_run_dir_that_holds_a_pool(tmp_path: Path) -> None:
    from lionloop.bench.common import BenchError

    Pool(tmp_path / "pool.sqlite").close()
    with pytest.raises(BenchError, match="already holds a pool"):
        scale.run(tmp_path, sizes=(100,), batch=50, seeds=60, eval_n=5, search=False)


def test_growth_exponent() -> None:
    steps = [{"size": 100, "x": 2.0}, {"size": 1_000, "x": 20.0}, {"size": 10_000, "x": 2_000.0}]
    assert scale_report.growth(steps, "x") == pytest.approx(2.0)  # quadratic between the two largest
    assert scale_report.growth(steps[:2], "x") == pytest.approx(1.0)
    assert scale_report.growth(steps[:1], "x") is None


def test_large_dedup_bench_at_a_small_size() -> None:
    d = dedup_large.run(pool_size=4_000, n_cands=150, recall_n=100, hnsw_pool=1_500, rouge_sample=2,
                        rouge_pool=200, embed_sample=20)
    ivf, hnsw, small_ivf, diffuse, probe32, probe64, probe128 = d["indexes"]
    assert (probe32["nprobe"], probe64["nprobe"], probe128["nprobe"], probe128["spread"]) == (32, 64, 128, 1.6)
    # more lists searched: never fewer true neighbours
    assert probe128["recall1"] >= probe64["recall1"] >= diffuse["recall1"]
    assert (ivf["kind"], ivf["n"], hnsw["kind"], hnsw["n"], small_ivf["n"]) == ("ivf", 4_000, "hnsw", 1_500, 1_500)
    assert diffuse["kind"] == "ivf" and diffuse["spread"] == 1.6 and diffuse["n"] == 4_000
    assert diffuse["nn_cos"] < ivf["nn_cos"]  # wider topics: a fresh candidate's nearest item is farther
    for x in d["indexes"]:
        assert 0.0 <= x["recall1"] <= 1.0 and x["recall_n"] == 100 and x["bytes"] > 0
        assert x["dups"] > 0  # a third of the candidates re-word a pool item: many are duplicates
    assert d["rouge_est_s"] == pytest.approx(d["rouge_s"] * (4_000 / 200) * (150 / 2))
    text = dedup_large.report(d, "x")
    assert "recall@1" in text and "extrapolated linearly" in text


def _pool_with_embeddings(path: Path, n: int) -> list[str]:
    pool = Pool(path)
    items = [Instruction(text=f"instruction {k}", task="t") for k in range(n)]
    pool.add_instructions(items)
    x = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)
    pool.add_embeddings("m", {i.id: v.tobytes() for i, v in zip(items, x, strict=True)})
    pool.close()
    return [i.id for i in items]


def test_report_map_reads_a_sample_past_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _pool_with_embeddings(tmp_path / "pool.sqlite", 300)
    pool = Pool(tmp_path / "pool.sqlite")
    assert [i for i, _ in report_mod.map_sample(pool, "m", 1_000)] == ids  # all of them, in stored order
    sample = report_mod.map_sample(pool, "m", 100)
    assert len(sample) == 100 and len({i for i, _ in sample}) == 100 and set(i for i, _ in sample) <= set(ids)
    assert sample == report_mod.map_sample(pool, "m", 100)  # deterministic: the same report twice
    pool.close()
    monkeypatch.setattr(report_mod, "MAP_POINTS", 100)
    data = report_mod.collect(tmp_path)
    assert len(data["map"]["points"]) == 100 and data["map"]["total"] == 300
    assert "100 of 300" in data["map"]["note"]
    html = report_mod.render(data, report_mod.figures(data))
    assert "(a sample of 300)" in html


def test_bench_scale_cli_writes_its_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lionloop.cli.app import app

    monkeypatch.setattr(report_mod, "TSNE_UP_TO", 0)
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n")
    runner = CliRunner()
    bad = runner.invoke(app, ["bench", "scale", "--sizes", "10k", "--md", str(md)])
    assert bad.exit_code == 2 and "--sizes" in bad.output
    assert runner.invoke(app, ["bench", "scale", "--grow", "fast", "--md", str(md)]).exit_code == 2
    res = runner.invoke(app, ["bench", "scale", "--sizes", "900", "--batch", "300", "--no-search",
                              "--out-dir", str(tmp_path / "run"), "--md", str(md)])
    assert res.exit_code == 0, res.output
    text = md.read_text()
    assert "<!-- bench:scale -->" in text and "## 10. Scale" in text and "--sizes 900 --batch 300" in text
    again = runner.invoke(app, ["bench", "scale", "--sizes", "900", "--out-dir", str(tmp_path / "run"), "--no-write"])
    assert again.exit_code == 1 and "already holds a pool" in again.output
