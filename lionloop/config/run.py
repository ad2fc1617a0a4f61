"""The root of the config: RunConfig, one field per section, and the checks that span sections."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from lionloop.config.loop import DedupConfig, EvaluateConfig, GenerateConfig, StopConfig, TaskConfig
from lionloop.config.section import MAX_SEED, _Section
from lionloop.config.student import StudentConfig, TrainConfig
from lionloop.config.teacher import RefereeConfig, TeacherConfig

# train.epochs_per_round when a tiny student's config sets neither it nor steps_per_round.
TINY_STUDENT_EPOCHS = 12.0
# The train fields that set a round's steps: their default depends on the student (below).
STEP_FIELDS = frozenset({"steps_per_round", "epochs_per_round"})
# Fields whose default depends on another section: `lionloop init` writes them as comments while
# the config leaves them unset, so a file switched to a pretrained student later still gets that
# student's default.
DERIVED_DEFAULTS = frozenset(f"train.{name}" for name in STEP_FIELDS)


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
    def _tiny_student_epochs(self) -> RunConfig:
        # The tiny student trains from scratch: steps that grow with the pool suit it (BENCHMARKS.md 1,
        # both arms gain); a pretrained student keeps the fixed steps_per_round.
        if self.student.base is None and not STEP_FIELDS & self.train.model_fields_set:
            self.train.epochs_per_round = TINY_STUDENT_EPOCHS
            # Still the default, not the user's choice (commented_yaml leaves it out of init's file).
            self.train.model_fields_set.discard("epochs_per_round")
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
