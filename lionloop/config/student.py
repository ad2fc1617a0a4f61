"""Config sections of the student side: the student model, LoRA, the white-box teacher, the
imitate stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lionloop.config.section import _Section


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
    thinking: Literal["drop", "learn"] = Field(
        "drop",
        description="A reasoning teacher's thinking (<think>...</think> before its answer). drop: the student "
        "learns the answer alone. learn: each training row the teacher answered holds its thinking, then the "
        "answer (R1-style distillation: `<think>...</think>` and the answer), and the thinking the student writes "
        "is cut from its output before its answer is checked, judged or stored (generate.self_answers is then "
        "off: the student's own rows would hold no thinking). Give the thinking room: max_new_tokens, max_length "
        "(a row of thinking and answer longer than max_length is left out of training, not cut).",
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
    steps_per_round: int = Field(
        300, ge=1, description="Optimizer steps per imitate stage, where epochs_per_round is null (the "
        "default for a pretrained student; left unset, the tiny student gets epochs_per_round instead).",
    )
    epochs_per_round: float | None = Field(
        None, gt=0,
        description="Steps that scale with the data: each imitate stage trains ceil(epochs x rows / batch_size) "
        "steps over the train pool, so a round with more rows trains longer, instead of the same "
        "steps_per_round every round. null: steps_per_round. Default: 12 for the tiny student where neither "
        "this nor steps_per_round is set (BENCHMARKS.md 1), steps_per_round for a pretrained one.",
    )
    min_steps_per_round: int = Field(
        0, ge=0,
        description="With epochs_per_round: at least this many steps in a stage, so the first rounds' few rows "
        "still train the student far enough for the referee's first judgement to mean something. 0: no floor.",
    )
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
