"""The ImageNet bridge: an image's ImageNet labels, as text embedded with MiniLM, weighted by
their probabilities -> a vector in MiniLM's text space.

With no CLIP weights available, this is what lets a text query find an image, a caption be
checked against its image, and zero-shot categories apply to images: the image tower names what
it sees (1000 ImageNet classes), and MiniLM places those names among sentences. For an image
with top-``k`` class probabilities ``p_j`` and label embeddings ``e_j`` (``"a <label>"``), the
bridged vector is ``normalise(sum_j p_j e_j)``.

Template and ``k`` were chosen on the 51 COCO photos (so these figures are optimistic for them):
``"a {}"`` with k=5 gave image->caption recall@1 0.43 and zero-shot categories agreeing with
the captions' own categories for 62 % of captions; CLIP's ``"a photo of a {}"`` gave 0.31 and 30 %,
because "photo" pulled every image towards the photography category.

Measured on the 51 COCO photos (5 captions each; ``pulse eval clip``): see docs/clip-ai.md. It can
only say what ImageNet's classes can say (no "person", many dog breeds), so it is a floor that a
real CLIP checkpoint should beat.
"""
from __future__ import annotations

import numpy as np

from models.clip.text import MiniLM

LABEL_TEMPLATE = "a {}"
"""How a class name becomes a sentence (see the module docstring for why not CLIP's "a photo of a {}")."""


class ImageNetBridge:
    """Label embeddings computed once; :meth:`bridge` maps ``(n, 1000)`` probabilities to ``(n, 384)``.

    ``top_k``: how many of the most probable classes contribute (the rest are noise on 1000
    classes; 5 measured best for image-to-caption retrieval on the COCO photos).
    """

    def __init__(self, minilm: MiniLM, labels: tuple[str, ...], top_k: int = 5) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k = top_k
        self.labels = labels
        self.label_vectors = minilm.encode([LABEL_TEMPLATE.format(x) for x in labels], batch_size=128)

    def bridge(self, probabilities: np.ndarray) -> np.ndarray:
        """``(n, 1000)`` class probabilities -> ``(n, 384) float32`` unit vectors in MiniLM space."""
        p = np.asarray(probabilities, dtype=np.float32).copy()
        if p.ndim != 2 or p.shape[1] != len(self.labels):
            raise ValueError(f"probabilities must be (n, {len(self.labels)}), got {p.shape}")
        if len(p) == 0:
            return np.zeros((0, self.label_vectors.shape[1]), np.float32)
        drop = np.argsort(-p, axis=1)[:, self.top_k:]
        np.put_along_axis(p, drop, 0.0, axis=1)
        v = p @ self.label_vectors
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)
