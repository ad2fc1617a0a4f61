"""Config sections of the loop: the task pack, evaluation, generation and its allocation, dedup,
stopping."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from lionloop.config.section import _Section


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
        "the teacher answers them only where the referee needs its answer (not with judge.mode: verifier "
        "where the pack checks an answer on its own, nor with generate.case_selection: uniform). "
        "null: the pack's default (skills: 30; dataset: task.options.cache_fraction).",
    )
    eval_per_skill: int | None = Field(
        None, ge=1, description="Held-out eval instructions per skill (never trained on); null: the pack's "
        "default (skills: 40; dataset: every eval row).",
    )
    skills: list[str] | None = Field(None, description="Restrict the pack to these skills / tasks (default: all).")
    seed_file: Path | None = Field(None, description="Optional JSONL of extra seed instructions {instruction, input?, task?}.")
    options: dict[str, Any] = Field(default_factory=dict, description="Pack-specific options.")


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

    mode: Literal["progress", "lion", "fixed"] = Field(
        "progress",
        description="progress: each group's share of the round follows its learning progress (cache-pool "
        "accuracy gained per example spent in recent rounds), with exploration. lion: no allocation; the "
        "generators get every case in the referee's order (the paper's behaviour, which can pour the budget "
        "into a group the student cannot learn). fixed: the shares `weights` gives, every round (groups it "
        "does not name get only the exploration share): the tasks you care about, in the proportions you choose.",
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="mode fixed: group (task name, or c0, c1, ... for clusters) -> relative weight (>= 0), e.g. "
        "{count: 2, sort: 1}.",
    )
    group_by: Literal["auto", "task", "cluster"] = Field(
        "auto",
        description="task: the instructions' task labels; cluster: k-means (FAISS) over the pool's stored "
        "embeddings; auto: task when every pool instruction has one, else cluster.",
    )
    clusters: int = Field(8, ge=2, description="Clusters for group_by: cluster (fewer where the pool is small).")
    estimate: Literal["logistic", "ahead", "slope"] = Field(
        "logistic",
        description="A group's learning progress: logistic, the accuracy one more example adds if it learns "
        "along a logistic curve (rate from its recent logit change per example, shrunk towards all groups' "
        "rate, times acc x (1 - acc): nothing for a mastered or an out-of-reach group); ahead, logistic with "
        "acc x (1 - acc) where the group is heading (its last logit change, shrunk by its probes' noise, carried "
        "one round on: the data bought now is trained on next round); slope, the size of its recent accuracy "
        "change per example (Matiisen et al. 2017).",
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
    train_mix: float = Field(
        0.0, ge=0, le=1,
        description="The allocation steers training too: this share of the imitate stage's samples follows the "
        "last round's group shares (the rest the pool's own proportions), by repeating the rows of groups "
        "still learning fastest (no row is dropped; the steps stay train.steps_per_round). The curricula "
        "the allocation follows pick which task to *train* on (Graves et al. 2017; Matiisen et al. 2017). "
        "0: every row equally often.",
    )
    prior: Literal["frontier", "uniform", "errors"] = Field(
        "frontier",
        description="Shares before any progress is measured (the first generating round): frontier, by "
        "acc x (1 - acc) on the cache pool (neither mastered nor out of reach); uniform; errors, by hard "
        "cases (Lion's emphasis).",
    )

    @model_validator(mode="after")
    def _weights(self) -> AllocationConfig:
        for g, w in self.weights.items():
            if w < 0:
                raise ValueError(f"generate.allocation.weights.{g}: {w:g} is negative; weights are relative shares (>= 0)")
        if self.mode == "fixed" and not any(w > 0 for w in self.weights.values()):
            raise ValueError("generate.allocation.weights: mode fixed needs a positive weight for at least one "
                             "group, e.g. weights: {count: 2, sort: 1}")
        if self.weights and self.mode != "fixed":
            raise ValueError(f"generate.allocation.weights: only read with mode fixed (mode is {self.mode})")
        return self


class GenerateConfig(_Section):
    case_selection: Literal["referee", "uniform"] = Field(
        "referee",
        description="referee: generators get the referee's hard/easy cases (Lion). uniform: no judging; "
        "generators get pool instructions drawn uniformly as their cases (the 'uniform expansion' baseline).",
    )
    warmup_rounds: int = Field(
        0, ge=0,
        description="With case_selection: referee, the first N generating rounds expand pool instructions drawn "
        "uniformly (as the uniform baseline does) while the referee still judges, so the allocation has "
        "measured progress when it starts to steer. The referee's first hard cases come from a student that "
        "fails nearly everything: rewrites of them sit on the hardest instances. 0: steer from round 1.",
    )
    fill: Literal["group", "uniform", "none"] = Field(
        "group",
        description="With a teacher budget (stop.max_teacher_calls, paced): what a round's judged cases cannot "
        "fill, e.g. when a referee that pays per call judges a sample (judge.budget_share, judge.max_cases) and "
        "finds few hard cases. The fill expands pool instructions the referee did not judge this round, as the "
        "uniform baseline expands them (where every instruction was judged, as with the verifier, there are none "
        "and the referee's verdicts stand). group: each group's unused share of the allocation is filled from that "
        "group's own unjudged instructions first, so the allocation's shares hold for the whole round, then what "
        "is still unused as uniform (without an allocation, uniform alone); uniform: each generator's unused quota "
        "from the unjudged instructions drawn uniformly over the pool; none: it stays unspent this round (pacing "
        "re-spreads it over the rounds left, which may fall short too).",
    )
    allocation: AllocationConfig = Field(
        default_factory=AllocationConfig,
        description="How much of the round each task or cluster gets (with case_selection: referee).",
    )
    self_answers: bool = Field(
        True,
        description="With judge.mode: verifier: the student answers each new "
        "candidate before the teacher is asked, and where the verifier finds its answer right, that answer is "
        "the candidate's training row and no teacher call is paid for it (verifier-filtered self-training: STaR, "
        "Zelikman et al. 2022; RFT, Yuan et al. 2023). A candidate the student gets wrong, or the verifier "
        "cannot check, is answered by the teacher as before; so is every candidate of a generator whose rows "
        "are more than a plain answer (its spec's kinds). The budget then buys more candidates.",
    )
    pace: bool = Field(
        True,
        description="With stop.max_teacher_calls: spread what is left of the budget over the rounds "
        "still to generate (less the referee calls they will need), so it lasts to the last round instead "
        "of running out early; max_new_per_round still caps each round.",
    )
    pace_ratio: float = Field(
        0.6, ge=0.1, le=10.0,
        description="With pacing: each later generating round's part of the budget against the one before "
        "it. Below 1 front-loads (0.6: the rounds' parts go 1, 0.6, 0.36, ...), so data is bought early and "
        "trained on in every later round; 1 spreads what is left evenly; above 1 holds the budget back for "
        "the later, better-informed rounds. Recomputed each round from what is left.",
    )
    pace_price: Literal["mean", "last"] = Field(
        "mean",
        description="With pacing: what a candidate is priced at when a round's part of the budget is turned "
        "into candidates. mean: its paid calls (or cost) over all earlier rounds; last: over the round before "
        "(a loop whose student answers more of its own candidates each round makes them cheaper as it goes, "
        "and the mean then leaves part of the last round's budget unspent).",
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
    max_teacher_cost: float | None = Field(
        None, gt=0,
        description="Stop when the paid teacher calls' estimated cost reaches this, in the currency of the "
        "teachers' prices (each call's token counts x its teacher's cost_per_1k_input / cost_per_1k_output, a "
        "batch discount included). Paced over the rounds in money, as max_teacher_calls is in calls, and enforced "
        "in calls at the run's mean price per call so far (the first call goes alone and prices the rest): the last "
        "calls may overshoot it by how much their price differs from that mean. Needs prices on every teacher section and a backend that reports token "
        "counts (not the oracle). With max_teacher_calls too, whichever runs out first stops the run.",
    )
    patience: int | None = Field(None, ge=1, description="Stop after this many rounds without eval gain >= min_delta.")
    min_delta: float = Field(0.0, ge=0, description="Eval gain that counts as progress for patience.")
    stop_when_no_hard: bool = Field(True, description="Stop when the referee finds no hard case.")
