"""The `trl` trainer: TRL SFTTrainer on prompt/completion rows with completion-only loss."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lionloop.config import StudentConfig, TrainConfig
from lionloop.hookspecs import hookimpl
from lionloop.records import Example
from lionloop.student import load, pick_device, save_atomically

log = logging.getLogger(__name__)


class TRLTrainer:
    def __init__(self, cfg: TrainConfig, student: StudentConfig) -> None:
        self.cfg = cfg
        self.student = student

    def train(
        self,
        base: Path,
        out: Path,
        examples: Sequence[Example],
        seed: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        import torch
        import transformers
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer

        if not examples:
            raise ValueError("no training rows: the train pool is empty")
        device = pick_device(self.student.device)
        # Same seed, same threads, same data order -> same weights: resume after a crash
        # retrains to the very checkpoint the crashed run would have written.
        transformers.set_seed(seed)
        model, tok = load(base, device)
        model.train()
        data = Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in examples])
        on_gpu = device == "cuda"
        args = SFTConfig(
            output_dir=str(out.with_name(out.name + ".trainer")),
            max_steps=self.cfg.steps_per_round,
            per_device_train_batch_size=self.cfg.batch_size,
            learning_rate=self.cfg.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=min(self.cfg.warmup_steps, max(0, self.cfg.steps_per_round - 1)),
            logging_steps=max(1, self.cfg.steps_per_round // 10),
            save_strategy="no",
            report_to=[],
            completion_only_loss=True,
            max_length=self.student.max_length,
            seed=seed,
            data_seed=seed,
            # TRL 1.x turns these on by default; on CPU bf16 autocast and checkpointing made
            # a 1M-parameter model ~15x slower (1 step/s instead of 12).
            gradient_checkpointing=False,
            bf16=on_gpu and torch.cuda.is_bf16_supported(),
            use_cpu=not on_gpu,
            dataloader_num_workers=0,
            disable_tqdm=True,
            log_level="error",
            **self.cfg.options,
        )
        peft_config = None
        if self.cfg.lora:
            from peft import LoraConfig

            peft_config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")

        losses: list[float] = []
        total = self.cfg.steps_per_round

        class _Progress(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                if progress:
                    progress(state.global_step, total)

            def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
                if logs and "loss" in logs:
                    losses.append(float(logs["loss"]))

        trainer = SFTTrainer(
            model=model, args=args, train_dataset=data, processing_class=tok,
            peft_config=peft_config, callbacks=[_Progress()],
        )
        trainer.remove_callback(transformers.PrinterCallback)
        t0 = time.time()
        result = trainer.train()
        seconds = time.time() - t0
        trained = trainer.model
        if peft_config is not None:
            trained = trained.merge_and_unload()  # plain HF checkpoints between rounds
        save_atomically(out, lambda tmp: (trained.save_pretrained(tmp), tok.save_pretrained(tmp)))
        return {
            "steps": int(result.global_step),
            "train_loss": float(result.training_loss),
            "last_loss": losses[-1] if losses else None,
            "rows": len(examples),
            "seconds": round(seconds, 2),
        }


@hookimpl
def lionloop_register(registry: Any) -> None:
    registry.add_trainer("trl", TRLTrainer)
