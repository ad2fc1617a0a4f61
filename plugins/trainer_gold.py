"""The cross-tokenizer path of the `gkd` and `minillm` trainers: TRL's GOLD (`trl.experimental.gold`).

Where the white-box teacher's tokenizer is not the student's (another vocabulary, other end/pad
tokens or another vocabulary size: `tokenizer_mismatch`), TRL's DistillationTrainer cannot
compare the two next-token distributions id by id, so the trainers train with TRL's GOLDTrainer
instead (Patiño et al. 2025, "Unlocking On-Policy Distillation for Any Model Family"): Universal
Logit Distillation. The taken path is chosen from the tokenizers, not by an option: with the
student's tokenizer GOLD's loss is the same generalised JSD as DistillationTrainer's, and with
another tokenizer DistillationTrainer cannot run, so there is no pair on which a switch would
choose anything (the round's figures say which trainer ran: `trl_trainer`).

What GOLD computes (TRL's code, not ours): the teacher re-reads the prompt and completion text
with its own tokenizer; the two tokenisations of the completion are aligned (`uld_alignment`:
`bytes`, GOLD's extended ULD, groups tokens at the byte boundaries both tokenizers share and
merges the probabilities of split tokens, which needs byte-level BPE tokenizers on both sides;
`positions`, the original ULD paper's positional truncation, any fast tokenizer), and the loss is
the L1 distance between the sorted probability vectors of the aligned positions. With
`uld_hybrid` (the default) the tokens both vocabularies spell alike are compared directly by
the generalised JSD with `beta` and only the rest by sorted probabilities, weighted by the share
of the teacher's vocabulary they cover (`uld_hybrid_matched_weight` / `_unmatched_weight` fix the
weights). So `beta` acts only through the hybrid loss: `minillm` on this path is on-policy ULD
with reverse KL on the shared tokens, not MiniLLM's reverse KL over the whole vocabulary.
`temperature` is the sampling temperature and both ULD softmax temperatures.

As on the same-tokenizer path: `lmbda` is the on-policy share, drawn per optimizer step from the
run's seed (so a stage resumed from a checkpoint makes the same choices), and an off-policy batch
is the pool's teacher answers (GOLD's own off-policy data: the dataset's completions); `sft_share`,
LoRA, `train.save_steps` checkpoints and `train.report_to` trackers work alike. On-policy samples
never contain a student token that spells a byte the teacher's vocabulary lacks (SmolLM2's has
no token for some control bytes): the teacher's tokenizer drops such bytes and GOLD's byte
alignment then fails, which a freshly built byte-level student sampling at random hit in its
first step. A vLLM teacher server (`train.teacher_model.server_url`) is same-tokenizer only.
"""

from __future__ import annotations

import dataclasses
import random
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from lionloop import ConfigError, PluginOptions, RunConfig, tokenizer_mismatch

# GOLDConfig fields lionloop sets on this path, and what sets them.
SET_FOR_GOLD = {
    "use_uld_loss": "on whenever the teacher's tokenizer is not the student's",
    "use_extended_uld": "use train.options.uld_alignment",
    "uld_use_hybrid_loss": "use train.options.uld_hybrid",
    "uld_student_temperature": "use train.options.temperature",
    "uld_teacher_temperature": "use train.options.temperature",
    "teacher_tokenizer_name_or_path": "the tokenizer in train.teacher_model.path",
    "lmbda": "use train.options.lmbda",
}


class CrossTokenizerOptions(PluginOptions):
    """The options of TRL's GOLD path (used only when the teacher's tokenizer is not the student's)."""

    uld_alignment: Literal["bytes", "positions"] = Field(
        "bytes",
        description="With a teacher of another tokenizer: `bytes` aligns the two tokenisations at shared byte "
        "boundaries (GOLD's extended ULD; byte-level BPE tokenizers on both sides), `positions` pairs tokens by "
        "position (the original ULD paper; any fast tokenizer, cruder).",
    )
    uld_hybrid: bool = Field(
        True,
        description="With a teacher of another tokenizer: compare tokens both vocabularies spell alike by the "
        "generalised JSD with beta, the rest by sorted probabilities (GOLD's hybrid ULD); false: sorted "
        "probabilities only, and beta has no effect.",
    )


def _experimental() -> Any:
    """trl.experimental.gold, imported without its "APIs here are unstable" warning (a refusal at
    start is one line; the docs say the path is experimental)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import trl.experimental.gold
        import trl.experimental.utils  # noqa: F401

    return trl.experimental


def gold_fields() -> set[str]:
    GOLDConfig = _experimental().gold.GOLDConfig  # noqa: N806

    return {f.name for f in dataclasses.fields(GOLDConfig)}


def distillation_fields() -> set[str]:
    from trl import DistillationConfig

    return {f.name for f in dataclasses.fields(DistillationConfig)}


def on_policy(lmbda: float, seed: int, step: int) -> bool:
    """Whether the generation batch of optimizer step `step` is the student's own samples.
    Seeded by the step (restored from a checkpoint), not drawn from a running stream: a stage
    resumed from a checkpoint makes the same choices as the run it continues."""
    return lmbda >= 1.0 or random.Random(seed * 1_000_003 + step).random() < lmbda


def _byte_level(tok: Any) -> bool:
    backend = getattr(tok, "backend_tokenizer", None)
    return backend is not None and _experimental().utils.is_byte_level_tokenizer(backend)


def unreadable_tokens(s_tok: Any, t_tok: Any) -> list[int]:
    """Student token ids that spell a byte the teacher's byte-level vocabulary has no token for
    (its tokenizer drops that byte); [] unless both tokenizers are byte-level BPE."""
    if not (_byte_level(s_tok) and _byte_level(t_tok)):
        return []
    from tokenizers import pre_tokenizers

    vocab = t_tok.get_vocab()
    missing = {ch for ch in pre_tokenizers.ByteLevel.alphabet() if ch not in vocab}
    special = set(s_tok.all_special_tokens)
    return sorted(i for piece, i in s_tok.get_vocab().items() if piece not in special and missing & set(piece))


def check_gold_pair(cfg: RunConfig, opts: CrossTokenizerOptions, method: str, why: str | None,
                    s_tok: Any, t_tok: Any) -> None:
    """At start: the extra options fit the path the tokenizers choose, and GOLD can train this
    student on this teacher. Raises a ConfigError naming the field."""
    extra = dict(opts.model_extra or {})
    teacher = cfg.train.teacher_model
    assert teacher is not None
    if why is None:  # the student's tokenizer: TRL's DistillationTrainer
        for key in extra:
            if key not in distillation_fields():
                raise ConfigError(f"train.options.{key}: a GOLDConfig field, used only with a teacher whose tokenizer "
                                  "is not the student's; this teacher has the student's (DistillationTrainer)")
        return
    path = f"train.teacher_model.path: {teacher.path}: {why}, so the {method} trainer trains with TRL's GOLD"
    if teacher.server_url:
        raise ConfigError(f"{path}, which loads the teacher in process: train.teacher_model.server_url serves only "
                          "a teacher with the student's tokenizer")
    for key in extra:
        if key in SET_FOR_GOLD:
            raise ConfigError(f"train.options.{key}: set by lionloop: {SET_FOR_GOLD[key]}")
        if key not in gold_fields():
            raise ConfigError(f"train.options.{key}: a DistillationConfig field that TRL's GOLDConfig lacks; this "
                              "teacher's tokenizer is not the student's, so the trainer is GOLD")
    for side, tok in (("the teacher's", t_tok), ("the student's", s_tok)):
        if getattr(tok, "backend_tokenizer", None) is None:
            raise ConfigError(f"{path}, which needs fast (Rust `tokenizers`) tokenizers; {side} is not one")
        if opts.uld_alignment == "bytes" and not _byte_level(tok):
            raise ConfigError(f"{path}, whose byte alignment needs byte-level BPE tokenizers and {side} is not one "
                              "(train.options.uld_alignment: positions pairs tokens by position instead)")
    if opts.uld_hybrid and not set(t_tok.get_vocab()) & set(s_tok.get_vocab()):
        raise ConfigError(f"{path}, whose hybrid loss needs tokens both vocabularies share and they share none "
                          "(set train.options.uld_hybrid: false)")


def gold_setup(
    opts: Any, teacher_path: Path, tok: Any, model: Any, device: str, seed: int,
) -> tuple[type, type, dict[str, Any], dict[str, Any]] | None:
    """None where the teacher has the student's tokenizer (DistillationTrainer's path); else
    GOLDConfig, the trainer class, GOLDConfig's settings from the options and the trainer's
    teacher arguments."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    t_tok = AutoTokenizer.from_pretrained(teacher_path)
    t_vocab = AutoConfig.from_pretrained(teacher_path).get_text_config().vocab_size
    s_vocab = model.config.get_text_config().vocab_size
    if tokenizer_mismatch(t_tok, t_vocab, tok, s_vocab, "the student") is None:
        return None
    GOLDConfig = _experimental().gold.GOLDConfig  # noqa: N806

    teacher = AutoModelForCausalLM.from_pretrained(teacher_path).to(device)
    teacher.eval()
    settings = {
        "use_uld_loss": True,
        "teacher_tokenizer_name_or_path": str(teacher_path),
        "use_extended_uld": opts.uld_alignment == "bytes",
        "uld_use_hybrid_loss": opts.uld_hybrid,
        "uld_student_temperature": opts.temperature,
        "uld_teacher_temperature": opts.temperature,
        "lmbda": opts.lmbda,
        "top_p": 1.0,  # as DistillationConfig: sample from the student's whole distribution (GOLD's default 0.95)
        # GOLDTrainer keeps no count of the tokens it trains on; the Trainer's own counter does, for
        # the batches it reads (prompt and the pool's completion, also where a student sample replaces it).
        "include_num_input_tokens_seen": "non_padding",
    }
    suppress = unreadable_tokens(tok, t_tok)
    return GOLDConfig, _gold_trainer(opts.lmbda, seed, suppress), settings, {"teacher_model": teacher}


def _gold_trainer(lmbda: float, seed: int, suppress: list[int]) -> type:
    """TRL's GOLDTrainer whose on-policy choice is `on_policy` (per optimizer step, from the seed)
    and whose student never samples a token the teacher's tokenizer cannot read back."""
    GOLDTrainer = _experimental().gold.GOLDTrainer  # noqa: N806

    class SeededGOLD(GOLDTrainer):  # type: ignore[misc, valid-type]
        on_policy_batches = 0
        off_policy_batches = 0
        suppressed_tokens = len(suppress)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if suppress:
                self.generation_config.suppress_tokens = suppress

        def _fill_buffer(self, generation_batch, buffer_steps):  # noqa: ANN001, ANN202
            # GOLD draws each slice's choice with `random.random() <= self.lmbda`: pinning lmbda to
            # 1 or -1 for this call makes that draw the seeded one.
            chosen = on_policy(lmbda, seed, self.state.global_step)
            type(self).on_policy_batches += int(chosen)
            type(self).off_policy_batches += int(not chosen)
            self.lmbda = 1.0 if chosen else -1.0
            try:
                return super()._fill_buffer(generation_batch, buffer_steps)
            finally:
                self.lmbda = lmbda

    return SeededGOLD
