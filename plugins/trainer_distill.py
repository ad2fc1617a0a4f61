"""The `gkd` and `minillm` trainers: white-box distillation on TRL's `DistillationTrainer`, or on
TRL's GOLD where the teacher's tokenizer is not the student's (plugins/trainer_gold.py says what
that path computes and what differs there).

The student is trained to match the next-token distribution of a white-box teacher
(`train.teacher_model`: an HF model folder with the student's tokenizer) under TRL's generalised
Jensen-Shannon divergence: `beta` 0 is forward KL, 0.5 JSD, 1 reverse KL (Agarwal et al. 2024,
GKD). The divergence, the chunked projection and the on-policy sampling are TRL's; lionloop only
chooses, per generation batch, where the completions come from:

* on-policy (share `lmbda`): the student samples them (TRL's own path);
* off-policy (share 1 - `lmbda`): the pool's teacher answers (the rows the `trl` trainer would
  train on), so the white-box teacher's distribution is distilled on the text teacher's answers.
  TRL's stable trainer is on-policy only; this choice is GKD's `lambda` (the experimental
  GKDTrainer draws it per step the same way).

`minillm` is reverse KL on-policy (beta 1, lmbda 1): the objective of MiniLLM (Gu et al. 2024)
as GKD writes it, token-level. MiniLLM's own optimiser (policy gradient with teacher-mixed
sampling and length normalisation) is not TRL's and is not reproduced.

Mixing with SFT in the same imitate stage: `sft_share` spends that share of `train.steps_per_round`
first on the `trl` trainer (SFT on the pool's teacher answers, with row weights and
`kind_weights`), then distils from those weights for the remaining steps. Distillation itself
weighs every row with a weight above 0 alike (TRL's divergence takes no per-row weight).

A stage killed inside distillation resumes from its last `train.save_steps` checkpoint to the same
weights while it is in its first pass over the rows; past an epoch boundary the rows come in
another (still seeded) order, since TRL's RepeatSampler draws each epoch's shuffle from a running
generator that a resumed trainer does not replay (measured: exact within an epoch, 1e-3 apart
across one).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lionloop import (
    ConfigError,
    Example,
    Registry,
    RunConfig,
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

from .trainer_distill_options import GKDOptions, MiniLLMOptions
from .trainer_gold import check_gold_pair, gold_setup, on_policy
from .trainer_kit import (
    TrainingError,
    checkpointing,
    lora_config,
    one_line,
    tracker_dirs,
    training_callbacks,
    whole_thinking,
)
from .trainer_trl import TRLOptions, TRLTrainer, row_weights

log = logging.getLogger(__name__)

def _mixed_policy(base: type, lmbda: float, seed: int, max_completion: int) -> type:
    """`base` (TRL's DistillationTrainer or its server subclass) whose generation batches are the
    student's samples with chance `lmbda`, else the rows' own completions (the pool's answers)."""

    class MixedPolicyDistillation(base):  # type: ignore[misc, valid-type]
        on_policy_batches = 0
        off_policy_batches = 0

        def _generate_and_score_completions(self, inputs):  # noqa: ANN001, ANN202
            self._pool_completions = [x["completion"] for x in inputs]
            return super()._generate_and_score_completions(inputs)

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, has_tool_images=False):  # noqa: ANN001, ANN202
            if on_policy(lmbda, seed, self.state.global_step):
                type(self).on_policy_batches += 1
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, has_tool_images)
            type(self).off_policy_batches += 1
            tok = self._tokenizer
            ids = tok(self._pool_completions, add_special_tokens=False)["input_ids"]
            # As SFT rows end: the answer, then EOS (the student learns to stop).
            return [(x + [tok.eos_token_id])[:max_completion] for x in ids]

    return MixedPolicyDistillation


class DistillTrainer:
    """White-box distillation on TRL's DistillationTrainer (gkd; minillm through its options)."""

    white_box = True  # preflight: needs train.teacher_model
    options_type: type[GKDOptions] = GKDOptions

    def __init__(self, cfg: TrainConfig, student: StudentConfig, options: GKDOptions | None = None) -> None:
        self.cfg = cfg
        self.student = student
        self.options = options if options is not None else validate_options(GKDOptions, cfg.options, "train.options")

    @classmethod
    def check_teacher(cls, cfg: RunConfig, why: str | None, s_tok: Any, t_tok: Any) -> None:
        """Preflight: the options fit the path the tokenizers choose (why: how they differ, None
        when they match), and TRL's GOLD can train the pair where they differ."""
        opts = validate_options(cls.options_type, cfg.train.options, "train.options")
        check_gold_pair(cfg, opts, opts.method(), why, s_tok, t_tok)

    def train(
        self,
        base: Path,
        out: Path,
        examples: Sequence[Example],
        seed: int,
        progress: Callable[..., None] | None = None,
        checkpoint_dir: Path | None = None,
    ) -> dict[str, Any]:
        """SFT for `sft_share` of the steps (optional), then distillation; `progress` as the trl trainer's."""
        method = self.options.method()
        if self.cfg.teacher_model is None:
            raise ConfigError(f"train.teacher_model: the {method} trainer needs a white-box teacher (an HF model folder)")
        if not examples:
            raise TrainingError("no training rows: the train pool is empty")
        total = self.cfg.steps_per_round
        sft_steps = min(total - 1, round(self.options.sft_share * total))
        figures: dict[str, Any] = {}
        if sft_steps > 0:
            base, figures["sft"] = self._sft(base, out, examples, seed, sft_steps, progress, checkpoint_dir)

        def shifted(step: int, _total: int, *loss: float) -> None:
            if progress:
                progress(sft_steps + step, total, *loss)

        distilled = self._distill(base, out, examples, seed, total - sft_steps, shifted,
                                  checkpoint_dir / "distill" if checkpoint_dir else None)
        if sft_steps > 0:
            shutil.rmtree(out.with_name(out.name + ".sft"), ignore_errors=True)
            distilled["steps"] += figures["sft"]["steps"]
            distilled["seconds"] = round(distilled["seconds"] + figures["sft"]["seconds"], 2)
        return {**distilled, **figures}

    def _sft(
        self, base: Path, out: Path, examples: Sequence[Example], seed: int, steps: int,
        progress: Callable[..., None] | None, checkpoint_dir: Path | None,
    ) -> tuple[Path, dict[str, Any]]:
        """The SFT phase through the trl trainer; its model is kept beside the round until the
        distillation phase ends, so a stage resumed during distillation does not train it again."""
        sft_out = out.with_name(out.name + ".sft")
        done = sft_out / "sft_figures.json"
        if done.is_file():
            return sft_out, json.loads(done.read_text())
        cfg = self.cfg.model_copy(update={"steps_per_round": steps, "teacher_model": None, "options": {}})
        trainer = TRLTrainer(cfg, self.student, TRLOptions(kind_weights=dict(self.options.kind_weights)))
        figures = trainer.train(base, sft_out, examples, seed, progress=progress,
                                checkpoint_dir=checkpoint_dir / "sft" if checkpoint_dir else None)
        done.write_text(json.dumps(figures))
        return sft_out, figures

    def _distill(
        self, base: Path, out: Path, examples: Sequence[Example], seed: int, steps: int,
        progress: Callable[..., None], checkpoint_dir: Path | None,
    ) -> dict[str, Any]:
        import torch
        import transformers
        from datasets import Dataset
        from transformers import AutoModelForCausalLM
        from trl import DistillationConfig, DistillationTrainer

        opts = self.options
        teacher = self.cfg.teacher_model
        assert teacher is not None
        weights = row_weights(examples, opts.kind_weights)
        kept = [(e, w) for e, w in zip(examples, weights, strict=True) if w > 0]
        if not kept:
            raise ConfigError("train.options.kind_weights: every training row weighs 0")
        device = pick_device(self.student.device)
        set_threads(self.student)
        transformers.set_seed(seed)
        lora = self.cfg.lora
        continue_adapter = lora.enabled and is_adapter(base)
        model, tok = load_student(base, device, trainable=continue_adapter)
        model.train()
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"  # TRL samples completions after left-padded prompts
        fmt = resolve_format(tok, self.student.prompt_format)
        max_completion = opts.max_completion_length or self.student.generate_max_new_tokens()
        # The pool's completions are cut at max_completion tokens, EOS included (`_mixed_policy`).
        def lengths() -> list[int]:
            return [len(x) + 1 for x in tok([e.completion for e, _ in kept], add_special_tokens=False)["input_ids"]]

        keep, left_out = whole_thinking(self.student, [e for e, _ in kept], lengths, max_completion,
                                        "train.options.max_completion_length" if opts.max_completion_length
                                        else "student.max_new_tokens")
        kept = [kept[k] for k in keep]
        data = Dataset.from_list([
            {"prompt": render(tok, e.prompt, fmt), "completion": e.completion} for e, _ in kept
        ])
        extra = dict(opts.model_extra or {})
        saving, resume = checkpointing(self.cfg, self.student, out, checkpoint_dir, base, kept, seed,
                                       {**opts.model_dump(mode="json"), "method": opts.method()})
        on_gpu = device == "cuda"
        trainer_cls: Any = DistillationTrainer
        config_cls: Any = DistillationConfig
        teacher_kw: dict[str, Any] = {}
        # Another tokenizer than the student's: TRL's GOLD (plugins/trainer_gold.py); else as below.
        gold = None if teacher.server_url else gold_setup(opts, Path(teacher.path), tok, model, device, seed)
        if gold is not None:
            config_cls, cls, gold_settings, teacher_kw = gold
            extra.update(gold_settings)
        elif teacher.server_url:
            from trl.experimental.server_distillation import (
                ServerDistillationConfig,
                ServerDistillationTrainer,
            )

            trainer_cls, config_cls = ServerDistillationTrainer, ServerDistillationConfig
            extra.update(teacher_model_server_url=teacher.server_url, loss_top_k=teacher.server_top_k)
        else:
            teacher_model = AutoModelForCausalLM.from_pretrained(teacher.path).to(device)
            teacher_model.eval()
            teacher_kw["teacher_model"] = teacher_model
        try:
            args = config_cls(
                **saving,
                max_steps=steps,
                per_device_train_batch_size=self.cfg.batch_size,
                learning_rate=self.cfg.learning_rate,
                lr_scheduler_type="cosine",
                warmup_steps=min(self.cfg.warmup_steps, max(0, steps - 1)),
                logging_steps=max(1, steps // 10),
                report_to=list(self.cfg.report_to),
                run_name=f"{out.parent.parent.name}-{out.name}",
                seed=seed,
                data_seed=seed,
                activation_checkpointing=on_gpu and self.student.base is not None,  # as the trl trainer: off on CPU
                bf16=on_gpu and torch.cuda.is_bf16_supported(),
                use_cpu=not on_gpu,
                dataloader_num_workers=0,
                disable_tqdm=True,
                log_level="error",
                beta=opts.beta,
                temperature=opts.temperature,
                max_completion_length=max_completion,
                **extra,
            )
        except (ValueError, TypeError) as err:
            raise ConfigError(f"train.options: TRL's {config_cls.__name__} refused it: {one_line(err)}") from None
        if gold is None:
            cls = _mixed_policy(trainer_cls, opts.lmbda, seed, max_completion)
        losses: list[float] = []
        callbacks = training_callbacks(progress, steps, losses, saving["save_strategy"] != "no")
        trainer_dir = out.with_name(out.name + ".trainer")
        try:
            with tracker_dirs(trainer_dir, self.cfg.report_to):
                trainer = cls(
                    model=model, args=args, train_dataset=data, processing_class=tok,
                    peft_config=lora_config(lora) if lora.enabled and not continue_adapter else None,
                    callbacks=callbacks, **teacher_kw,
                )
        except (ValueError, TypeError) as err:  # e.g. a teacher whose vocabulary is not the student's
            raise ConfigError(f"train.teacher_model: TRL refused the teacher or settings: {one_line(err)}") from err
        except ImportError as err:
            raise ConfigError(f"train.report_to: {one_line(err)}") from None
        trainer.remove_callback(transformers.PrinterCallback)
        t0 = time.time()
        try:
            with tracker_dirs(trainer_dir, self.cfg.report_to):
                result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        except (ValueError, TypeError, RuntimeError) as err:
            raise TrainingError(f"{opts.method()}: training failed: {type(err).__name__}: {one_line(err)}") from err
        seconds = time.time() - t0
        trained = trainer.model
        save_atomically(out, lambda tmp: (trained.save_pretrained(tmp), tok.save_pretrained(tmp)))
        tokens = int(trainer.state.num_input_tokens_seen or 0)
        return {
            "steps": int(result.global_step),
            "train_loss": float(result.training_loss),
            "last_loss": losses[-1] if losses else None,
            "losses": losses,
            "rows": len(kept),
            **({"left_out_rows": left_out} if left_out else {}),
            "prompt_format": fmt,
            "method": opts.method(),
            "trl_trainer": config_cls.__name__.replace("Config", "Trainer"),
            **({"uld_alignment": opts.uld_alignment, "uld_hybrid": opts.uld_hybrid,
                "suppressed_tokens": cls.suppressed_tokens} if gold is not None else {}),
            "beta": opts.beta,
            "lmbda": opts.lmbda,
            "on_policy_batches": cls.on_policy_batches,
            "off_policy_batches": cls.off_policy_batches,
            "max_completion_length": max_completion,
            "teacher_model": str(teacher.path),
            "seconds": round(seconds, 2),
            "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 and tokens else None,
            "threads": torch.get_num_threads(),
            **({"resumed_from_step": checkpoint_step(resume)} if resume else {}),
        }


class MiniLLMTrainer(DistillTrainer):
    options_type = MiniLLMOptions

    def __init__(self, cfg: TrainConfig, student: StudentConfig, options: MiniLLMOptions | None = None) -> None:
        super().__init__(cfg, student, options if options is not None else
                         validate_options(MiniLLMOptions, cfg.options, "train.options"))


@hookimpl
def lionloop_register(registry: Registry) -> None:
    registry.add_trainer("gkd", DistillTrainer, options=GKDOptions)
    registry.add_trainer("minillm", MiniLLMTrainer, options=MiniLLMOptions)
