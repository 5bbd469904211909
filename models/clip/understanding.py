"""Understanding from embeddings: zero-shot categories, alt-text, hashtag suggestions.

All three work on unit vectors in one text space (MiniLM's 384-d space for the ImageNet bridge
and captions; CLIP's space when a CLIP checkpoint is configured), so they apply alike to images,
video keyframes and text posts.
"""
from __future__ import annotations

import bisect

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


class HashtagHistory:
    """The platform's hashtags as of an event time: the taxonomy's tags plus every tag first seen
    on an upload *strictly before* that time. clip_ai's side input (fed from ``uploads``), so a
    suggestion depends on the log up to the post's time, not on what one worker process happened
    to see first: a replay suggests what the live run suggested.

    ``apply(upload)`` records each tag's first event time (UTC epoch ms); ``suggest(vector, k,
    exclude, as_of_ms)`` ranks the candidates by cosine similarity to ``vector`` (a ``(d,)`` unit
    vector), ties broken by tag. A learned tag's embedding is computed once, one tag per call to
    ``encode`` (batch composition changes the low bits of a transformer's output). Tags are kept
    for good (strings and a ``(d,)`` float32 each); no size bound, since a bound that depends on
    arrival order would make suggestions depend on it too. Thread-safe.
    """

    def __init__(self, encode: Encode, base_tags: Iterable[str] = ()) -> None:
        import threading

        self.encode = encode
        self.base = HashtagVocabulary(encode, base_tags)
        self.first_seen: dict[str, int] = {}
        self._order: list[tuple[int, str]] = []     # (first seen ms, tag), ascending
        self._vectors: dict[str, np.ndarray] = {}
        self._matrix: np.ndarray | None = None       # rows in ``_order``'s order
        self._lock = threading.Lock()

    def apply(self, record: dict) -> None:
        """Fold one ``uploads`` record in (its ``hashtags`` at its ``event_time``)."""
        t = record["event_time"]
        at = t if isinstance(t, int) else int(round(t.timestamp() * 1000))
        with self._lock:
            for raw in record.get("hashtags") or ():
                tag = raw.lstrip("#").strip().lower()
                if not tag or tag in self.base._index:
                    continue
                old = self.first_seen.get(tag)
                if old is not None and old <= at:
                    continue
                if old is not None:
                    self._order.remove((old, tag))
                self.first_seen[tag] = at
                bisect.insort(self._order, (at, tag))
                self._matrix = None

    def __len__(self) -> int:
        return len(self.base) + len(self.first_seen)

    def suggest(self, vector: np.ndarray, k: int, exclude: Iterable[str], as_of_ms: int) -> list[str]:
        """The ``k`` best hashtags for ``vector`` among those known before ``as_of_ms``, skipping
        ``exclude`` (the post's own tags)."""
        with self._lock:
            n = bisect.bisect_left(self._order, (as_of_ms, ""))
            learned = [tag for _, tag in self._order[:n]]
            for tag in learned:
                if tag not in self._vectors:
                    self._vectors[tag] = np.asarray(self.encode([tag_text(tag)])[0], np.float32)
            if self._matrix is None or len(self._matrix) < n:
                self._matrix = (np.stack([self._vectors[tag] for _, tag in self._order[:n]])
                                if n else None)
            matrix = None if n == 0 else self._matrix[:n]
        v = np.asarray(vector, np.float32)
        scored = [(float(s), tag) for s, tag in zip(self.base.vectors @ v, self.base.tags)] \
            if self.base.tags else []
        if matrix is not None:
            scored += [(float(s), tag) for s, tag in zip(matrix @ v, learned)]
        skip = {t.lstrip("#").lower() for t in exclude}
        ranked = sorted((x for x in scored if x[1] not in skip), key=lambda x: (-x[0], x[1]))
        return [tag for _, tag in ranked[:k]]


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
