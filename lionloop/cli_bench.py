"""`lionloop bench ...`: measurements that are figures, not tests (mounted by the main CLI)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

bench_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmarks (figures, not tests).")
console = Console()


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
    from lionloop import bench_teacher

    clients = tuple(client) if client else bench_teacher.CLIENTS
    try:
        if as_json:
            out = bench_teacher.run(concurrency, latency_ms, requests, clients, repeat)
            console.print_json(json.dumps(out))
            return
        limit = concurrency / (latency_ms / 1000)
        console.print(f"server: C={concurrency}, L={latency_ms:g} ms -> ceiling C/L = {limit:.1f} req/s")
        table = Table("client", "requests", "seconds", "req/s", "ratio to C/L")
        out = bench_teacher.run(
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
