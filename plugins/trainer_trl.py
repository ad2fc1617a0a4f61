"""The `trl` trainer: TRL SFTTrainer on prompt/completion rows with completion-only loss.

Rows carry a `kind` and a `weight`. When every row weighs 1 the loss is TRL's own (the mean over
all completion tokens of the batch). Otherwise each row's loss is the mean over its completion
tokens and the batch loss is the weighted mean of those: a Distilling Step-by-Step instance whose
label row weighs alpha and rationale row 1 - alpha trains on `alpha * label + (1 - alpha) *
rationale`, whatever the two targets' lengths. `train.options.kind_weights` ({kind: factor})
multiplies the weights of whole kinds (0 leaves a kind out); the other `train.options` go to
TRL's SFTConfig (`TRLOptions`: a key that is not an SFTConfig field, or one lionloop sets from its
own config, is refused when the run starts). Same seed, same rows -> same weights, weighted or
not. Nothing here lets a ValueError or a traceback reach the user: a bad option is a ConfigError
naming its path, a failed training a `TrainingError`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from lionloop import (
    ConfigError,
    Example,
    OptionError,
    PluginOptions,
    Registry,
    StudentConfig,
    TrainConfig,
    checkpoint_step,
    hookimpl,
    is_adapter,
    load_student,
    pick_device,
    render,
    resolve_format,
    save_atomically,
    set_threads,
    validate_options,
)

from .trainer_kit import (
    TrainingError,
    checkpointing,
    lora_config,
    one_line,
    row_lengths,
    tracker_dirs,
    training_callbacks,
    whole_thinking,
)

log = logging.getLogger(__name__)

# SFTConfig fields lionloop sets itself, and where to set them instead (passing one twice made
# SFTConfig raise a TypeError mid-run).
SET_BY_LIONLOOP = {
    "output_dir": "it keeps the trainer's files beside the round's checkpoint",
    "max_steps": "use train.steps_per_round",
    "per_device_train_batch_size": "use train.batch_size",
    "learning_rate": "use train.learning_rate",
    "warmup_steps": "use train.warmup_steps",
    "lr_scheduler_type": "it trains with a cosine schedule after train.warmup_steps",
    "logging_steps": "it logs the loss ten times per round",
    "save_strategy": "it saves one checkpoint per round itself",
    "save_steps": "use train.save_steps",
    "save_total_limit": "it keeps the last checkpoint of a stage, until the stage is done",
    "save_only_model": "a resumed stage needs the optimizer, scheduler and RNG states too",
    "resume_from_checkpoint": "a killed imitate stage resumes from its last checkpoint by itself",
    "report_to": "use train.report_to (one tracker run per round)",
    "run_name": "it names each round's tracker run <run name>-round-N",
    "completion_only_loss": "it trains on completions only",
    "max_length": "use student.max_length",
    "eos_token": "the student's tokenizer decides it (its end-of-turn token in chat format)",
    "seed": "use the run's seed",
    "data_seed": "use the run's seed",
    "gradient_checkpointing": "it follows student.device (on for a pretrained student on a GPU)",
    "activation_checkpointing": "it follows student.device (on for a pretrained student on a GPU)",
    "bf16": "it follows student.device (bf16 where the GPU supports it)",
    "use_cpu": "use student.device",
    "dataloader_num_workers": "it loads data in the training process (deterministic)",
    "disable_tqdm": "it reports progress itself",
    "log_level": "it reports progress itself",
}


def sft_fields() -> set[str]:
    """The names of TRL's SFTConfig fields (imports trl: only asked when options name some)."""
    import dataclasses

    from trl import SFTConfig

    return {f.name for f in dataclasses.fields(SFTConfig)}


class TRLOptions(PluginOptions):
    """`train.options` of the trl trainer: `kind_weights`, and SFTConfig fields passed through."""

    model_config = ConfigDict(extra="allow")

    kind_weights: dict[str, float] = Field(
        default_factory=dict,
        description="{kind: factor}: multiplies the loss weights of whole row kinds (0 leaves a kind out).",
    )

    @model_validator(mode="after")
    def _sft_fields_only(self) -> TRLOptions:
        extra = self.model_extra or {}
        for key in extra:
            if key in SET_BY_LIONLOOP:
                raise OptionError(key, f"set by lionloop: {SET_BY_LIONLOOP[key]}")
        if any(w < 0 for w in self.kind_weights.values()):
            raise OptionError("kind_weights", "weights must be >= 0")
        if extra:
            known = sft_fields()
            for key in extra:
                if key not in known:
                    raise OptionError(key, "not an option of the trl trainer (kind_weights) nor a field of TRL's SFTConfig")
        return self


def row_weights(examples: Sequence[Example], kind_weights: dict[str, float] | None = None) -> list[float]:
    """Each row's loss weight: its own `weight` times its kind's factor (default 1)."""
    kw = kind_weights or {}
    return [float(e.weight) * float(kw.get(e.kind, 1.0)) for e in examples]


def weighted_row_loss(per_token_loss: Any, mask: Any, weights: Any) -> Any:
    """Per-row mean of the completion-token losses, then their weighted mean over the batch.

    Rows with no completion token left (truncated away) carry no weight.
    """
    mask = mask.to(per_token_loss.dtype)
    tokens = mask.sum(-1)
    per_row = (per_token_loss * mask).sum(-1) / tokens.clamp(min=1)
    w = weights.to(per_token_loss.dtype) * (tokens > 0).to(per_token_loss.dtype)
    return (w * per_row).sum() / w.sum().clamp(min=1e-12)


def _weighted_trainer(base: type) -> type:
    """SFTTrainer that keeps a `weight` column and trains on the weighted per-row loss."""
    import torch

    class WeightedSFTTrainer(base):  # type: ignore[misc, valid-type]
        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if "weight" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "weight"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
            weights = inputs.pop("weight")
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            loss = weighted_row_loss(-outputs.log_probs, outputs.label_mask, weights)
            mode = "train" if self.model.training else "eval"
            n = outputs.label_mask.sum()
            if getattr(outputs, "is_top1", None) is not None and n > 0:
                self._metrics[mode]["mean_token_accuracy"].append((outputs.is_top1.sum() / n).item())
            return (loss, outputs) if return_outputs else loss

    class WithWeights:
        """The default collator, plus the rows' weights as a tensor."""

        def __init__(self, collate: Any) -> None:
            self.collate = collate

        def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
            out = self.collate(rows)
            out["weight"] = torch.tensor([float(r["weight"]) for r in rows], dtype=torch.float32)
            return out

    WeightedSFTTrainer.WithWeights = WithWeights
    return WeightedSFTTrainer


class TRLTrainer:
    def __init__(self, cfg: TrainConfig, student: StudentConfig, options: TRLOptions | None = None) -> None:
        self.cfg = cfg
        self.student = student
        self.options = options if options is not None else validate_options(TRLOptions, cfg.options, "train.options")

    def train(
        self,
        base: Path,
        out: Path,
        examples: Sequence[Example],
        seed: int,
        progress: Callable[..., None] | None = None,
        checkpoint_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Train; `progress(step, total)` after each step and `progress(step, total, loss)` when
        the loss is logged (ten times per round)."""
        import torch
        import transformers
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        if not examples:
            raise TrainingError("no training rows: the train pool is empty")
        weights = row_weights(examples, self.options.kind_weights)
        kept = [(e, w) for e, w in zip(examples, weights, strict=True) if w > 0]
        if not kept:
            raise ConfigError("train.options.kind_weights: every training row weighs 0")
        device = pick_device(self.student.device)
        set_threads(self.student)
        # Same seed, same threads, same data order -> same weights: resume after a crash
        # retrains to the very checkpoint the crashed run would have written.
        transformers.set_seed(seed)
        world = _world_size()
        lora = self.cfg.lora
        # LoRA: a LoRA checkpoint (policy continue) keeps training its adapter; a full model
        # (the base, or policy retrain) gets a fresh one. Under `accelerate launch` the Trainer
        # places the model on each process's device itself.
        continue_adapter = lora.enabled and is_adapter(base)
        model, tok = load_student(base, device if world == 1 else "cpu", trainable=continue_adapter)
        model.train()
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        fmt = resolve_format(tok, self.student.prompt_format)
        options = dict(self.options.model_extra or {})
        # The prompt as the student reads it: rendered here exactly as the evaluate stage does.
        prompts = [render(tok, e.prompt, fmt) for e, _ in kept]
        max_length = self.student.train_max_length()
        lengths = row_lengths(tok, prompts, [e.completion for e, _ in kept])
        keep, left_out = whole_thinking(self.student, [e for e, _ in kept], lengths, max_length, "student.max_length")
        if left_out:
            kept, prompts, lengths = ([xs[k] for k in keep] for xs in (kept, prompts, lengths))
        weighted = any(w != 1.0 for _, w in kept)
        truncated = sum(n > max_length for n in lengths)
        if truncated:
            log.warning("%d of %d training rows exceed student.max_length=%d tokens and are cut",
                        truncated, len(kept), max_length)
        data = Dataset.from_list([
            {"prompt": p, "completion": e.completion, **({"weight": w} if weighted else {})}
            for p, (e, w) in zip(prompts, kept, strict=True)
        ])
        on_gpu = device == "cuda"
        trainer_dir = out.with_name(out.name + ".trainer")  # tracker files; checkpoints may go elsewhere
        saving, resume = self._checkpointing(out, checkpoint_dir, base, kept, seed, options)
        args = _sft_config(
            SFTConfig,
            **saving,
            max_steps=self.cfg.steps_per_round,
            per_device_train_batch_size=self.cfg.batch_size // world,  # batch_size: the global batch
            learning_rate=self.cfg.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=min(self.cfg.warmup_steps, max(0, self.cfg.steps_per_round - 1)),
            logging_steps=max(1, self.cfg.steps_per_round // 10),
            report_to=list(self.cfg.report_to),
            run_name=f"{out.parent.parent.name}-{out.name}",
            completion_only_loss=True,
            max_length=max_length,
            seed=seed,
            data_seed=seed,
            # TRL 1.x turns these on by default; on CPU bf16 autocast and checkpointing made
            # a 1M-parameter model ~15x slower (1 step/s instead of 12). On a GPU a pretrained
            # student trains with both (memory for longer rows and bigger batches).
            # (transformers 5's name for it; the old `gradient_checkpointing`, which TRL sets to
            # True, warned on every round.)
            activation_checkpointing=on_gpu and self.student.base is not None,
            bf16=on_gpu and torch.cuda.is_bf16_supported(),
            use_cpu=not on_gpu,
            dataloader_num_workers=0,
            disable_tqdm=True,
            log_level="error",
            **options,
        )
        peft_config = None
        if lora.enabled and not continue_adapter:
            peft_config = lora_config(lora)

        losses: list[float] = []
        total = self.cfg.steps_per_round
        callbacks = training_callbacks(progress, total, losses, saving["save_strategy"] != "no")
        extra: dict[str, Any] = {}
        trainer_cls: Any = SFTTrainer
        if weighted:
            from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

            trainer_cls = _weighted_trainer(SFTTrainer)
            extra["data_collator"] = trainer_cls.WithWeights(DataCollatorForLanguageModeling(
                pad_token_id=tok.pad_token_id, pad_to_multiple_of=args.pad_to_multiple_of))
        try:
            with tracker_dirs(trainer_dir, self.cfg.report_to):
                trainer = trainer_cls(
                    model=model, args=args, train_dataset=data, processing_class=tok,
                    peft_config=peft_config, callbacks=callbacks, **extra,
                )
        except (ValueError, TypeError) as err:  # e.g. an SFTConfig value TRL refuses with this model
            raise ConfigError(f"train.options: TRL refused the trainer's settings: {one_line(err)}") from err
        except ImportError as err:  # a tracker in train.report_to that is not installed
            raise ConfigError(f"train.report_to: {one_line(err)}") from None
        trainer.remove_callback(transformers.PrinterCallback)
        t0 = time.time()
        try:
            with tracker_dirs(trainer_dir, self.cfg.report_to):
                result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        except (ValueError, TypeError, RuntimeError) as err:
            raise TrainingError(f"trl: training failed: {type(err).__name__}: {one_line(err)}") from err
        seconds = time.time() - t0
        trained = trainer.model
        # LoRA rounds save the adapter only (megabytes, not the whole model); it is merged over
        # its base when the student is loaded for evaluation and by `lionloop export-model`.
        if trainer.accelerator.num_processes > 1:
            _save_distributed(trainer, trained, tok, out, merged=False)
        else:
            save_atomically(out, lambda tmp: (trained.save_pretrained(tmp), tok.save_pretrained(tmp)))
        tokens = int(getattr(trainer, "_total_train_tokens", 0) or 0)
        if not tokens:  # the weighted trainer computes its own loss: estimate from the rows
            tokens = int(sum(min(n, max_length) for n in lengths) / len(lengths) * total * self.cfg.batch_size)
        figures: dict[str, Any] = {
            "steps": int(result.global_step),
            "train_loss": float(result.training_loss),
            "last_loss": losses[-1] if losses else None,
            "losses": losses,
            "rows": len(kept),
            "truncated_rows": truncated,
            **({"left_out_rows": left_out} if left_out else {}),
            "max_length": max_length,
            "prompt_format": fmt,
            "weighted": weighted,
            "seconds": round(seconds, 2),
            "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
            "threads": torch.get_num_threads(),
            **({"resumed_from_step": checkpoint_step(resume)} if resume else {}),
        }
        if lora.enabled:
            figures["lora"] = {
                "rank": lora.rank, "alpha": lora.alpha, "continued": continue_adapter,
                "trainable_params": sum(p.numel() for p in trained.parameters() if p.requires_grad),
            }
        return figures

    def _checkpointing(
        self, out: Path, folder: Path | None, base: Path, kept: Sequence[tuple[Example, float]], seed: int,
        options: dict[str, Any],
    ) -> tuple[dict[str, Any], Path | None]:
        return checkpointing(self.cfg, self.student, out, folder, base, kept, seed, options)


def _world_size() -> int:
    """Processes training together (`accelerate launch` sets WORLD_SIZE; 1 inline)."""

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return max(1, world)


def _save_distributed(trainer: Any, model: Any, tok: Any, out: Path, merged: bool) -> None:
    """Under `accelerate launch`: every process joins the gather of the weights (sharded under FSDP
    or DeepSpeed), the main process writes the checkpoint, and all wait for it."""
    acc = trainer.accelerator
    state = None if merged else acc.get_state_dict(trainer.model_wrapped)
    if acc.is_main_process:
        plain = acc.unwrap_model(model)
        save_atomically(out, lambda tmp: (plain.save_pretrained(tmp, state_dict=state), tok.save_pretrained(tmp)))
    acc.wait_for_everyone()


def _sft_config(cls: type, **kwargs: Any) -> Any:
    """SFTConfig(**kwargs); a value it refuses (an unknown scheduler, a bad optimizer name, ...)
    is a ConfigError naming `train.options`."""
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"train.options: TRL's SFTConfig refused it: {one_line(err)}") from None


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_trainer("trl", TRLTrainer, options=TRLOptions)
