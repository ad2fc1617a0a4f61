"""The scale benchmark's BENCHMARKS.md section (`lionloop.bench.scale` measures)."""

from __future__ import annotations

import math
from typing import Any

from lionloop.bench.common import machine_line, md_table


def growth(steps: list[dict[str, Any]], key: str) -> float | None:
    """Exponent b of cost ~ size^b between the two largest sizes (1 = linear, 2 = quadratic)."""
    pts = [(s["size"], s.get(key)) for s in steps if s.get(key)]
    if len(pts) < 2 or pts[-1][0] <= pts[-2][0]:
        return None
    (n0, y0), (n1, y1) = pts[-2], pts[-1]
    return math.log(y1 / y0) / math.log(n1 / n0)


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f}" if b >= 2**20 else f"{b / 2**20:.1f}"


def report(d: dict[str, Any], command: str) -> str:
    steps = d["steps"]
    b = d["batch"]
    run_rows = [[f"{s['size']:,}", s["rounds"], f"{s['index_kind']}" + (f" ({s['index_nlist']} lists)" if s["index_nlist"] else ""),
                 f"**{s['curate_s']:.2f}**", f"{s['curate_cpu_s']:.2f}" if "curate_cpu_s" in s else "-",
                 f"{s['load']:.1f}" if "load" in s else "-", f"{s['dedup_s']:.2f}", f"{s['write_s']:.2f}", f"{s['read_s']:.2f}",
                 f"{s['index_add_s']:.2f} (max {s['index_add_max_s']:.1f})", f"{100 * s['accept_rate']:.0f}%"]
                for s in steps]
    disk_rows = [[f"{s['size']:,}", _mb(s["pool_bytes"]), _mb(s["index_bytes"]), _mb(s["rss"]), _mb(s["rss_peak"]),
                  f"{s['stats_s']:.2f}", f"{s['list_s']:.2f}", f"{s['search_s']:.2f}" if "search_s" in s else "-",
                  f"{s['report_s']:.1f} ({s['report_points']:,} pts, {s['report_projection']})"]
                 for s in steps]
    keys = [("curate_s", f"curate per {b:,}"), ("dedup_s", "dedup search"), ("write_s", "SQLite writes"),
            ("pool_bytes", "SQLite size"), ("index_bytes", "index size"), ("stats_s", "pool stats"),
            ("list_s", "pool list"), ("search_s", "pool search"), ("report_s", "report")]
    slopes = [f"{name} {g:.2f}" for key, name in keys if (g := growth(steps, key)) is not None]
    last = steps[-1]
    return "\n".join([
        "## 10. Scale: the loop's store and index at up to a million instructions",
        "",
        f"Command: `{command}` ({d['seconds'] / 60:.0f} min). Machine: {machine_line()}.",
        "",
        f"A synthetic pool grown round by round, {b:,} candidates a round. Curated rounds make the curate stage's",
        "own calls (candidates written and read back, parents by id, the quality gate, `deduplicate` against",
        "the run's FAISS index with the neighbours' splits by id, one transaction of instructions, answers,",
        "rows, vectors and statuses, then the index add); left out, because their cost does not depend on the",
        "pool: plugin filter hooks, embedding the candidates (MiniLM: section 2b), teacher answers. "
        + ("Every round was curated." if d.get("grow") == "curate" else
           f"The rounds between sizes were written with the same writes and index adds but no dedup (`--grow bulk`: "
           f"curating all of them takes over an hour on 2 shared cores, the flat-index rounds alone ~35 s each); the "
           f"last {d.get('measured', 3)} rounds before each size were curated."),
        "Vectors are synthetic 384-d (MiniLM's width) with near-duplicate structure (8% re-wordings of a pool",
        "instruction at cosine 0.93-0.995, 2% of a batch mate, 0.5% repeats);",
        f"dedup threshold {d['threshold']}; `dedup.index` = {d['index']['kind']}, above "
        f"{d['index']['above']:,}, nprobe {d['index']['nprobe']}. Curate figures are the mean of the curated rounds before",
        "each size (wall clock; “its CPU s” is the process's CPU time for the same work, and the load average",
        "says how shared the 2 cores were: other jobs ran beside it, under `nice -n 10`); the index add's max is the",
        "round that rebuilt or retrained it. Inspection figures are the commands' functions called in process",
        "(no Python start-up); `pool search` includes loading the embedder and reading `index.faiss`.",
        "",
        md_table(["pool", "rounds", "index", f"curate s / {b:,}", "its CPU s", "load avg.", "dedup search", "SQLite writes", "read + gate",
                  "index add", "accepted"], run_rows),
        "",
        md_table(["pool", "SQLite MB", "index MB", "RSS MB", "peak RSS MB", "stats s", "list s", "search s", "report s"],
                 disk_rows),
        "",
        f"Growth exponents between the two largest sizes (cost ∝ size^b; 1 = linear, 2 = quadratic): {', '.join(slopes)}.",
        f"At {last['size']:,}: {last['pool_by_split']} instructions by split, {last['embeddings']:,} vectors stored and "
        f"{last['index_count']:,} indexed; rejected since the previous size: {last['rejected']}.",
    ])
