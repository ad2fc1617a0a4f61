"""What every lionloop TRL trainer (`trl`, `gkd`, `minillm`) trains with: checkpoints a killed
stage resumes from, the progress and no-final-save callbacks, PEFT's LoRA config, row lengths and
the rows of thinking too long to train on whole, trackers' local folders inside the run directory,
and the error a failed training raises, with its one-line text."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lionloop import (
    ConfigError,
    Example,
    LionloopError,
    StudentConfig,
    TrainConfig,
    content_id,
    resume_point,
    split_reasoning,
)

log = logging.getLogger(__name__)


class TrainingError(LionloopError, RuntimeError):
    """Training could not run or failed; the message says why."""


def checkpointing(
    cfg: TrainConfig, student: StudentConfig, out: Path, folder: Path | None, base: Path,
    kept: Sequence[tuple[Example, float]], seed: int, options: dict[str, Any],
) -> tuple[dict[str, Any], Path | None]:
    """A TRL config's output and save settings, and the checkpoint to resume from (None: step 0).

    With a checkpoint folder and `train.save_steps`, the trainer saves every save_steps steps
    (model, optimizer, scheduler, RNG states: a resumed run continues exactly), keeping the
    last only; the folder's fingerprint ties it to these rows, this base and these settings.
    """
    if folder is None or not cfg.save_steps:
        return {"output_dir": str(out.with_name(out.name + ".trainer")), "save_strategy": "no"}, None
    fingerprint = {
        "rows": content_id(*(f"{e.id}:{w!r}" for e, w in kept)), "base": str(base), "seed": seed,
        "train": cfg.model_dump(mode="json"), "student": student.model_dump(mode="json"),
        "options": options,
    }
    resume = resume_point(folder, fingerprint)
    settings = {"output_dir": str(folder), "save_strategy": "steps", "save_steps": cfg.save_steps,
                "save_total_limit": 1, "save_only_model": False}
    return settings, resume


def training_callbacks(
    progress: Callable[..., None] | None, total: int, losses: list[float], saving: bool,
) -> list[Any]:
    """The callbacks every lionloop TRL trainer runs with: `progress(step, total)` after each step
    and `progress(step, total, loss)` when the loss is logged (appended to `losses`); with
    checkpoints on (`saving`), no checkpoint after the last step."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            if progress:
                progress(state.global_step, total)

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                if progress:
                    progress(state.global_step, total, losses[-1])  # the bar shows the loss

    class _NoFinalSave(TrainerCallback):
        # The stage saves the trained model itself: a last checkpoint (optimizer included)
        # would only double what a round writes.
        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            if state.global_step >= state.max_steps:
                control.should_save = False

    return [_Progress()] + ([_NoFinalSave()] if saving else [])



def lora_config(lora: Any) -> Any:
    """PEFT's LoraConfig from `train.lora`."""
    try:
        from peft import LoraConfig
    except ImportError as err:
        raise ConfigError(f"train.lora: peft is not importable ({err}); pip install peft") from None
    return LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.target_modules, task_type="CAUSAL_LM",
    )


def row_lengths(tok: Any, prompts: Sequence[str], completions: Sequence[str]) -> list[int]:
    """Tokens of each rendered row as TRL builds it: prompt + completion + EOS."""
    ids = tok([p + c for p, c in zip(prompts, completions, strict=True)], add_special_tokens=False)["input_ids"]
    return [len(x) + 1 for x in ids]


def whole_thinking(student: StudentConfig, rows: Sequence[Example], lengths: Sequence[int] | Callable[[], Sequence[int]],
                   limit: int, limit_name: str) -> tuple[list[int], int]:
    """The indexes of the rows to train on, and how many were left out. Where the student learns
    thinking (`student.thinking: learn`), a row whose thinking and answer are longer than `limit`
    tokens (its `lengths`, counted as the trainer cuts; or a function that counts them, called only
    then) is left out, not cut: cut, it keeps the thinking, loses the block's end and the answer,
    and teaches the student to think without ever answering (R1-style sets drop them too). Plain
    rows stay, and are cut as ever. Every row left out is a TrainingError naming `limit_name`, the
    setting to raise."""
    keep = list(range(len(rows)))
    if student.thinking != "learn":
        return keep, 0
    if callable(lengths):
        lengths = lengths()
    over = {k for k in keep if lengths[k] > limit and split_reasoning(rows[k].completion)[0] is not None}
    if not over:
        return keep, 0
    if len(over) == len(rows):
        raise TrainingError(f"every training row's thinking and answer is longer than {limit_name}={limit} tokens "
                            "(student.thinking: learn leaves such rows out rather than cut their answers off): "
                            f"raise {limit_name}")
    log.warning("%d of %d training rows (thinking, then the answer) exceed %s=%d tokens: left out, not cut (cut, "
                "they would teach thinking that never reaches its answer)", len(over), len(rows), limit_name, limit)
    return [k for k in keep if k not in over], len(over)


# Where trackers write their local files unless the user said otherwise: beside the round's
# checkpoint, so one run directory holds everything (TensorBoard too: its default is under
# output_dir, which is the stage's checkpoint folder when train.save_steps is on).
_TRACKER_ENV = {"wandb": "WANDB_DIR", "mlflow": "MLFLOW_TRACKING_URI", "trackio": "TRACKIO_DIR",
                "tensorboard": "TENSORBOARD_LOGGING_DIR"}


@contextmanager
def tracker_dirs(trainer_dir: Path, report_to: Sequence[str]) -> Iterator[None]:
    set_here: list[str] = []
    for name in report_to:
        var = _TRACKER_ENV.get(name)
        if var and var not in os.environ:
            where = trainer_dir / name
            where.mkdir(parents=True, exist_ok=True)
            os.environ[var] = where.resolve().as_uri() if name == "mlflow" else str(where)
            set_here.append(var)
    try:
        yield
    finally:
        for var in set_here:
            os.environ.pop(var, None)


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
