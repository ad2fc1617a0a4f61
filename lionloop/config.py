"""Run configuration: one YAML file validated by pydantic; errors name the field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lionloop.errors import ConfigError


class _Section(BaseModel):
    # Unknown keys are typos far more often than intent: reject them with their path.
    model_config = ConfigDict(extra="forbid")


class TaskConfig(_Section):
    pack: str = Field("skills", description="Task pack name (registered by a plugin); gives seeds, eval set, verifier.")
    seeds_per_skill: int = Field(40, ge=1, description="Seed instructions per skill in the first train pool.")
    cache_per_skill: int = Field(
        30, ge=0,
        description="Probe instructions per skill in the cache pool: judged every round, never trained on "
        "(a tiny student memorises its train pool, so hard cases must come from instructions it has not seen).",
    )
    eval_per_skill: int = Field(40, ge=1, description="Held-out eval instructions per skill (never trained on).")
    skills: list[str] | None = Field(None, description="Restrict the pack to these skills (default: all).")
    seed_file: Path | None = Field(None, description="Optional JSONL of extra seed instructions {instruction, input?, task?}.")
    options: dict[str, Any] = Field(default_factory=dict, description="Pack-specific options.")


class TeacherConfig(_Section):
    backend: str = Field("oracle", description="Backend name: oracle (offline task pack), openai, vllm, hf, ...")
    model: str | None = Field(None, description="Model name or path for LLM backends.")
    base_urls: list[str] = Field(default_factory=list, description="OpenAI-compatible endpoints (spread for data parallelism).")
    api_key_env: str | None = Field(None, description="Name of the env var holding the API key (never the key itself).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 keeps answers reproducible.")
    max_tokens: int = Field(512, ge=1, description="Max tokens per teacher reply.")
    concurrency: int = Field(16, ge=1, description="Max requests in flight per backend.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout before a retry.")
    max_retries: int = Field(4, ge=0, description="Retries on 429/5xx/timeouts (with backoff, honouring Retry-After).")
    parse_retries: int = Field(1, ge=0, description="Re-asks when the reply cannot be parsed.")
    latency_ms: float = Field(0.0, ge=0, description="Oracle only: simulated per-call latency, for benchmarks and crash tests.")
    cost_per_1k_input: float = Field(0.0, ge=0, description="Price per 1k prompt tokens, for cost estimates.")
    cost_per_1k_output: float = Field(0.0, ge=0, description="Price per 1k completion tokens, for cost estimates.")
    cache_path: Path | None = Field(None, description="SQLite file of the call cache; share it across runs to reuse calls.")
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema",
        description="How JSON replies (judge, rewrite) are constrained: json_schema (vLLM, SGLang, OpenAI), "
        "json_object (servers without schema support) or none (prompt only); replies are parsed tolerantly either way.",
    )
    prompts_dir: Path | None = Field(None, description="Directory of .j2 files overriding the packaged prompt templates by name.")
    system_role: bool = Field(True, description="Send a system message; false folds it into the user turn (models without a system role).")
    transport: Literal["aiohttp", "openai"] = Field(
        "aiohttp",
        description="openai backend client: aiohttp (direct, fastest measured: see BENCHMARKS.md) or openai (AsyncOpenAI).",
    )
    retry_backoff_s: float = Field(0.5, ge=0, description="First backoff after a 429/5xx/timeout without Retry-After; doubles per retry.")
    max_backoff_s: float = Field(30.0, ge=0, description="Cap on a backoff without Retry-After (Retry-After itself is honoured up to 10 min).")
    batch_size: int = Field(32, ge=1, description="In-process backends (hf, vllm): prompts per generate call; each batch is cached before the next.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend-specific options. openai: extra request fields (top_p, seed, ...), part of the cache key; "
        "hf: device, dtype; vllm: engine_args for vllm.LLM plus extra SamplingParams fields.",
    )

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        # options are written to config.yaml and hashed into cache keys: no place for a key.
        bad = [k for k in v if any(s in k.lower() for s in ("api_key", "apikey", "authorization", "password", "token_secret"))]
        if bad:
            raise ValueError(f"{bad[0]!r} looks like a secret: put it in an env var and name that var in api_key_env")
        return v


class StudentConfig(_Section):
    base: Path | None = Field(None, description="HF model directory to start from; None builds the tiny offline student.")
    hidden_size: int = Field(128, ge=8, description="Tiny student width (offline default: ~1M parameters).")
    num_layers: int = Field(4, ge=1, description="Tiny student depth.")
    num_heads: int = Field(4, ge=1, description="Tiny student attention heads.")
    max_length: int = Field(64, ge=8, description="Max tokens of prompt+completion in training.")
    max_new_tokens: int = Field(16, ge=1, description="Max tokens the student generates per answer.")
    eval_batch_size: int = Field(256, ge=1, description="Prompts per batched generate call.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto takes the GPU where there is one.")
    engine: Literal["auto", "hf", "vllm"] = Field(
        "auto",
        description="How the student answers in evaluation: vllm (greedy, in a child process) where vLLM is "
        "installed and a GPU is present, else HF generate; auto picks vllm when it can, vllm warns when it cannot.",
    )
    vllm_python: Path | None = Field(None, description="Interpreter of a virtualenv with vLLM (default: this one).")


class TrainConfig(_Section):
    trainer: str = Field("trl", description="Trainer plugin name.")
    policy: Literal["continue", "retrain"] = Field(
        "continue", description="continue from last round's checkpoint, or retrain from the base each round (LLM2LLM)."
    )
    steps_per_round: int = Field(300, ge=1, description="Optimizer steps per imitate stage.")
    batch_size: int = Field(32, ge=1, description="Per-device batch size.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak LR; 1e-3 suits the tiny student (3e-3 diverged here).")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup before the cosine decay.")
    lora: bool = Field(False, description="Train LoRA adapters (PEFT) instead of all weights.")
    launcher: Literal["inline", "accelerate"] = Field(
        "inline",
        description="inline: train in the loop's process. accelerate: `accelerate launch` with accelerate_config "
        "(DDP, FSDP or DeepSpeed, multi-node where it says so); batch_size stays the global batch (docs/scaling.md).",
    )
    accelerate_config: Path | None = Field(None, description="accelerate config file (`accelerate config`); None: accelerate's default.")
    accelerate_args: list[str] = Field(default_factory=list, description="Extra `accelerate launch` arguments, e.g. [--num_processes, '4'].")
    options: dict[str, Any] = Field(default_factory=dict, description="Extra trainer arguments.")


class RefereeConfig(_Section):
    tau: float = Field(1.0, ge=0, description="Lion's threshold: hard when teacher - student score >= tau (1-10 scale).")
    both_orders: bool = Field(True, description="Judge (teacher, student) and (student, teacher) and average: cancels position bias.")
    skip_identical: bool = Field(True, description="Identical answers are easy without a judge call (saves teacher budget).")
    max_cases: int | None = Field(None, ge=1, description="Judge at most this many cache-pool cases per round.")
    last_round: bool = Field(
        True,
        description="Judge in the last round (stop.max_rounds) too. Its verdicts feed only that round's "
        "hard/easy figures, since nothing is generated after it: false saves those teacher calls.",
    )


class GeneratorConfig(_Section):
    enabled: bool = Field(True, description="Run this generator.")
    share: float = Field(
        1.0, ge=0, le=1,
        description="Share of the round's candidates (share x max_new_per_round) it may propose; its paid "
        "teacher calls are capped at that times the plugin's calls per candidate, unless options.max_calls is set.",
    )
    dedup_threshold: float | None = Field(
        None, gt=0, le=1,
        description="Cosine threshold against the pool and batch for this generator's candidates (default: "
        "the plugin's own, else dedup.threshold). The eval-set guard always uses dedup.threshold.",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Generator-specific options.")


class GenerateConfig(_Section):
    case_selection: Literal["referee", "uniform"] = Field(
        "referee",
        description="referee: generators get the referee's hard/easy cases (Lion). uniform: no judging; "
        "generators get pool instructions drawn uniformly as their cases (the 'uniform expansion' baseline).",
    )
    max_new_per_round: int = Field(400, ge=1, description="Cap on candidates per round across generators.")
    max_accepted_per_round: int | None = Field(
        None, ge=1,
        description="Cap on new teacher-answered instructions per round, after dedup (the rest are rejected "
        "as over_budget before any answer is paid): fixes the data budget for fair comparisons.",
    )
    generators: dict[str, GeneratorConfig] = Field(
        default_factory=lambda: {"lion": GeneratorConfig()},
        description="Generator plugins by name; ones not listed do not run.",
    )


class IndexConfig(_Section):
    """The FAISS index over the pool's embeddings (docs/scaling.md: figures behind the defaults)."""

    kind: Literal["auto", "flat", "ivf", "hnsw"] = Field(
        "auto", description="auto: exact search (flat) up to `above` vectors, IVF past it; or force one kind.")
    above: int = Field(200_000, ge=1, description="Pool size past which `auto` switches from exact search to IVF.")
    nprobe: int = Field(16, ge=1, description="IVF: lists searched per query (more: better recall, slower).")
    hnsw_m: int = Field(32, ge=4, description="HNSW: links per vector.")
    ef_search: int = Field(128, ge=1, description="HNSW: candidates kept while searching (more: better recall, slower).")
    gpu: bool = Field(True, description="Search on the GPUs when FAISS sees any (flat and IVF; HNSW stays on the CPU).")


class DedupConfig(_Section):
    threshold: float = Field(
        0.95, gt=0, le=1.0, description="Cosine similarity at or above which a candidate is a duplicate."
    )
    model: str | None = Field(None, description="sentence-transformers model path; None uses the bundled all-MiniLM-L6-v2.")
    batch_size: int = Field(128, ge=1, description="Sentences per embedding batch.")
    index: IndexConfig = Field(default_factory=IndexConfig, description="The FAISS index: exact, IVF or HNSW, and its search settings.")


class StopConfig(_Section):
    max_rounds: int = Field(4, ge=1, description="Stop after this many rounds.")
    max_teacher_calls: int | None = Field(None, ge=1, description="Stop when this many paid teacher calls are spent.")
    patience: int | None = Field(None, ge=1, description="Stop after this many rounds without eval gain >= min_delta.")
    min_delta: float = Field(0.0, ge=0, description="Eval gain that counts as progress for patience.")
    stop_when_no_hard: bool = Field(True, description="Stop when the referee finds no hard case.")


class RunConfig(_Section):
    name: str = Field("lionloop", description="Run name (the run directory defaults to runs/<name>).")
    seed: int = Field(0, description="Seeds data sampling, training and generation: same seed, same pool.")
    run_dir: Path | None = Field(None, description="Where the run lives; default runs/<name>.")
    task: TaskConfig = Field(default_factory=TaskConfig, description="Where seeds, eval set and verifier come from.")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher that answers instructions.")
    referee: TeacherConfig | None = Field(None, description="Separate referee model; None uses the teacher.")
    generator_teacher: TeacherConfig | None = Field(None, description="Separate model for rewrites; None uses the teacher.")
    student: StudentConfig = Field(default_factory=StudentConfig, description="The student model.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The imitate stage.")
    judge: RefereeConfig = Field(default_factory=RefereeConfig, description="The discriminate stage (Lion's referee rule).")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="The generate stage: which generator plugins, how much.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="The curate stage's near-duplicate filter.")
    stop: StopConfig = Field(default_factory=StopConfig, description="When the loop ends.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("must be a plain name without '/' or a leading '.'")
        return v

    @model_validator(mode="after")
    def _one_cache(self) -> RunConfig:
        # One call cache per run: budget and accounting read it. Separate files per role would
        # be silently split; say so instead.
        for role in ("referee", "generator_teacher"):
            sub = getattr(self, role)
            if sub is not None and sub.cache_path is not None:
                raise ValueError(f"{role}.cache_path: set the run's one cache with teacher.cache_path")
        return self

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    path = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")  # our validators name their own field path
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {path}: {msg}{more}" if path else f"{source}: {msg}{more}"


def parse_config(data: dict[str, Any] | None, source: str = "config") -> RunConfig:
    """Validate a config mapping; raise ConfigError naming the first bad field path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_config(path: Path) -> RunConfig:
    """Read and validate a YAML config file."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML ({getattr(err, 'problem', err)})") from None
    return parse_config(data, str(path))


def dump_config(cfg: RunConfig) -> str:
    """YAML of a config as run; holds env var *names* only, never secrets."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def commented_yaml(model: BaseModel | None = None, indent: int = 0) -> str:
    """The config as YAML with every field's description as a comment (for `lionloop init`)."""
    model = model if model is not None else RunConfig()
    pad = "  " * indent
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.description:
            lines.append(f"{pad}# {field.description}")
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.append(commented_yaml(value, indent + 1))
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            lines.append(f"{pad}{name}:")
            for key, sub in value.items():
                lines.append(f"{pad}  {key}:")
                lines.append(commented_yaml(sub, indent + 2))
        else:
            dumped = yaml.safe_dump({name: _plain(value)}, default_flow_style=True, sort_keys=False).strip()
            lines.append(f"{pad}{dumped.removeprefix('{').removesuffix('}')}")
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value
