"""Shared bits of the benchmarks: machine facts, mean ± std, BENCHMARKS.md sections, and what a
run directory says about its paid calls and its events."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from lionloop.errors import LionloopError
from lionloop.rundir import RunDir

# The source checkout this package runs from (lionloop/bench/common.py -> the repository root).
SOURCE_ROOT = Path(__file__).resolve().parents[2]
# The packages a section's machine line names beside torch: the ones a training run's figures hang on.
KEY_PACKAGES = ("transformers", "trl", "accelerate", "peft", "datasets", "numpy")
# The kernels a benchmark computes with, pinned to AVX2 where the processor has it: torch's own
# vector kernels (ATen), MKL's matrix products (its Conditional Numerical Reproducibility branch) and
# oneDNN's JIT. Left to choose, each takes the widest the processor has, and the same commit and
# packages train the tiny student to other figures on another kind of machine (§1b, 2026-12-04: up
# to ~2 points a run between two 2-core "AMD EPYC" machines; on one machine, SSE kernels instead of
# AVX2 moved uniform's seed 0 on seven skills from 74.6 to 77.1, §1). Pinned, machines of either
# kind run the same code paths. A variable the user set is left alone (`pin_kernels`).
KERNEL_PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


class BenchError(LionloopError, RuntimeError):
    """A benchmark cannot run or cannot write its figures; the message says why."""


def benchmarks_md(path: Path | None = None) -> Path:
    """The BENCHMARKS.md the figures go to: `path` (`--md`), else the source checkout's.

    Refuses (BenchError) when there is no such file, rather than writing a stray one wherever the
    command runs: an installed package has no checkout to write into.
    """
    md = Path(path) if path is not None else SOURCE_ROOT / "BENCHMARKS.md"
    if not md.is_file():
        where = f"{md} does not exist" if path is not None else f"no BENCHMARKS.md in the source checkout ({SOURCE_ROOT})"
        raise BenchError(f"{where}: pass --md PATH to an existing BENCHMARKS.md, or --no-write")
    return md


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The processor's feature flags (empty where /proc/cpuinfo cannot be read)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def pin_kernels(environ: Any = os.environ, flags: set[str] | None = None) -> dict[str, str]:
    """Pin the kernels (KERNEL_PINS) in `environ` before torch loads, where the processor has AVX2;
    a variable already set is kept. Returns the pins set (empty: none, e.g. on ARM)."""
    if "avx2" not in (cpu_flags() if flags is None else flags):
        return {}
    pinned = {k: v for k, v in KERNEL_PINS.items() if k not in environ}
    environ.update(pinned)
    return pinned


def kernels(environ: Any = os.environ) -> str:
    """The vector kernels torch computes with (AVX2, AVX512...), and whether they are pinned."""
    import torch

    picked = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()
    pins = [f"{k}={environ[k]}" for k in KERNEL_PINS if k in environ]
    return f"{picked}, pinned ({', '.join(pins)})" if pins else f"{picked}, not pinned"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "kernels": kernels(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "packages": {name: installed().get(name, "-") for name in KEY_PACKAGES},
        "env": environment(),
        "commit": source_commit(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def installed() -> dict[str, str]:
    """Every installed distribution's version, by canonical name (PEP 503)."""
    return {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


@cache
def environment() -> str:
    """A short digest of every installed package's version: runs with the same digest ran on the same
    packages; runs with different ones are not expected to repeat each other to the decimal."""
    pins = "\n".join(f"{n}=={v}" for n, v in sorted(installed().items()))
    return hashlib.sha1(pins.encode()).hexdigest()[:8]


def lock_pins(lock: Path | None = None) -> dict[str, str] | None:
    """The lock file's pins (`name==version` lines, comments dropped) by canonical name; None where
    there is no lock file (an installed package has no checkout)."""
    lock = lock or SOURCE_ROOT / "lock.txt"
    try:
        lines = lock.read_text().splitlines()
    except OSError:
        return None
    pins = {}
    for line in lines:
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[_canonical(name)] = version.strip()
    return pins


def lock_drift(lock: Path | None = None) -> list[str] | None:
    """Where the installed packages differ from the lock file's pins (`name installed (lock pinned)`),
    [] where they all match; None where there is no lock file."""
    pins, have = lock_pins(lock), installed()
    if pins is None:
        return None
    return [f"{name} {have.get(name, 'missing')} (lock {version})" for name, version in pins.items()
            if have.get(name) != version]


def source_commit() -> str:
    """The source checkout's commit (short hash; '' outside a git checkout), with a "+" where the
    code (lionloop, plugins, stores) differs from it: a run made then is not that commit's."""
    git = ["git", "-C", str(SOURCE_ROOT)]
    try:
        rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "lionloop", "plugins",
                                  "stores"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
    return f"{rev}+" if rev and changed else rev


def recorded(results: dict[str, dict[Any, list[dict[str, Any]]]], key: str, missing: str | None = None) -> list[str]:
    """What a benchmark's runs recorded under `key` (each run's last round; `run_arms` records the
    commit, the environment and the kernels), sorted, each once; `missing`: the label of runs that
    recorded nothing there (made before it was recorded), else they are left out."""
    return sorted({runs[-1].get(key) or missing for by_seed in results.values() for runs in by_seed.values()
                   if runs and (runs[-1].get(key) or missing)})


def run_commits(results: dict[str, dict[Any, list[dict[str, Any]]]]) -> list[str]:
    """The commits a benchmark's runs were made at."""
    return recorded(results, "commit")


def machine_line(runs_at: Sequence[str] = (), envs: Sequence[str] = (), kernels_of_runs: Sequence[str] = ()) -> str:
    """Date, commit, machine and packages; `runs_at`: the commits the runs were made at, named where
    they are not the commit the section is written at (a benchmark resumed or written after later
    commits); `envs`: the environments (`environment()`) the runs were made in, likewise;
    `kernels_of_runs`: the kernels (`kernels()`) they computed with, likewise."""
    m = machine()
    cpu = f"{m['cpu']}, torch kernels {m['kernels']}"
    if kernels_of_runs and list(kernels_of_runs) != [m["kernels"]]:
        mixed = "; NOT ONE KIND" if len(kernels_of_runs) > 1 else ""
        cpu = f"{m['cpu']}, torch kernels {' / '.join(kernels_of_runs)} (the runs{mixed}; written with {m['kernels']})"
    commit = m["commit"] or "?"
    if runs_at and list(runs_at) != [m["commit"]]:
        commit = f"{', '.join(runs_at)} (the runs; written at {commit})"
    env = f"environment {m['env']}"
    if envs and list(envs) != [m["env"]]:
        env = (f"environment {', '.join(envs)} (the runs{'; NOT ONE ENVIRONMENT' if len(envs) > 1 else ''}; "
               f"written in {m['env']})")
    drift = lock_drift()
    if drift is not None:
        env += f", lock.txt's pins except {', '.join(drift)}" if drift else ", lock.txt's pins"
    packages = ", ".join(f"{name} {version}" for name, version in m["packages"].items())
    return (f"{m['date']}, commit {commit}: {m['cores']} cores ({cpu}), GPU {m['gpu']}, "
            f"Python {m['python']}, torch {m['torch']}, {packages}; {env}")


def mean_std(xs: Sequence[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def t_interval(xs: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The `level` confidence interval of the mean of `xs` (Student's t, n - 1 degrees of freedom);
    None under two values. For paired differences over seeds: whether a lead is told from zero."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return None
    from scipy.stats import t  # imported here: only the reports need it

    m, s = mean_std(xs)
    half = float(t.ppf((1 + level) / 2, len(xs) - 1)) * s / len(xs) ** 0.5
    return m - half, m + half


def pm(xs: Sequence[float], pct: bool = True) -> str:
    m, s = mean_std(xs)
    if m != m:  # NaN
        return "-"
    return f"{100 * m:.1f} ± {100 * s:.1f}" if pct else f"{m:.3g} ± {s:.2g}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# A pretrained `--student` trained with LoRA, sized for 2 CPU cores (SmolLM2-135M trains at ~60-150
# tokens/s here: a step of 8 rows takes 2-5 s): the training every benchmark's `--student` shares.
LORA_TRAIN: dict[str, Any] = {"steps_per_round": 16, "batch_size": 8, "learning_rate": 5e-4, "warmup_steps": 2,
                              "lora": {"enabled": True, "rank": 16, "alpha": 32}}


def real_student_about(student: Path, sizes: dict[str, Any], skills: Sequence[str], prompts: str = "") -> str:
    """The sentence a `--student` section opens with: which model, trained how, on what (`sizes`: the
    benchmark's REAL_STUDENT overrides; `prompts`: what its prompts look like, if worth saying)."""
    task, train = sizes["task"], sizes["train"]
    return (f"`{Path(student).name}` as the student (LoRA rank {train['lora']['rank']}, trained and asked through "
            f"its chat template{prompts}), on skills {', '.join(skills)}: {task['seeds_per_skill']} seed instructions "
            f"and {task['eval_per_skill']} eval instructions per skill, {train['steps_per_round']} steps of "
            f"{train['batch_size']} rows per round (sized for 2 CPU cores), the oracle as teacher.")


def write_section(name: str, body: str, path: Path | None = None) -> Path:
    """Replace (or append) the section between `<!-- bench:name -->` markers in BENCHMARKS.md
    (`benchmarks_md(path)`); returns the file written."""
    md = benchmarks_md(path)
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = md.read_text()
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    md.write_text(text)
    return md


# -- what a run directory says ------------------------------------------------------------------


def events(run_dir: Path) -> list[dict[str, Any]]:
    """The run's event log (stage starts and ends), [] before it has one."""
    path = RunDir(run_dir).events
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def paid_calls(run_dir: Path) -> tuple[int, int]:
    """(paid, repaid) teacher calls of the run, as its call cache records them."""
    from lionloop.inspect.status import run_status

    calls = run_status(run_dir)["teacher_calls"]
    return calls["paid"], calls["repaid"]


def metric_of(final: dict[str, list[dict[str, Any]]]) -> str:
    """The held-out metric the runs of a benchmark report (their rows' `metric`; 'accuracy' for
    rows written before figures carried their metric's name)."""
    names = {r.get("metric") or "accuracy" for rows in final.values() for r in rows}
    if len(names) > 1:
        raise BenchError(f"the runs measured different held-out metrics ({', '.join(sorted(names))}): not comparable")
    return names.pop() if names else "accuracy"
