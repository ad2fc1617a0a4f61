"""Run configuration: one YAML file validated by pydantic; errors name the field path."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lionloop.errors import ConfigError

# numpy's seed range: transformers.set_seed passes the run's seed (plus the round) to numpy.
MAX_SEED = 2**32 - 1


def _is_number_field(annotation: Any) -> bool:
    """True for `int`, `float` and their optional forms (not `bool`, which is an int subclass)."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(a in (int, float) for a in typing.get_args(annotation))
    return False


class _Section(BaseModel):
    # Unknown keys are typos far more often than intent: reject them with their path. NaN and
    # infinities are never a setting: `judge.tau: .inf` made every case easy without a word.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic reads `true` as 1 for an int field: `steps_per_round: true` trained 1 step.
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(v, bool) and field is not None and _is_number_field(field.annotation):
            raise ValueError(f"expected a number, got {str(v).lower()}")
        return v


class TaskConfig(_Section):
    pack: str = Field("skills", description="Task pack name (registered by a plugin); gives seeds, eval set, verifier.")
    # Per-skill (per-task) counts: None takes the pack's default. The `skills` pack samples that
    # many (40 / 30 / 40); the `dataset` pack reads them as caps on a file's rows (default: all).
    seeds_per_skill: int | None = Field(
        None, ge=1, description="Seed instructions per skill (task) in the first train pool; null: the pack's "
        "default (skills: 40; dataset: every row).",
    )
    cache_per_skill: int | None = Field(
        None, ge=0,
        description="Probe instructions per skill in the cache pool: judged every round, never trained on "
        "(a tiny student memorises its train pool, so hard cases must come from instructions it has not seen); "
        "null: the pack's default (skills: 30; dataset: task.options.cache_fraction).",
    )
    eval_per_skill: int | None = Field(
        None, ge=1, description="Held-out eval instructions per skill (never trained on); null: the pack's "
        "default (skills: 40; dataset: every eval row).",
    )
    skills: list[str] | None = Field(None, description="Restrict the pack to these skills / tasks (default: all).")
    seed_file: Path | None = Field(None, description="Optional JSONL of extra seed instructions {instruction, input?, task?}.")
    options: dict[str, Any] = Field(default_factory=dict, description="Pack-specific options.")


class TeacherConfig(_Section):
    backend: str = Field("oracle", description="Backend name: oracle (offline task pack), openai, vllm, hf, ...")
    model: str | None = Field(None, description="Model name or path for LLM backends.")
    base_urls: list[str] = Field(default_factory=list, description="OpenAI-compatible endpoints (spread for data parallelism).")
    api_key_env: str | None = Field(None, description="Name of the env var holding the API key (never the key itself).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 keeps answers reproducible.")
    max_tokens: int = Field(512, ge=1, description="Max tokens per teacher reply.")
    max_reply_chars: int | None = Field(
        None, ge=1,
        description="Longest reply kept, in characters; a longer one (a faulty server) is recorded as a "
        "failure, never parsed nor trained on. Default: 32 per max_tokens.",
    )
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

    def reply_char_limit(self) -> int:
        """`max_reply_chars`, or 32 characters per token of `max_tokens` (no token is longer)."""
        return self.max_reply_chars if self.max_reply_chars is not None else 32 * self.max_tokens

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        # options are written to config.yaml and hashed into cache keys: no place for a key.
        bad = [k for k in v if any(s in k.lower() for s in ("api_key", "apikey", "authorization", "password", "token_secret"))]
        if bad:
            raise ValueError(f"{bad[0]!r} looks like a secret: put it in an env var and name that var in api_key_env")
        return v


class StudentConfig(_Section):
    base: Path | None = Field(
        None,
        description="HF model folder to start from (a pretrained model: its tokenizer's chat template is used "
        "for training rows and evaluation prompts alike); None builds the tiny offline student.",
    )
    prompt_format: Literal["auto", "chat", "plain"] = Field(
        "auto",
        description="How a prompt reaches the student, in training and evaluation alike: chat (through the "
        "tokenizer's chat template; the answer ends at the end-of-turn token), plain (the prompt text then the "
        "answer; the first line of a generated answer is kept), auto (chat when the tokenizer has a template).",
    )
    hidden_size: int = Field(128, ge=8, description="Tiny student width (offline default: ~1M parameters).")
    num_layers: int = Field(4, ge=1, description="Tiny student depth.")
    num_heads: int = Field(4, ge=1, description="Tiny student attention heads.")
    max_length: int | None = Field(
        None, ge=8,
        description="Max tokens of prompt+answer in a training row (longer rows are cut and counted in the round's "
        "`train.truncated_rows`). Default: 64 for the tiny student, 1024 for a pretrained one.",
    )
    max_new_tokens: int | None = Field(
        None, ge=1,
        description="Max tokens the student generates per answer; generation stops earlier at end of sequence "
        "(answers cut here are counted in `eval.truncated`). Default: 16 for the tiny student, 256 for a pretrained one.",
    )
    eval_batch_size: int = Field(256, ge=1, description="Prompts per batched generate call.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto takes the GPU where there is one.")
    threads: int | None = Field(
        None, ge=1,
        description="torch threads for training and generation on CPU. Default: OMP_NUM_THREADS if set, else "
        "torch's own choice (one per core; measured in BENCHMARKS.md, Threads).",
    )

    engine: Literal["auto", "hf", "vllm"] = Field(
        "auto",
        description="How the student answers in evaluation: vllm (greedy, in a child process) where vLLM is "
        "installed and a GPU is present, else HF generate; auto picks vllm when it can, vllm warns when it cannot.",
    )
    vllm_python: Path | None = Field(None, description="Interpreter of a virtualenv with vLLM (default: this one).")

    def train_max_length(self) -> int:
        """Max tokens of a training row (the default depends on the student)."""
        if self.max_length is not None:
            return self.max_length
        return 64 if self.base is None else 1024

    def generate_max_new_tokens(self) -> int:
        """Max tokens of a generated answer (the default depends on the student)."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return 16 if self.base is None else 256

    @model_validator(mode="after")
    def _shape(self) -> StudentConfig:
        # Llama attention splits the width into equal heads, and rotary embeddings need an even
        # head size: a bad pair failed after bootstrap had paid the teacher.
        if self.hidden_size % self.num_heads:
            raise ValueError(f"student.num_heads: {self.num_heads} does not divide student.hidden_size {self.hidden_size}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"student.num_heads: hidden_size {self.hidden_size} / num_heads {self.num_heads} = "
                f"{self.hidden_size // self.num_heads}, an odd head size (rotary embeddings need an even one)"
            )
        return self


class LoRAConfig(_Section):
    enabled: bool = Field(False, description="Train LoRA adapters (PEFT) instead of all weights.")
    rank: int = Field(16, ge=1, description="Adapter rank r.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (the update is scaled by alpha / rank).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapters' inputs.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt (e.g. [q_proj, v_proj]), or all-linear."
    )


class WhiteBoxTeacherConfig(_Section):
    """A teacher whose token distribution the student reads (the gkd and minillm trainers), beside
    the text teacher (`teacher`), which answers, judges and rewrites through text only."""

    path: Path = Field(
        ...,
        description="HF causal-LM folder of the white-box teacher: loaded in process (CPU or GPU, like the "
        "student), its next-token distribution distilled on every completion token. With the student's tokenizer "
        "(same vocabulary, special tokens and vocab size) the trainers compare the two distributions token by token "
        "(TRL's DistillationTrainer); with another tokenizer they train through TRL's experimental GOLD trainer "
        "(cross-tokenizer ULD: train.options.uld_alignment, uld_hybrid), which needs fast tokenizers on both sides "
        "and, for the default byte alignment, byte-level BPE ones. The pair is checked when the run starts.",
    )
    server_url: str | None = Field(
        None,
        description="Base URL of a `trl vllm-serve --model <path>` server hosting the same teacher: its "
        "per-token logprobs are fetched instead of loading it here (trl.experimental.server_distillation: "
        "top-1 support for beta > 0, top-k for beta 0; a GPU machine; not run by this project's tests). `path` "
        "still names the teacher's folder, whose tokenizer is checked at start: it must be the student's (GOLD, "
        "the cross-tokenizer path, loads the teacher in process).",
    )
    server_top_k: int = Field(
        1, ge=1,
        description="With server_url: teacher logprobs per token (TRL allows more than 1 only for beta 0).",
    )


class TrainConfig(_Section):
    trainer: str = Field("trl", description="Trainer plugin name.")
    policy: Literal["continue", "retrain"] = Field(
        "continue",
        description="continue from last round's checkpoint (with LoRA: keep training its adapter), or retrain "
        "from the base each round (LLM2LLM; with LoRA: a fresh adapter).",
    )
    steps_per_round: int = Field(300, ge=1, description="Optimizer steps per imitate stage.")
    batch_size: int = Field(32, ge=1, description="Per-device batch size.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak LR; 1e-3 suits the tiny student (3e-3 diverged here).")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup before the cosine decay.")
    lora: LoRAConfig = Field(
        default_factory=LoRAConfig,
        description="LoRA through PEFT: each round saves the adapter only (merged on export); `lora: true` takes "
        "the defaults.",
    )
    report_to: list[str] = Field(
        default_factory=list,
        description="Trackers TRL reports training to (tensorboard, wandb, mlflow, trackio, ...): one run per "
        "round, named <run name>-round-N, its files under RUN_DIR/student/round-N.trainer/.",
    )
    save_steps: int = Field(
        50, ge=0,
        description="Steps between checkpoints inside the imitate stage (kept in RUN_DIR/student/checkpoints, "
        "removed when the stage ends): a killed or interrupted stage resumes from the last one, not step 0. "
        "0: none.",
    )
    launcher: Literal["inline", "accelerate"] = Field(
        "inline",
        description="inline: train in the loop's process. accelerate: `accelerate launch` with accelerate_config "
        "(DDP, FSDP or DeepSpeed, multi-node where it says so); batch_size stays the global batch (docs/scaling.md).",
    )
    accelerate_config: Path | None = Field(None, description="accelerate config file (`accelerate config`); None: accelerate's default.")
    accelerate_args: list[str] = Field(default_factory=list, description="Extra `accelerate launch` arguments, e.g. [--num_processes, '4'].")
    teacher_model: WhiteBoxTeacherConfig | None = Field(
        None,
        description="White-box teacher for the gkd and minillm trainers (`{path: HF model folder}`); the trl "
        "trainer reads none.",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Extra trainer arguments.")

    @field_validator("teacher_model", mode="before")
    @classmethod
    def _teacher_path(cls, v: Any) -> Any:
        # `teacher_model: path/to/model` is the short form of `{path: path/to/model}`.
        return {"path": v} if isinstance(v, (str, Path)) else v

    @field_validator("lora", mode="before")
    @classmethod
    def _lora_flag(cls, v: Any) -> Any:
        # `lora: true` is the short form of `lora: {enabled: true}`.
        return {"enabled": v} if isinstance(v, bool) else v

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker(cls, v: Any) -> Any:
        if v is None or v == "none":
            return []
        return [v] if isinstance(v, str) else v


class RefereeConfig(_Section):
    tau: float = Field(
        1.0, ge=0, le=9,
        description="Lion's threshold: hard when teacher - student score >= tau (1-10 scale, so at most 9).",
    )
    both_orders: bool = Field(True, description="Judge (teacher, student) and (student, teacher) and average: cancels position bias.")
    skip_identical: bool = Field(True, description="Identical answers are easy without a judge call (saves teacher budget).")
    max_cases: int | None = Field(
        None, ge=1,
        description="Judge at most this many cases a round that need a referee call (a seeded sample); cases "
        "with identical answers are easy without one and always counted. Caps the referee's calls at "
        "max_cases (x2 with both_orders), leaving the rest of the budget for data.",
    )
    min_decided: float = Field(
        0.5, ge=0, le=1,
        description="Share of a round's cases the referee must decide (hard or easy). Below it the run stops "
        "with an error naming the failure reasons, and `lionloop resume` judges the round again: an outage "
        "once ended the run as 'no hard cases', converged. 0 accepts any share.",
    )
    last_round: bool = Field(
        True,
        description="Judge in the last round (stop.max_rounds) too. Its verdicts feed only that round's "
        "hard/easy figures, since nothing is generated after it: false saves those teacher calls.",
    )
    mode: Literal["llm", "verifier", "both"] = Field(
        "llm",
        description="Who calls a case hard. llm: the referee model (Lion). verifier: the task pack's verifier, "
        "wrong = hard, no teacher call (LLM2LLM). both: the referee decides and the verifier audits it "
        "(agreement, precision and recall of 'hard' per round in status and the report).",
    )


class EvaluateConfig(_Section):
    scoring: Literal["auto", "verifier", "referee", "both"] = Field(
        "auto",
        description="How the held-out set is scored. verifier: accuracy against the references (the task pack's "
        "verifier). referee: the student's answer judged against the teacher's, both orders, as Lion's relative "
        "score (student / teacher score, %) and win/tie/loss (paid calls, stage 'evaluate'). both: the two. "
        "auto: the pack's choice (a verifier where its eval rows carry references, else the referee).",
    )
    max_referee_cases: int | None = Field(
        None, ge=1,
        description="Referee scoring judges at most this many eval rows per round (the same seeded sample every "
        "round): caps its cost on a large eval set.",
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


class AllocationConfig(_Section):
    """How much of a round's candidates each group of the pool (task, or embedding cluster) gets.

    The referee still decides *which* instructions are hard (Lion's rule); this decides *how much*
    each group gets, by learning progress measured on the cache pool (Teacher-Student Curriculum
    Learning, Matiisen et al. 2017; Graves et al. 2017). Held-out eval accuracy never steers it.
    """

    mode: Literal["progress", "lion"] = Field(
        "progress",
        description="progress: each group's share of the round follows its learning progress (cache-pool "
        "accuracy gained per example spent in recent rounds), with exploration. lion: no allocation; the "
        "generators get every case in the referee's order (the paper's behaviour, which can pour the budget "
        "into a group the student cannot learn).",
    )
    group_by: Literal["auto", "task", "cluster"] = Field(
        "auto",
        description="task: the instructions' task labels; cluster: k-means (FAISS) over the pool's stored "
        "embeddings; auto: task when every pool instruction has one, else cluster.",
    )
    clusters: int = Field(8, ge=2, description="Clusters for group_by: cluster (fewer where the pool is small).")
    estimate: Literal["logistic", "slope"] = Field(
        "logistic",
        description="A group's learning progress: logistic, the accuracy one more example adds if it learns "
        "along a logistic curve (rate from its recent logit change per example, shrunk towards all groups' "
        "rate, times acc x (1 - acc): nothing for a mastered or an out-of-reach group); slope, the size of "
        "its recent accuracy change per example (Matiisen et al. 2017).",
    )
    window: int = Field(2, ge=1, description="Most recent round-to-round accuracy changes averaged into a group's progress.")
    exploration: float = Field(
        0.1, ge=0, le=1,
        description="Share of the round spread evenly over the groups, so a stalled group is retried now and "
        "then (its progress is measured again) and a noisy estimate cannot starve a group for good.",
    )
    within: Literal["referee", "frontier"] = Field(
        "referee",
        description="Which of a group's hard cases come first: referee, the referee's order (largest score gap "
        "first, as in Lion); frontier, those whose nearest cache-pool neighbours (embeddings) the student gets "
        "right, i.e. failures next to what it can already do.",
    )
    prior: Literal["frontier", "uniform", "errors"] = Field(
        "frontier",
        description="Shares before any progress is measured (the first generating round): frontier, by "
        "acc x (1 - acc) on the cache pool (neither mastered nor out of reach); uniform; errors, by hard "
        "cases (Lion's emphasis).",
    )


class GenerateConfig(_Section):
    case_selection: Literal["referee", "uniform"] = Field(
        "referee",
        description="referee: generators get the referee's hard/easy cases (Lion). uniform: no judging; "
        "generators get pool instructions drawn uniformly as their cases (the 'uniform expansion' baseline).",
    )
    allocation: AllocationConfig = Field(
        default_factory=AllocationConfig,
        description="How much of the round each task or cluster gets (with case_selection: referee).",
    )
    pace: bool = Field(
        True,
        description="With stop.max_teacher_calls: spread what is left of the budget evenly over the rounds "
        "still to generate (less the referee calls they will need), so it lasts to the last round instead "
        "of running out early; max_new_per_round still caps each round.",
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

    @model_validator(mode="after")
    def _shares(self) -> GenerateConfig:
        # Shares split max_new_per_round: past 1 the quotas overspend it; a share too small
        # for one candidate silently skipped its generator.
        enabled = {k: g for k, g in self.generators.items() if g.enabled}
        total = sum(g.share for g in enabled.values())
        if total > 1.001:  # rounded shares (1/7 x 7) may pass 1 by a hair
            raise ValueError(
                f"generate.generators: the enabled generators' shares sum to {total:g}; they split "
                "generate.max_new_per_round and must sum to at most 1"
            )
        for name, g in enabled.items():
            if 0 < g.share and int(g.share * self.max_new_per_round) == 0:
                raise ValueError(
                    f"generate.generators.{name}.share: {g.share:g} of generate.max_new_per_round "
                    f"({self.max_new_per_round}) is less than one candidate"
                )
        return self


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
    seed: int = Field(
        0, ge=0, le=MAX_SEED,
        description="Seeds data sampling, training and generation: same seed, same pool (0 to 2**32-1, numpy's range).",
    )
    run_dir: Path | None = Field(None, description="Where the run lives; default runs/<name>.")
    task: TaskConfig = Field(default_factory=TaskConfig, description="Where seeds, eval set and verifier come from.")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher that answers instructions.")
    referee: TeacherConfig | None = Field(None, description="Separate referee model; None uses the teacher.")
    generator_teacher: TeacherConfig | None = Field(None, description="Separate model for rewrites; None uses the teacher.")
    student: StudentConfig = Field(default_factory=StudentConfig, description="The student model.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The imitate stage.")
    judge: RefereeConfig = Field(default_factory=RefereeConfig, description="The discriminate stage (Lion's referee rule).")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="The evaluate stage: how the held-out set is scored.")
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="The generate stage: which generator plugins, how much.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="The curate stage's near-duplicate filter.")
    stop: StopConfig = Field(default_factory=StopConfig, description="When the loop ends.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        # It names the default run directory and prefixes the run id.
        if not v or "/" in v or "\\" in v or v.startswith(".") or not v.isprintable() or len(v) > 100:
            raise ValueError("must be a plain printable name of at most 100 characters, without '/', '\\' or a leading '.'")
        return v

    @model_validator(mode="after")
    def _seed_per_round(self) -> RunConfig:
        # Round r trains with seed + r: every one must still be a numpy seed.
        if self.seed + self.stop.max_rounds > MAX_SEED:
            raise ValueError(f"seed: {self.seed} + stop.max_rounds must stay within numpy's seed range (at most {MAX_SEED})")
        return self

    @model_validator(mode="after")
    def _something_to_generate(self) -> RunConfig:
        # Rounds after the first train on what the generators add: with none, every later
        # round repeated the first and the run ended "successfully".
        g = self.generate
        if self.stop.max_rounds > 1 and not any(x.enabled and x.share > 0 for x in g.generators.values()):
            raise ValueError(
                "generate.generators: no enabled generator with a share above 0, so rounds after the "
                "first would add nothing (enable one, or set stop.max_rounds: 1)"
            )
        return self

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
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    if path and (msg.startswith(f"{path}.") or msg.startswith(f"{path}:")):
        path = ""  # a section's own validator named the field path itself
    return f"{source}: {path}: {msg}{more}" if path else f"{source}: {msg}{more}"


def _bad_text(s: str) -> str | None:
    """Why a string cannot be used (written to SQLite, hashed, used in a path), or None."""
    if "\x00" in s:
        return "contains a NUL character"
    for i, ch in enumerate(s):
        if "\ud800" <= ch <= "\udfff":
            return f"contains a lone UTF-16 surrogate (\\u{ord(ch):04x}) at character {i + 1}"
    return None


def _check_text(data: Any, path: str, source: str) -> None:
    """Every key and string value of a parsed config must be text a file or a hash can hold."""
    if isinstance(data, dict):
        for k, v in data.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and (why := _bad_text(k)):
                raise ConfigError(f"{source}: {sub!r}: the key {why}")
            _check_text(v, sub, source)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _check_text(v, f"{path}.{i}", source)
    elif isinstance(data, str) and (why := _bad_text(data)):
        raise ConfigError(f"{source}: {path}: {why}")


def parse_config(data: dict[str, Any] | None, source: str = "config") -> RunConfig:
    """Validate a config mapping; raise ConfigError naming the first bad field path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    _check_text(data, "", source)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (the last one used to win
    without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first given on line {first})"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path) -> RunConfig:
    """Read and validate a YAML config file: UTF-8, no duplicate keys, not empty."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            f"{path}: line {line}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {col})"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        # An empty or comment-only file silently ran every default: almost always a mistake.
        raise ConfigError(f"{path}: the file holds no settings (`lionloop init` writes one with every field)")
    return parse_config(data, str(path))


def dump_config(cfg: RunConfig) -> str:
    """YAML of a config as run; holds env var *names* only, never secrets."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def commented_yaml(model: BaseModel | None = None, indent: int = 0,
                   options: dict[str, BaseModel] | None = None, path: str = "") -> str:
    """The config as YAML with every field's description as a comment (for `lionloop init`).

    `options` maps a section to its plugin's options model instance (e.g. {"task": DatasetOptions(...)}):
    that section's `options` is then written field by field with their descriptions too."""
    model = model if model is not None else RunConfig()
    pad = "  " * indent
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        here = f"{path}.{name}" if path else name
        if field.description:
            lines.append(f"{pad}# {field.description}")
        if name == "options" and options and path in options:
            value = options[path]
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.append(commented_yaml(value, indent + 1, options, here))
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            lines.append(f"{pad}{name}:")
            for key, sub in value.items():
                lines.append(f"{pad}  {key}:")
                lines.append(commented_yaml(sub, indent + 2, options, f"{here}.{key}"))
        else:
            dumped = yaml.safe_dump({name: _plain(value)}, default_flow_style=True, sort_keys=False, width=1000).strip()
            lines.append(f"{pad}{dumped.removeprefix('{').removesuffix('}')}")
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value
