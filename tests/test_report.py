"""`lionloop report`: figures cross-checked with the SQLite contents, a self-contained page, and
the page opened in headless Chromium (no console errors, every plot drawn, a screenshot saved)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import pool_rows
from typer.testing import CliRunner

from lionloop.cli.report import report
from lionloop.inspect.report import build_report, collect, figures

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
PLOTS = ["accuracy", "referee", "allocation", "pool", "teacher", "replies", "training", "gaps", "curate", "map"]
HOSTILE = "</script><script>window.__pwned = 1</script><b>bold</b> & \"quotes\""
EMBED_LIKE_ANOTHER = ("INSERT INTO embeddings(instruction_id, model, vector) SELECT '00000000c0ffee00', model, vector"
                      " FROM embeddings LIMIT 1")

app = typer.Typer()
app.command("report")(report)
app.command("noop")(lambda: None)  # two commands keep `report` a named sub-command, as in lionloop's app
runner = CliRunner()



def trace(fig: Any, name: str) -> Any:
    return next(t for t in fig.data if t.name == name)


@pytest.fixture(scope="module")
def data(micro_run: Path) -> dict[str, Any]:
    return collect(micro_run, "auto", top=10)


@pytest.fixture
def run_copy(micro_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(micro_run, dst, ignore=shutil.ignore_patterns("student"))
    return dst


def test_figures_match_the_pool(micro_run: Path, data: dict[str, Any]) -> None:
    figs = {f["id"]: f["fig"] for f in figures(data)}
    assert list(figs) == PLOTS and all(f is not None for f in figs.values())
    metrics = {r: json.loads(m) for r, m in pool_rows(micro_run, "SELECT round, metrics FROM rounds")}

    overall = trace(figs["accuracy"], "overall")
    assert list(overall.x) == [1, 2] and list(overall.y) == [metrics[r]["eval"]["overall"] for r in (1, 2)]
    for skill, acc in metrics[2]["eval"]["per_skill"].items():
        assert trace(figs["accuracy"], skill).y[-1] == acc

    hard = dict(pool_rows(micro_run, "SELECT round, SUM(hard = 1) FROM verdicts GROUP BY round"))
    bars = trace(figs["referee"], "hard")
    assert dict(zip(bars.x, bars.y, strict=True)) == hard

    totals = [sum(t.y[k] for t in figs["pool"].data) for k in range(len(data["rounds"]))]
    assert totals == [pool_rows(micro_run, "SELECT COUNT(*) FROM instructions WHERE split != 'eval' AND round_born <= ?", r)[0][0]
                      for r in data["rounds"]]
    assert [t.name for t in figs["pool"].data][0] == "seed"

    for r, diffs in data["gaps"].items():
        assert sorted(diffs) == sorted(d for (d,) in pool_rows(micro_run, "SELECT diff FROM verdicts WHERE round = ? AND diff IS NOT NULL", r))
    assert sum(len(t.x) for t in figs["gaps"].data) == pool_rows(micro_run, "SELECT COUNT(diff) FROM verdicts")[0][0]

    calls = sum(sum(t.y) for t in figs["teacher"].data if t.name.startswith("calls: "))
    assert calls == pool_rows(micro_run, "SELECT COUNT(*) FROM llm_cache")[0][0]
    accepted = trace(figs["curate"], "accepted")
    assert list(accepted.y) == [metrics[r]["curate"]["accepted"] for r in accepted.x]

    # Where the data went: one bar per task, adding up to what the generated round accepted per task.
    bought = dict(pool_rows(micro_run, "SELECT task, COUNT(*) FROM instructions WHERE round_born = 1 AND origin = 'lion'"
                                       " GROUP BY task"))
    bars = {t.name: dict(zip(t.x, t.y, strict=True)) for t in figs["allocation"].data if t.type == "bar"}
    assert {task: per[1] for task, per in bars.items() if per[1]} == bought


def test_map_and_hardest_match_the_pool(micro_run: Path, data: dict[str, Any]) -> None:
    points = data["map"]["points"]
    assert len(points) == pool_rows(micro_run, "SELECT COUNT(*) FROM embeddings")[0][0] and data["map"]["method"] == "tsne"
    latest = {i: h for i, h in pool_rows(micro_run, "SELECT instruction_id, hard FROM verdicts v WHERE round ="
                                              " (SELECT MAX(round) FROM verdicts w WHERE w.instruction_id = v.instruction_id)")}
    split = dict(pool_rows(micro_run, "SELECT id, split FROM instructions"))
    for p in points:
        want = ("eval (held out)" if split[p["id"]] == "eval" else
                "not judged yet" if latest.get(p["id"]) is None else "hard" if latest[p["id"]] else "easy")
        assert p["status"] == want, p
    xs = {round(p["x"], 3) for p in points}
    assert len(xs) > len(points) // 2  # a real projection, not a collapsed one

    hardest = data["hardest"]
    assert 0 < len(hardest) <= 10
    assert all(latest[h["id"]] == 1 for h in hardest)
    assert [h["diff"] for h in hardest] == sorted((h["diff"] for h in hardest), reverse=True)
    top = pool_rows(micro_run, "SELECT MAX(diff) FROM verdicts v WHERE hard = 1 AND round ="
                         " (SELECT MAX(round) FROM verdicts w WHERE w.instruction_id = v.instruction_id)")[0][0]
    assert hardest[0]["diff"] == top
    for h in hardest:
        assert h["teacher_answer"] == pool_rows(micro_run, "SELECT text FROM responses WHERE instruction_id = ? AND role = 'teacher'", h["id"])[0][0]


def test_report_cli_writes_a_self_contained_page(micro_run: Path, tmp_path: Path) -> None:
    from plotly.offline import get_plotlyjs

    out = tmp_path / "r" / "report.html"
    res = runner.invoke(app, ["report", str(micro_run), "--out", str(out), "--json", "--top", "5"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["out"] == str(out) and info["bytes"] == out.stat().st_size and info["hardest"] == 5
    html = out.read_text()
    assert get_plotlyjs()[:2000] in html  # the library itself is inlined
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=", html, re.I)  # nothing to fetch
    for p in PLOTS:
        assert f'id="plot-{p}"' in html
    links = re.findall(r'href="#(lineage-[0-9a-f]+)"', html)
    assert len(set(links)) == 5 and all(f'id="{a}"' in html for a in links)
    assert "nothing to plot yet" not in html
    text = runner.invoke(app, ["report", str(micro_run), "--out", str(out), "--projection", "pca"])
    assert text.exit_code == 0 and "with pca" in text.output


def test_report_bad_input(micro_run: Path, tmp_path: Path) -> None:
    for args, needle in (([str(tmp_path / "nope")], "no such run directory"),
                         ([str(micro_run), "--projection", "umap"], "unknown projection"),
                         ([str(micro_run), "--top", "-1"], "--top")):
        res = runner.invoke(app, ["report", *args, "--out", str(tmp_path / "x.html")])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 1 and len(lines) == 1 and needle in lines[0], res.output
    assert not (tmp_path / "x.html").exists()


def test_report_escapes_pool_text_and_reads_under_a_writer(run_copy: Path, tmp_path: Path) -> None:
    writer = sqlite3.connect(run_copy / "pool.sqlite", isolation_level=None, timeout=1)
    writer.execute("INSERT INTO instructions(id, text, task, origin, round_born, split) VALUES"
                   " ('00000000c0ffee00', ?, 'copy', 'seed', 0, 'cache')", (HOSTILE,))
    writer.execute("INSERT INTO verdicts(instruction_id, round, teacher_score, student_score, diff, hard) VALUES"
                   " ('00000000c0ffee00', 2, 10, 0, 10, 1)")
    writer.execute(EMBED_LIKE_ANOTHER)
    writer.execute("BEGIN IMMEDIATE")  # a writer mid-transaction must not block or leak into the report
    writer.execute("DELETE FROM verdicts")
    try:
        res = build_report(run_copy, tmp_path / "r.html", top=3)
        html = (tmp_path / "r.html").read_text()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert res["hardest"] == 3 and "00000000c0ffee00" in html  # the largest gap (10) leads the table
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "</script><script>window.__pwned" not in html


def test_report_on_a_run_with_only_its_bootstrap(run_copy: Path, tmp_path: Path) -> None:
    with sqlite3.connect(run_copy / "pool.sqlite") as c:
        c.execute("DELETE FROM verdicts")
        c.execute("DELETE FROM candidates")
        c.execute("DELETE FROM instructions WHERE round_born > 0")
        c.execute("DELETE FROM rounds WHERE round > 0")
    res = build_report(run_copy, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert res["rounds"] == 0 and res["hardest"] == 0
    assert html.count("nothing to plot yet") == 6  # accuracy, referee, allocation, training, gaps, curate drawn empty
    assert 'id="plot-pool"' in html and 'id="plot-map"' in html and "no instruction is judged hard" in html


# -- in a real browser ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed by scripts/setup_browser.sh when missing (needs root/apt)."""
    from lionloop.testing.browser import find_chromium

    path = find_chromium()
    if path is None:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup_browser.sh")], capture_output=True,
                              text=True, timeout=900)
        path = find_chromium()
        if path is None:
            reason = (proc.stderr.strip().splitlines() or ["setup_browser.sh failed"])[-1]
            print(f"SKIP browser test: chromium cannot be installed here: {reason}")
            pytest.skip(f"chromium cannot be installed here: {reason}")
    return path


@pytest.mark.slow
@pytest.mark.browser
def test_report_in_headless_chromium(chromium: str, run_copy: Path, tmp_path: Path) -> None:
    from lionloop.testing.browser import inspect_report

    with sqlite3.connect(run_copy / "pool.sqlite") as c:  # text that would break a naive page
        c.execute("INSERT INTO instructions(id, text, task, origin, round_born, split) VALUES"
                  " ('00000000c0ffee00', ?, 'copy', 'seed', 0, 'cache')", (HOSTILE,))
        c.execute("INSERT INTO verdicts(instruction_id, round, teacher_score, student_score, diff, hard) VALUES"
                  " ('00000000c0ffee00', 2, 10, 0, 10, 1)")
        c.execute(EMBED_LIKE_ANOTHER)  # so the text lands in the map's hover data too
    html = tmp_path / "report.html"
    build_report(run_copy, html)
    ARTIFACTS.mkdir(exist_ok=True)
    res = inspect_report(html, ARTIFACTS / "report.png", executable=chromium)
    full = inspect_report(html, ARTIFACTS / "report-full.png", executable=chromium, full_page=True,
                          follow_first_link=False)
    assert res["errors"] == [] and full["errors"] == [], res["errors"] + full["errors"]
    assert res["requests"] == [], res["requests"]  # nothing fetched: the page is self-contained
    assert [p["id"] for p in res["plots"]] == [f"plot-{p}" for p in PLOTS]
    for p in res["plots"]:
        assert p["main_svg"] > 0 and p["traces"] > 0 and p["drawn_traces"] == p["traces"], p
        assert p["marks"] > 0, p  # points, bars or lines actually drawn
    map_plot = next(p for p in res["plots"] if p["id"] == "plot-map")
    assert map_plot["marks"] >= 2 * pool_rows(run_copy, "SELECT COUNT(*) FROM embeddings")[0][0]  # both panels
    assert res["link"] == {"href": "#lineage-00000000c0ffee00", "hash": "#lineage-00000000c0ffee00", "visible": True}
    assert res["title"].startswith("lionloop report")
    assert (ARTIFACTS / "report.png").stat().st_size > 20_000
