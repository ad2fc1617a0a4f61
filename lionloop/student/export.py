"""`lionloop export-model`: a student checkpoint as a standalone HF folder a user can take away.

Weights with any LoRA adapter merged into its base, the tokenizer, the chat template that renders
exactly what the student was trained on (`prompt.export_chat_template`), a generation config
(greedy, stopping at EOS, the evaluated length) and the model card the caller wrote.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from lionloop.config import StudentConfig
from lionloop.errors import RunError
from lionloop.student.model import is_adapter, load, save_atomically
from lionloop.student.prompt import export_chat_template, resolve_format

log = logging.getLogger(__name__)


def export_model(checkpoint: Path, out: Path, student: StudentConfig, card: Any,
                 about: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Write the checkpoint's model to `out`; `card(prompt_format, eos) -> str` writes README.md."""
    from transformers import GenerationConfig

    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_dir():
        raise RunError(f"{checkpoint}: no student checkpoint (was this round trained?)")
    if out.exists() and any(out.iterdir()) and not force:
        raise RunError(f"{out} exists and is not empty (use --force to replace it)")
    model, tok = load(checkpoint, "cpu")  # a LoRA checkpoint comes back merged
    fmt = resolve_format(tok, student.prompt_format)
    tok.chat_template = export_chat_template(tok, fmt)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.generation_config = GenerationConfig(
        do_sample=False, max_new_tokens=student.generate_max_new_tokens(),
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        bos_token_id=getattr(tok, "bos_token_id", None),
    )
    meta = {**about, "prompt_format": fmt, "lora_merged": is_adapter(checkpoint)}

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "README.md").write_text(card(fmt, tok.eos_token))
        (tmp / "lionloop.json").write_text(json.dumps(meta, indent=2) + "\n")

    if out.exists() and not any(out.iterdir()):
        shutil.rmtree(out)
    save_atomically(out, write)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"out": str(out), "bytes": size, "parameters": sum(p.numel() for p in model.parameters()), **meta}
