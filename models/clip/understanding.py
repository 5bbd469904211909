"""Understanding from embeddings: zero-shot categories, alt-text, hashtag suggestions.

All three work on unit vectors in one text space (MiniLM's 384-d space for the ImageNet bridge
and captions; CLIP's space when a CLIP checkpoint is configured), so they apply alike to images,
video keyframes and text posts.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

import numpy as np

from models.clip.taxonomy import Category

Encode = Callable[[Sequence[str]], np.ndarray]
"""``texts -> (n, d) float32`` unit vectors (``MiniLM.encode`` or ``OpenClipTower.encode_texts``)."""

TEMPERATURE = 0.05
"""Softmax temperature over cosine similarities (CLIP's learned logit scale is 100, i.e. 0.01;
MiniLM cosines spread less, and 0.05 keeps the probabilities from collapsing onto one category)."""


def _normalise(v: np.ndarray) -> np.ndarray:
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def category_vectors(encode: Encode, categories: Sequence[Category]) -> np.ndarray:
    """``(c, d)`` unit vectors: each category's prompts embedded, averaged, normalised."""
    prompts = [p for c in categories for p in c.prompts]
    emb = encode(prompts)
    out, i = [], 0
    for c in categories:
        out.append(emb[i:i + len(c.prompts)].mean(axis=0))
        i += len(c.prompts)
    return _normalise(np.stack(out))


def zero_shot(vectors: np.ndarray, cat_vectors: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """``(n, d)`` unit vectors x ``(c, d)`` category vectors -> ``(n, c)`` probabilities
    (softmax of cosine / ``temperature``; rows sum to 1)."""
    logits = (np.asarray(vectors, np.float32) @ cat_vectors.T) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeio" else "a"  # "a unicycle", "an umbrella" both occur; prefer "a"


def alt_text(kind: str, labels: Sequence[tuple[str, float]], categories: Sequence[tuple[str, float]] = (),
             *, confident: float = 0.3) -> str:
    """Accessibility text from what the models found: a template over the ImageNet labels.

    ``kind``: ``"IMAGE"`` or ``"VIDEO"``; ``labels``: ``(label, probability)`` best first;
    ``categories``: ``(category, probability)`` best first. It is honest about uncertainty and
    about being label-based (there is no captioning model here), e.g. ``"Photo of a pizza. Food
    content."`` or ``"Video that may show a snowmobile or a moped. Vehicles content."``.
    """
    what = "Video" if kind == "VIDEO" else "Photo"
    if not labels:
        text = f"{what}."
    elif labels[0][1] >= confident:
        text = f"{what} of {_article(labels[0][0])} {labels[0][0]}"
        if len(labels) > 1 and labels[1][1] >= confident / 2:
            text += f", possibly with {_article(labels[1][0])} {labels[1][0]}"
        text += "."
    else:
        options = [f"{_article(n)} {n}" for n, _ in labels[:2]]
        text = f"{what} that may show {' or '.join(options)}."
    if categories:
        text += f" {categories[0][0].capitalize()} content."
    return text


_TAG_SPLIT = re.compile(r"[_\-]+|(?<=[a-z])(?=[A-Z])")


def tag_text(tag: str) -> str:
    """A hashtag as words for embedding: ``"#StreetPhotography"`` -> ``"street photography"``."""
    return " ".join(w for w in _TAG_SPLIT.split(tag.lstrip("#")) if w).lower() or tag.lower()


class HashtagVocabulary:
    """Known hashtags (taxonomy tags + tags seen on uploads) with their text embeddings.

    ``suggest`` returns the nearest known hashtags to content vectors. Bounded: at most
    ``max_size`` tags (later ones are ignored), so a flood of unique tags cannot grow it.
    """

    def __init__(self, encode: Encode, tags: Iterable[str] = (), max_size: int = 50_000) -> None:
        self.encode = encode
        self.max_size = max_size
        self.tags: list[str] = []
        self._index: dict[str, int] = {}
        self.vectors = np.zeros((0, 0), np.float32)
        self.add(tags)

    def __len__(self) -> int:
        return len(self.tags)

    def add(self, tags: Iterable[str]) -> int:
        """Add new hashtags (normalised: no '#', lower case); returns how many were new."""
        new = []
        for t in tags:
            t = t.lstrip("#").strip().lower()
            if t and t not in self._index and len(self.tags) + len(new) < self.max_size and t not in new:
                new.append(t)
        if new:
            emb = self.encode([tag_text(t) for t in new])
            self.vectors = emb if not self.tags else np.vstack([self.vectors, emb])
            for t in new:
                self._index[t] = len(self.tags)
                self.tags.append(t)
        return len(new)

    def suggest(self, vectors: np.ndarray, k: int = 5, exclude: Sequence[Iterable[str]] = ()) -> list[list[str]]:
        """Per row of ``(n, d)`` unit vectors, the ``k`` nearest hashtags, best first, skipping
        the row's ``exclude`` (the tags the post already has)."""
        if not self.tags or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        scores = np.asarray(vectors, np.float32) @ self.vectors.T
        out = []
        for i, row in enumerate(scores):
            skip = {t.lstrip("#").lower() for t in (exclude[i] if i < len(exclude) else ())}
            picks = [self.tags[j] for j in np.argsort(-row) if self.tags[j] not in skip][:k]
            out.append(picks)
        return out
