"""`train.options` of the `gkd` and `minillm` trainers (plugins/trainer_distill.py), checked at
start-up: the options lionloop defines, and any other key only where it is a field of TRL's
DistillationConfig or GOLDConfig that lionloop does not set itself."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from lionloop import OptionError

from .trainer_gold import CrossTokenizerOptions, distillation_fields, gold_fields
from .trainer_trl import SET_BY_LIONLOOP

# DistillationConfig fields lionloop sets from its own config or these options.
SET_HERE = {
    **{k: v for k, v in SET_BY_LIONLOOP.items() if k not in ("completion_only_loss", "max_length", "eos_token")},
    "beta": "use train.options.beta",
    "temperature": "use train.options.temperature",
    "max_completion_length": "use train.options.max_completion_length",
    "teacher_model_name_or_path": "use train.teacher_model.path",
    "teacher_model_server_url": "use train.teacher_model.server_url",
    "loss_top_k": "use train.teacher_model.server_top_k",
}


class GKDOptions(CrossTokenizerOptions):
    """`train.options` of the gkd trainer."""

    model_config = ConfigDict(extra="allow", frozen=True)

    beta: float = Field(0.5, ge=0, le=1, description="Generalised JSD interpolation: 0 forward KL, 0.5 JSD, 1 reverse KL.")
    lmbda: float = Field(
        0.5, ge=0, le=1,
        description="On-policy share: the chance a generation batch is sampled by the student; otherwise it is "
        "the pool's teacher answers (GKD's lambda).",
    )
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of both distributions, and of on-policy sampling.")
    max_completion_length: int | None = Field(
        None, ge=1, description="Max tokens of a sampled (or cut teacher) completion. Default: student.max_new_tokens.",
    )
    sft_share: float = Field(
        0.0, ge=0, lt=1,
        description="Share of train.steps_per_round trained first by SFT on the pool's teacher answers (the trl "
        "trainer, row weights included) before distillation continues from those weights.",
    )
    kind_weights: dict[str, float] = Field(
        default_factory=dict,
        description="{kind: factor}: as in the trl trainer; 0 leaves a kind out of both phases.",
    )

    @model_validator(mode="after")
    def _known_fields(self) -> GKDOptions:
        if any(w < 0 for w in self.kind_weights.values()):
            raise OptionError("kind_weights", "weights must be >= 0")
        extra = self.model_extra or {}
        for key in extra:
            if key in SET_HERE:
                raise OptionError(key, f"set by lionloop: {SET_HERE[key]}")
        if extra:
            known = distillation_fields() | gold_fields()
            for key in extra:
                if key not in known:
                    raise OptionError(key, f"not an option of the {self.method()} trainer nor a field of TRL's "
                                      "DistillationConfig or GOLDConfig")
        return self

    @classmethod
    def method(cls) -> str:
        return "gkd"


class MiniLLMOptions(GKDOptions):
    """`train.options` of the minillm trainer: reverse KL (beta 1) on the student's own samples (lmbda 1)."""

    beta: float = Field(1.0, ge=0, le=1, description="Fixed at 1 (reverse KL): use the gkd trainer for others.")
    lmbda: float = Field(1.0, ge=0, le=1, description="Fixed at 1 (on-policy): use the gkd trainer for others.")

    @model_validator(mode="after")
    def _reverse_kl_on_policy(self) -> MiniLLMOptions:
        if self.beta != 1.0:
            raise OptionError("beta", "minillm is reverse KL (beta 1); use train.trainer: gkd for another beta")
        if self.lmbda != 1.0:
            raise OptionError("lmbda", "minillm is on-policy (lmbda 1); use train.trainer: gkd for another lmbda")
        return self

    @classmethod
    def method(cls) -> str:
        return "minillm"
