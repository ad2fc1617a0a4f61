"""Config sections of the teacher side: a teacher model (also the referee's and the generator
teacher's) and the referee's rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from lionloop.config.section import _Section


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
    rewrites_per_call: int = Field(
        1, ge=1, le=16,
        description="Rewrites of one mode asked in one call (batch prompting): a generator's k rewrites cost "
        "one paid call, its prompt shared; each reply is checked per rewrite. 1: one call per rewrite.",
    )
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


class RefereeConfig(_Section):
    tau: float = Field(
        1.0, ge=0, le=9,
        description="Lion's threshold: hard when teacher - student score >= tau (1-10 scale, so at most 9).",
    )
    both_orders: bool = Field(
        True,
        description="Judge (teacher, student) and (student, teacher) and average: cancels position bias. Each "
        "round measures the bias (`position` in the referee's figures: the points the first slot gets, and the "
        "share of calls the two orders alone make differently); where it is small, false halves the judge calls.",
    )
    skip_identical: bool = Field(True, description="Identical answers are easy without a judge call (saves teacher budget).")
    max_cases: int | None = Field(
        None, ge=1,
        description="Judge at most this many cases a round that need a referee call (a seeded sample); cases "
        "with identical answers are easy without one and always counted. Caps the referee's calls at "
        "max_cases (x2 with both_orders), leaving the rest of the budget for data.",
    )
    budget_share: float | None = Field(
        0.1, gt=0, le=1,
        description="With a budget (stop.max_teacher_calls), a referee that pays per call (mode llm or both) "
        "and max_cases unset: judge a seeded sample of at most this share of the round's part of what is left "
        "(the rounds still to generate share it evenly), so the referee cannot eat the calls the data needs. "
        "Judging every case (Lion) spent a 2,400-call budget on the referee alone; 0.1 (~23 cases a round "
        "there) was the best sample in a sweep, and with sample_by and generate.fill by group the loop leads "
        "uniform expansion there (BENCHMARKS.md 1c). null: every case (Lion).",
    )
    sample_by: Literal["group", "case"] = Field(
        "group",
        description="How a capped referee (max_cases or budget_share) draws its sample. group: the cap split evenly "
        "over the groups (tasks, or clusters: generate.allocation.group_by), uniformly within each, so every group "
        "the allocation steers has hard cases to expand. case: uniformly over the cases that need a judge call; "
        "the groups failing most (often one the student cannot learn) fill it. With generate.fill: group, group "
        "took the loop from break-even with uniform expansion to +3.1 points (BENCHMARKS.md 1c).",
    )
    probes_first: Literal["auto", True, False] = Field(
        "auto",
        description="With sample_by: group, a group's part of the sample is drawn from its cache-pool probes first "
        "(never trained on: what the allocation measures a group's accuracy on, and failures the student has "
        "not memorised), then from its train pool. It matters where a right answer is rarely identical to the "
        "teacher's (free-form answers, or skip_identical: false): the probes' accuracy then rests on the sample, "
        "and drawn over train and cache alike it measures groups from few probes (BENCHMARKS.md 1c: +1.2 points "
        "on development seeds, +0.6 on the final ones, with every verdict paid). With exact answers, where the "
        "right ones are judged for free, it measured +0.2 on development seeds and -3.8 on four final seeds. "
        "auto (default): probes first unless this round's identical answers outnumber the right-but-different "
        "ones the last round's paid verdicts estimate, i.e. off with exact answers, on with free-form ones from "
        "the first round.",
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
