"""`lionloop bench ...`: measurements that are figures, not tests (mounted by the main CLI).

Exit codes: 1 when a benchmark fails or cannot write its figures (one red line), 2 only for a bad
option value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lionloop.cli.common import console, fail, quiet_libraries, setup_logging
from lionloop.errors import LionloopError

bench_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmarks (figures, not tests).")

Md = Annotated[Path | None, typer.Option(
    "--md", exists=True, dir_okay=False, show_default=False,
    help="The BENCHMARKS.md to update (default: the one in lionloop's source checkout).")]


def run_bench(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    """Run a benchmark step; a lionloop error ends the command with one red line and exit 1
    (a failed benchmark, not a bad config)."""
    try:
        return fn(*args, **kwargs)
    except LionloopError as err:
        fail(err, 1)


def md_target(write: bool, md: Path | None) -> Path | None:
    """Where the figures go (checked before the benchmark runs), or None without --write."""
    from lionloop.bench.common import benchmarks_md

    return run_bench(benchmarks_md, md) if write else None


def publish(name: str, text: str, md: Path | None) -> None:
    """Print a benchmark's section and, with a target, put it in that BENCHMARKS.md."""
    from lionloop.bench.common import write_section

    typer.echo(text)
    if md is not None:
        write_section(name, text, md)


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
    unknown = [c for c in clients if c not in teacher_bench.CLIENTS]
    if unknown:
        fail(f"--client: unknown {unknown} (known: {', '.join(teacher_bench.CLIENTS)})", 2)
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
    except (ValueError, RuntimeError) as err:  # the server or the requests failed: the benchmark failed
        fail(err, 1)
    for f in out["figures"]:
        table.add_row(f["client"], str(f["requests"]), f"{f['seconds']:.2f}", f"{f['per_second']:.1f}",
                      f"{f['ratio']:.3f}")
    console.print(table)
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in out["versions"].items()))


@bench_app.command("effect")
def effect(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per arm.")] = 5,
    rounds: Annotated[int, typer.Option(min=2, help="Rounds per run (the budget is paced over them).")] = 5,
    budget: Annotated[int, typer.Option(min=1, help="Paid teacher calls per run, every arm (stop.max_teacher_calls).")] = 2400,
    referee: Annotated[str, typer.Option(help="verifier: wrong = hard, no teacher call; llm: the oracle's judge, every call paid.")] = "verifier",
    extra_skills: Annotated[bool, typer.Option("--extra-skills", help="The 10-skill pack (chain, sum, mood added).")] = False,
    arm: Annotated[list[str] | None, typer.Option("--arm", help="Arm(s) (default: loop, uniform, lion); loop@N judges at most N cases a round; loop%P gets P% of the budget (budget-to-match); seeds: no new data (the baseline).")] = None,
    first_seed: Annotated[int, typer.Option(min=0, help="First seed (development runs use seeds the final figures do not).")] = 0,
    out_dir: Annotated[Path | None, typer.Option(help="Where the runs go (re-running resumes); default runs/<section>.")] = None,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md and its plot.")] = True,
    student: Annotated[Path | None, typer.Option(
        "--student", exists=True, file_okay=False,
        help="A pretrained HF model folder as the student (LoRA; sized for CPU); its own BENCHMARKS.md section.")] = None,
    cost: Annotated[float | None, typer.Option(
        min=0, help="The budget in money instead of calls: every call priced by its tokens (the oracle counting "
        "them with --tokenizer) at $0.15 / $0.60 per million prompt / completion tokens; its own section.")] = None,
    tokenizer: Annotated[Path | None, typer.Option(
        exists=True, file_okay=False, help="With --cost (needed): the model folder whose tokenizer counts, e.g. the packaged "
        "SmolLM2 that `make real-models` converts into ~/.cache/lionloop/models.")] = None,
    md: Md = None,
) -> None:
    """Held-out accuracy of the loop vs. uniform expansion at an equal number of paid teacher calls (or money)."""
    from lionloop.bench import effect as effect_bench
    from lionloop.bench import effect_arms

    arms = tuple(arm) if arm else effect_arms.ARMS
    unknown = [a for a in arms if not effect_arms.known_arm(a)]
    if unknown:
        fail(f"--arm: unknown {unknown} (known: {', '.join([*effect_arms.ARMS, *effect_arms.BASELINES, *effect_arms.LEVERS])}, each "
             "optionally @N and %P, P from 1 to 100)", 2)
    if referee not in ("verifier", "llm"):
        fail(f"--referee: {referee!r} is not verifier or llm", 2)
    if cost is not None and tokenizer is None:
        fail("--cost needs --tokenizer: a model folder whose tokenizer prices each call", 2)
    md_target(write, md)
    quiet_libraries()
    setup_logging(False)
    _, text = run_bench(effect_bench.main, seeds=seeds, rounds=rounds, budget=budget, out_dir=out_dir, write=write,
                        referee=referee, extra_skills=extra_skills, arms=arms, first_seed=first_seed, md=md,
                        student=student, cost=cost, tokenizer=tokenizer)
    console.print(text, markup=False, highlight=False)


@bench_app.command("tokens")
def tokens(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories (a bench's ARM-SEED runs are also averaged per arm).")],
    tokenizer: Annotated[Path, typer.Option(
        exists=True, file_okay=False, help="An HF model folder whose tokenizer counts (e.g. the packaged SmolLM2 that "
        "`make real-models` converts into ~/.cache/lionloop/models).")],
    price_in: Annotated[float, typer.Option(min=0, help="Price per million prompt tokens.")] = 0.15,
    price_out: Annotated[float, typer.Option(min=0, help="Price per million completion tokens.")] = 0.60,
) -> None:
    """What runs' teacher calls would cost in tokens: each cached call rendered as an LLM backend
    sends it and its reply as text, counted with a real tokenizer (an offline run's calls compared
    in tokens x price, e.g. packed rewrites against single ones)."""
    from lionloop.bench import tokens as tokens_bench
    from lionloop.rundir import RunDir

    bad = [str(d) for d in run_dirs if not RunDir(d).is_run()]
    if bad:
        fail(f"not a run directory: {', '.join(bad)}", 2)
    quiet_libraries()
    typer.echo(run_bench(tokens_bench.main, run_dirs, tokenizer, price_in, price_out))


@bench_app.command("ablation")
def ablation(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per arm (runs are seeds x arms).")] = 3,
    rounds: Annotated[int, typer.Option(min=2, help="Rounds per run (generation happens in all but the last).")] = 3,
    budget: Annotated[int, typer.Option(min=10, help="Teacher calls for new data per round, per arm.")] = 120,
    arm: Annotated[list[str] | None, typer.Option("--arm", help="Arm(s) to run (default: all): lion, +rationale, "
                                                  "+socratic, +disco, +finetune_cot, +socratic-separate, all, +scott, +icl, +mt_cot, +fu_cot.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Run directories and ablation.json (resumable).")] = Path("runs/bench-ablation"),
    write: Annotated[bool, typer.Option(help="Write the table into BENCHMARKS.md (section 'Generator ablation').")] = True,
    student: Annotated[Path | None, typer.Option(
        "--student", exists=True, file_okay=False,
        help="A pretrained HF model folder as the student (LoRA; sized for CPU); its own BENCHMARKS.md section.")] = None,
    md: Md = None,
) -> None:
    """Held-out accuracy of the loop with each generator plugin on or off, at equal teacher budget,
    on the offline pack, mean ± std over seeds. Interrupted runs resume from OUT_DIR."""
    from lionloop.bench import ablation as ablation_bench

    arms = tuple(arm) if arm else ablation_bench.ARMS
    unknown = [a for a in arms if a not in ablation_bench.ARMS]
    if unknown:
        fail(f"--arm: unknown {unknown} (known: {', '.join(ablation_bench.ARMS)})", 2)
    quiet_libraries()
    setup_logging(False)
    _, text = run_bench(ablation_bench.main, seeds=seeds, rounds=rounds, budget=budget, out_dir=out_dir, arms=arms,
                        write=write, md=md, student=student)
    console.print(text, markup=False, highlight=False)


@bench_app.command("trainers")
def trainers(
    teacher_model: Annotated[Path, typer.Option(
        "--teacher-model", exists=True, file_okay=False,
        help="The white-box teacher: an HF folder, with the tiny student's tokenizer or (GOLD) another (python -m "
        "lionloop.testing.white_box --out DIR builds one).")],
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per arm (runs are seeds x arms).")] = 1,
    rounds: Annotated[int, typer.Option(min=2, help="Rounds per run.")] = 3,
    budget: Annotated[int, typer.Option(min=10, help="Teacher calls for new data per round, per arm.")] = 120,
    arm: Annotated[list[str] | None, typer.Option("--arm", help="Arm(s) to run (default: all): trl, gkd, gkd+sft, minillm, "
                                                  "minillm+sft.")] = None,
    out_dir: Annotated[Path, typer.Option(help="Run directories and trainers.json (resumable).")] = Path("runs/bench-trainers"),
    write: Annotated[bool, typer.Option(help="Write the table into BENCHMARKS.md (section 'Trainer ablation').")] = True,
    md: Md = None,
) -> None:
    """Held-out accuracy with SFT (trl) against the white-box trainers (gkd, minillm) at equal
    text-teacher budget, on the offline pack with the tiny student. Interrupted runs resume."""
    from lionloop.bench import trainers as trainers_bench

    arms = tuple(arm) if arm else trainers_bench.ARMS
    unknown = [a for a in arms if a not in trainers_bench.ARMS]
    if unknown:
        fail(f"--arm: unknown {unknown} (known: {', '.join(trainers_bench.ARMS)})", 2)
    quiet_libraries()
    setup_logging(False)
    _, text = run_bench(trainers_bench.main, teacher_model, seeds=seeds, rounds=rounds, budget=budget,
                        out_dir=out_dir, arms=arms, write=write, md=md)
    console.print(text, markup=False, highlight=False)


@bench_app.command("dedup")
def dedup(
    candidates: Annotated[int, typer.Option(min=1)] = 6000,
    pools: Annotated[str, typer.Option(help="Pool sizes, comma-separated.")] = "5000,50000",
    rouge_sample: Annotated[int, typer.Option(min=1, help="Candidates ROUGE-L is timed on (then extrapolated).")] = 120,
    pairs: Annotated[int, typer.Option(min=10, help="Labelled pairs per kind.")] = 200,
    large_pool: Annotated[int, typer.Option(min=0, help="The large pool (synthetic vectors, the run's IVF index "
                                                        "vs exact search and ROUGE-L); 0 skips it.")] = 1_000_000,
    recall_queries: Annotated[int, typer.Option(min=1, help="Large pool: candidates recall is measured on "
                                                            "(exact search of each).")] = 2000,
    hnsw_pool: Annotated[int, typer.Option(min=0, help="Large pool: HNSW (and IVF beside it) on this many "
                                                       "vectors (building HNSW on a million takes long on a CPU); 0 skips.")] = 200_000,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
    md: Md = None,
) -> None:
    """Lion's ROUGE-L >= 0.7 dedup vs. embeddings + FAISS: time and recall on labelled pairs; and a
    million-instruction pool: time vs ROUGE-L, recall@1 of the approximate index vs exact, memory.
    `--pools none` runs the large pool only, `--large-pool 0` the small pools only."""
    from lionloop.bench import dedup as dedup_bench
    from lionloop.bench import dedup_large

    sizes: tuple[int, ...] = ()
    if pools.strip().lower() != "none":
        try:
            sizes = tuple(int(x) for x in pools.split(","))
        except ValueError:
            fail(f"--pools: comma-separated integers or none expected, got {pools!r}", 2)
    md_file = md_target(write, md)
    quiet_libraries()
    if sizes:
        d = run_bench(dedup_bench.run, candidates, sizes, rouge_sample, pairs)
        cmd = f"lionloop bench dedup --candidates {candidates} --pools {pools} --rouge-sample {rouge_sample} --pairs {pairs}"
        publish("dedup", dedup_bench.report(d, cmd), md_file)
    if large_pool:
        big = run_bench(dedup_large.run, pool_size=large_pool, n_cands=candidates, recall_n=min(recall_queries, candidates),
                        hnsw_pool=min(hnsw_pool, large_pool))
        cmd = (f"lionloop bench dedup --pools none --candidates {candidates} --large-pool {large_pool} "
               f"--recall-queries {recall_queries} --hnsw-pool {hnsw_pool}")
        publish("dedup-large", dedup_large.report(big, cmd), md_file)


@bench_app.command("loop")
def loop(
    run_dir: Annotated[str | None, typer.Option(help="Measure this finished run instead of running the demo.")] = None,
    rounds: Annotated[int, typer.Option(min=1)] = 4,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
    md: Md = None,
) -> None:
    """Share of each demo round's wall time outside teacher calls, training and generation."""
    import time

    from lionloop.bench.loop import overhead, overhead_report

    md_file = md_target(write, md)
    quiet_libraries()
    if run_dir is None:
        from lionloop.loop.presets import demo_config
        from lionloop.loop.runner import start

        run_dir = f"runs/bench-loop-{time.strftime('%Y%m%d-%H%M%S')}"
        run_bench(start, demo_config(rounds=rounds, run_dir=Path(run_dir)))
    text = overhead_report(run_bench(overhead, Path(run_dir)), f"lionloop bench loop --rounds {rounds}")
    publish("loop", text, md_file)


@bench_app.command("student")
def student(
    prompts: Annotated[int, typer.Option(min=1)] = 280,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
    md: Md = None,
) -> None:
    """Student evaluation: batched generation vs. one prompt at a time (same prompts)."""
    from lionloop.bench.loop import student_eval, student_eval_report

    md_file = md_target(write, md)
    quiet_libraries()
    text = student_eval_report(run_bench(student_eval, prompts), f"lionloop bench student --prompts {prompts}")
    publish("student", text, md_file)


@bench_app.command("threads")
def threads(
    repeat: Annotated[int, typer.Option(min=1, help="Runs per setting (interleaved; medians reported).")] = 3,
    setting: Annotated[list[str] | None, typer.Option("--setting", help="Setting(s) to run (default: all).")] = None,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
    md: Md = None,
) -> None:
    """The student's torch threads and OpenMP wait policy: training and evaluation, whole-process, side by side."""
    from lionloop.bench import threads as threads_bench

    chosen = tuple(setting) if setting else tuple(threads_bench.SETTINGS)
    unknown = [s for s in chosen if s not in threads_bench.SETTINGS]
    if unknown:
        fail(f"--setting: unknown {unknown} (known: {', '.join(threads_bench.SETTINGS)})", 2)
    md_file = md_target(write, md)
    results = run_bench(threads_bench.run, repeat, chosen)
    publish("threads", threads_bench.report(results, f"lionloop bench threads --repeat {repeat}"), md_file)


@bench_app.command("resume")
def resume(
    rounds: Annotated[int, typer.Option(min=2)] = 3,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
    md: Md = None,
) -> None:
    """Teacher calls repaid after kill -9 inside each teacher-paying stage (target 0)."""
    import time

    from lionloop.bench.common import paid_calls
    from lionloop.bench.loop import resume_cost, resume_report
    from lionloop.loop.presets import demo_config
    from lionloop.loop.runner import start

    md_file = md_target(write, md)
    quiet_libraries()
    out = Path(f"runs/bench-resume-{time.strftime('%Y%m%d-%H%M%S')}")
    cfg = demo_config(rounds=rounds)
    # Simulated teacher latency makes the teacher stages long enough to be killed inside.
    cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"latency_ms": 2.0})})
    targets = [(0, "bootstrap"), (1, "discriminate"), (1, "generate"), (1, "curate"), (2, "imitate"),
               (2, "discriminate"), (2, "curate")]
    d = run_bench(resume_cost, cfg, [t for t in targets if t[0] < rounds], out)
    base = out.with_name(out.name + "-baseline")
    run_bench(start, cfg.model_copy(update={"run_dir": base}))
    text = resume_report(d, run_bench(paid_calls, base)[0], f"lionloop bench resume --rounds {rounds}")
    publish("resume", text, md_file)


@bench_app.command("scale")
def scale(
    sizes: Annotated[str, typer.Option(help="Pool sizes to measure at, comma-separated.")] = "10000,100000,300000,1000000",
    batch: Annotated[int, typer.Option(min=10, help="Candidates per round.")] = 10_000,
    index_kind: Annotated[str, typer.Option("--index-kind", help="dedup.index.kind: auto, flat, ivf or hnsw.")] = "auto",
    search: Annotated[bool, typer.Option(help="Time `pool search` (loads MiniLM).")] = True,
    grow: Annotated[str, typer.Option(help="curate: every round through the curate calls (an hour and more to 1M on "
                                           "2 cores); bulk: rounds between sizes written without dedup, the last 3 "
                                           "before each size curated.")] = "bulk",
    out_dir: Annotated[Path | None, typer.Option(help="The run directory to grow (must not hold a pool; default "
                                                      "runs/bench-scale-<time>).")] = None,
    write: Annotated[bool, typer.Option(help="Update BENCHMARKS.md.")] = True,
    md: Md = None,
) -> None:
    """Grow a synthetic pool to a million instructions through the curate stage's store and index
    calls; per size: curate time, SQLite and index size, memory, pool stats/list/search and report time."""
    import time

    from lionloop.bench import scale as scale_bench
    from lionloop.bench.scale_report import report as scale_report

    try:
        steps = tuple(int(x) for x in sizes.split(","))
    except ValueError:
        fail(f"--sizes: comma-separated integers expected, got {sizes!r}", 2)
    if grow not in ("bulk", "curate"):
        fail(f"--grow: {grow!r} is not bulk or curate", 2)
    if index_kind not in ("auto", "flat", "ivf", "hnsw"):
        fail(f"--index-kind: {index_kind!r} is not auto, flat, ivf or hnsw", 2)
    md_file = md_target(write, md)
    quiet_libraries()
    setup_logging(False)
    run_dir = out_dir or Path(f"runs/bench-scale-{time.strftime('%Y%m%d-%H%M%S')}")
    d = run_bench(scale_bench.run, run_dir, steps, batch, index_kind=index_kind, search=search, grow=grow,
                  on_progress=lambda s: console.print(s, markup=False, highlight=False))
    cmd = f"lionloop bench scale --sizes {sizes} --batch {batch}" + (f" --index-kind {index_kind}" if index_kind != "auto" else "") + (f" --grow {grow}" if grow != "bulk" else "")
    publish("scale", scale_report(d, cmd), md_file)
