"""The student's answers from vLLM (`student.engine`): the evaluate stage's greedy generation from
the round's checkpoint, where vLLM is installed and a GPU is present; HF `generate` otherwise.

vLLM runs in a child process (`python vllm_engine.py JOB OUT`): its engine holds GPU memory until
its process ends, and the next round trains on that GPU. The file imports nothing but the standard
library at the top, so an interpreter of another virtualenv (`student.vllm_python`, e.g. one that
pins other library versions) can run it without lionloop installed.

Same answers as HF `generate` at temperature 0: greedy decoding, the checkpoint's own dtype (vLLM
would otherwise cast float32 to float16), the same tokenizer and rendered prompts, the same
max_new_tokens; the caller cuts the text as the prompt format says (`student.prompt.answer_from`).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_warned: set[str] = set()


def engine_for(cfg: Any) -> tuple[str, str]:
    """("vllm" | "hf", why) for a StudentConfig: vLLM when asked for (or auto) and usable here."""
    if cfg.engine == "hf":
        return "hf", "student.engine: hf"
    python = getattr(cfg, "vllm_python", None)
    if python is None:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            return "hf", "vLLM is not installed"
    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:
        gpu = False
    if not gpu:
        return "hf", "no GPU (vLLM's student evaluation runs on GPUs)"
    return "vllm", f"student.engine: {cfg.engine}"


def use_vllm(cfg: Any) -> bool:
    engine, why = engine_for(cfg)
    if engine == "hf" and cfg.engine == "vllm" and why not in _warned:
        _warned.add(why)
        log.warning("student.engine: vllm: %s; the student answers with HF generate instead", why)
    return engine == "vllm"


def checkpoint_dtype(path: Path) -> str:
    """The dtype the checkpoint was saved in (what HF generate computes in), for vLLM's --dtype."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return "auto"
    return str(config.get("dtype") or config.get("torch_dtype") or "auto")


def generate_vllm(path: Path, prompts: Sequence[str], cfg: Any, progress: Callable[[int], None] | None = None,
                  python: str | Path | None = None, engine_args: dict[str, Any] | None = None) -> list[str]:
    """Greedy answers (the generated text, special tokens skipped) of the checkpoint at `path` to
    rendered `prompts`, from vLLM in a child process; the caller cuts them as its prompt format says."""
    if not prompts:
        return []
    job = {"model": str(Path(path).resolve()), "prompts": list(prompts), "max_new_tokens": int(cfg.generate_max_new_tokens()),
           "engine_args": {"dtype": checkpoint_dtype(path), "seed": 0, **(engine_args or {})}}
    interpreter = str(python or getattr(cfg, "vllm_python", None) or sys.executable)
    with tempfile.TemporaryDirectory(prefix="lionloop-vllm-eval-") as tmp:
        job_file, out_file = Path(tmp) / "job.json", Path(tmp) / "answers.json"
        job_file.write_text(json.dumps(job))
        env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
        if python is not None or getattr(cfg, "vllm_python", None) is not None:
            env.pop("PYTHONPATH", None)  # another venv: nothing of this one may leak in
        res = subprocess.run([interpreter, __file__, str(job_file), str(out_file)], env=env,
                             capture_output=True, text=True)
        if res.returncode != 0 or not out_file.exists():
            from lionloop.errors import LionloopError

            tail = " ".join((res.stderr or res.stdout)[-800:].split())
            raise LionloopError(f"student evaluation on vLLM failed (exit {res.returncode}): {tail}")
        answers = json.loads(out_file.read_text())
    if progress:
        progress(len(prompts))
    return answers


def _run(job_file: str, out_file: str) -> None:
    """The child: vLLM's offline engine, greedy, the checkpoint's dtype."""
    from vllm import LLM, SamplingParams

    job = json.loads(Path(job_file).read_text())
    llm = LLM(model=job["model"], **job["engine_args"])
    params = SamplingParams(temperature=0.0, max_tokens=job["max_new_tokens"], skip_special_tokens=True)
    outs = llm.generate(job["prompts"], params, use_tqdm=False)
    answers = [o.outputs[0].text for o in outs]
    tmp = Path(out_file).with_suffix(".tmp")
    tmp.write_text(json.dumps(answers))
    os.replace(tmp, out_file)


if __name__ == "__main__":
    _run(sys.argv[1], sys.argv[2])
