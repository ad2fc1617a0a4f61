"""`lionloop bench ...`: measurements that are figures, not tests (mounted by the main CLI)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lionloop.cli.ablation import ablation
from lionloop.cli.common import quiet_libraries

bench_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmarks (figures, not tests).")
console = Console()

bench_app.command("ablation")(ablation)


@bench_app.callback()
def _bench() -> None:
    """Benchmarks (figures, not tests)."""


@bench_app.command("teacher")
def teacher(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="C: requests in service at once.")] = 64,
    latency_ms: Annotated[float, typer.Option("--latency-ms", "-l", min=1, help="L: server latency per request.")] = 200.0,
    requests: Annotated[int, typer.Option("--requests", "-n", min=1, help="Requests per client.")] = 2000,
    client: Annotated[list[str] | None, typer.Option("--client", help="Client(s) to measure (default: all).")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per client; the best counts (the machine may be shared).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Teacher-client throughput against a loopback server with latency L and concurrency C, as a
    ratio of the ceiling C/L (target >= 0.9 at C=64, L=200 ms)."""
    from lionloop.bench import teacher as teacher_bench


    clients = tuple(client) if client else teacher_bench.CLIENTS
    try:
        if as_json:
            out = teacher_bench.run(concurrency, latency_ms, requests, clients, repeat)
            console.print_json(json.dumps(out))
            return
        limit = concurrency / (latency_ms / 1000)
        console.print(f"server: C={concurrency}, L={latency_ms:g} ms -> ceiling C/L = {limit:.1f} req/s")
        table = Table("client", "requests", "seconds", "req/s", "ratio to C/L")
        out = teacher_bench.run(
            concurrency, latency_ms, requests, clients, repeat,
            on_figure=lambda f: console.print(f"  {f.client}: {f.ratio:.3f}"),
        )
    except (ValueError, RuntimeError) as err:
        Console(stderr=True).print(f"[red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    for f in out["figures"]:
        table.add_row(f["client"], str(f["requests"]), f"{f['seconds']:.2f}", f"{f['per_second']:.1f}",
                      f"{f['ratio']:.3f}")
    console.print(table)
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in out["versions"].items()))


def _quiet() -> None:
    quiet_libraries()


@bench_app.command("effect")
def effect(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per arm.")] = 3,
    rounds: Annotated[int, typer.Option(min=2, help="Rounds per run.")] = 4,
    accepted: Annotated[int, typer.Option(min=1, help="New teacher-answered examples per round (the budget).")] = 300,
    out_dir: Annotated[str, typer.Option(help="Where the runs go (re-running resumes).")] = "runs/bench-effect",
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
) -> None:
    """Held-out accuracy of the loop vs. uniform expansion vs. seeds only, at equal data budget."""
    from pathlib import Path

    from lionloop.bench import effect as effect_bench


    _quiet()
    effect_bench.main(seeds, rounds, accepted, Path(out_dir), write)


@bench_app.command("dedup")
def dedup(
    candidates: Annotated[int, typer.Option(min=1)] = 6000,
    pools: Annotated[str, typer.Option(help="Pool sizes, comma-separated.")] = "5000,50000",
    rouge_sample: Annotated[int, typer.Option(min=1, help="Candidates ROUGE-L is timed on (then extrapolated).")] = 120,
    pairs: Annotated[int, typer.Option(min=10, help="Labelled pairs per kind.")] = 200,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
) -> None:
    """Lion's ROUGE-L >= 0.7 dedup vs. embeddings + FAISS: time and recall on labelled pairs."""
    from lionloop.bench import dedup as dedup_bench
    from lionloop.bench.loop import write as write_md

    _quiet()
    sizes = tuple(int(x) for x in pools.split(","))
    d = dedup_bench.run(candidates, sizes, rouge_sample, pairs)
    cmd = f"lionloop bench dedup --candidates {candidates} --pools {pools} --rouge-sample {rouge_sample} --pairs {pairs}"
    text = dedup_bench.report(d, cmd)
    write_md("dedup", text) if write else typer.echo(text)


@bench_app.command("loop")
def loop(
    run_dir: Annotated[str | None, typer.Option(help="Measure this finished run instead of running the demo.")] = None,
    rounds: Annotated[int, typer.Option(min=1)] = 4,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
) -> None:
    """Share of each demo round's wall time outside teacher calls, training and generation."""
    import time
    from pathlib import Path

    from lionloop.bench.loop import overhead, overhead_report
    from lionloop.bench.loop import write as write_md

    _quiet()
    if run_dir is None:
        from lionloop.loop.presets import demo_config
        from lionloop.loop.runner import start

        run_dir = f"runs/bench-loop-{time.strftime('%Y%m%d-%H%M%S')}"
        start(demo_config(rounds=rounds, run_dir=Path(run_dir)))
    text = overhead_report(overhead(Path(run_dir)), f"lionloop bench loop --rounds {rounds}")
    write_md("loop", text) if write else typer.echo(text)


@bench_app.command("student")
def student(
    prompts: Annotated[int, typer.Option(min=1)] = 280,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
) -> None:
    """Student evaluation: batched generation vs. one prompt at a time (same prompts)."""
    from lionloop.bench.loop import student_eval, student_eval_report
    from lionloop.bench.loop import write as write_md

    _quiet()
    text = student_eval_report(student_eval(prompts), f"lionloop bench student --prompts {prompts}")
    write_md("student", text) if write else typer.echo(text)


@bench_app.command("resume")
def resume(
    rounds: Annotated[int, typer.Option(min=2)] = 3,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
) -> None:
    """Teacher calls repaid after kill -9 inside each teacher-paying stage (target 0)."""
    import time
    from pathlib import Path

    from lionloop.bench.loop import resume_cost, resume_report
    from lionloop.bench.loop import write as write_md
    from lionloop.loop.presets import demo_config

    _quiet()
    out = Path(f"runs/bench-resume-{time.strftime('%Y%m%d-%H%M%S')}")
    cfg = demo_config(rounds=rounds)
    # Simulated teacher latency makes the teacher stages long enough to be killed inside.
    cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"latency_ms": 2.0})})
    targets = [(0, "bootstrap"), (1, "discriminate"), (1, "generate"), (1, "curate"), (2, "imitate"),
               (2, "discriminate"), (2, "curate")]
    d = resume_cost(cfg, [t for t in targets if t[0] < rounds], out)
    base = out.with_name(out.name + "-baseline")
    from lionloop.loop.runner import start

    start(cfg.model_copy(update={"run_dir": base}))
    from lionloop.bench.loop import _paid

    text = resume_report(d, _paid(base)[0], f"lionloop bench resume --rounds {rounds}")
    write_md("resume", text) if write else typer.echo(text)
