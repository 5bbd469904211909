"""clip_ai's models in one object: load once, enrich uploads in batches.

:class:`ContentModels` holds the towers (the ImageNet tower and MiniLM always; open_clip when a
checkpoint is configured), the ImageNet bridge, the taxonomy's category vectors, an optional
trained category head (``PULSE_CLIP_CATEGORY_HEAD``, :mod:`models.clip.head`: when set, it gives
the categories; otherwise zero-shot over the taxonomy does) and the hashtag vocabulary. :meth:`ContentModels.enrich` takes upload
records and returns one :class:`Enrichment` each: all images and video keyframes of the batch go
through the image tower in one batched call, all texts through MiniLM in another.

Vectors per post (the ``content`` collection's named vectors, ``infra/qdrant/collections.toml``):

- ``image``: the image tower's embedding: CLIP's image embedding when configured, else
  EfficientNet-Lite0's 1280-d features (similar images by example). Video: mean of keyframes.
- ``semantic``: the media in MiniLM's text space (the ImageNet bridge); for a text post, its
  text's MiniLM embedding. Every post has one, so one text query searches all kinds.
- ``text``: MiniLM embedding of title + caption (absent when both are empty).
- ``clip_text``: with CLIP, the CLIP text embedding of title + caption.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from models.clip.bridge import ImageNetBridge
from models.clip.imagenet import ImageNetTower, file_version
from models.clip.media import Media, load_media, media_quality
from models.clip.taxonomy import TAXONOMY_TOML, load_taxonomy
from models.clip.text import MiniLM
from models.clip.understanding import HashtagHistory, HashtagVocabulary, alt_text, category_vectors, zero_shot
from models.fingerprints import FingerprintUnavailable, MediaError

log = logging.getLogger(__name__)

TEXT_QUALITY = 0.5
"""Quality of a text post: neutral (technical quality measures media; text has none here)."""


@dataclass(frozen=True)
class ClipConfig:
    """What :class:`ContentModels` loads (from :class:`streams.settings.Settings`, see ``from_settings``)."""

    clip_model: str = "ViT-B-32"
    clip_checkpoint: str | None = None
    clip_model_config: str | None = None
    category_head: str | None = None
    keyframes: int = 4
    bridge_top_k: int = 5
    taxonomy: str = str(TAXONOMY_TOML)

    @classmethod
    def from_settings(cls, settings: Any) -> "ClipConfig":
        return cls(clip_model=settings.clip_model, clip_checkpoint=settings.clip_checkpoint,
                   clip_model_config=settings.clip_model_config, category_head=settings.clip_category_head,
                   keyframes=settings.clip_keyframes)


@dataclass
class Enrichment:
    """clip_ai's findings for one upload. Vectors are ``(d,) float32`` unit vectors or ``None``."""

    post_id: str
    image: np.ndarray | None = None
    semantic: np.ndarray | None = None
    text: np.ndarray | None = None
    clip_text: np.ndarray | None = None
    image_embedding: np.ndarray | None = None
    """For the event: the media in the text space of ``text_embedding`` (CLIP, or the bridge)."""
    text_embedding: np.ndarray | None = None
    categories: dict[str, float] = field(default_factory=dict)
    labels: list[tuple[str, float]] = field(default_factory=list)
    alignment: float | None = None
    quality: dict[str, float] = field(default_factory=dict)
    alt_text: str | None = None
    hashtags: list[str] = field(default_factory=list)
    keyframes: int | None = None
    media_error: str | None = None
    latency_ms: int = 0

    @property
    def top_categories(self) -> list[str]:
        """Categories with probability >= 0.2 (at most 3), best first; the payload's ``categories``."""
        ranked = sorted(self.categories.items(), key=lambda kv: -kv[1])
        return [c for c, p in ranked[:3] if p >= 0.2] or [ranked[0][0]] if ranked else []


def _text_of(record: dict) -> str:
    return " ".join(x for x in (record.get("title") or "", record.get("caption") or "") if x.strip()).strip()


class ContentModels:
    """Every model clip_ai uses, loaded once (seconds; no network). Thread-compatible: call
    :meth:`enrich` from one thread at a time (the agent's own worker thread)."""

    def __init__(self, config: ClipConfig = ClipConfig()) -> None:
        self.config = config
        head = None
        if config.category_head:  # read first: a missing or malformed head fails before the towers load
            from models.clip.head import CategoryHead

            head = CategoryHead.load(config.category_head)
        self.imagenet = ImageNetTower()
        self.minilm = MiniLM()
        self.bridge = ImageNetBridge(self.minilm, self.imagenet.labels, top_k=config.bridge_top_k)
        self.clip = None
        if config.clip_checkpoint:
            from models.clip.openclip import OpenClipTower

            self.clip = OpenClipTower(config.clip_model, config.clip_checkpoint, model_config=config.clip_model_config)
        self.categories = load_taxonomy(config.taxonomy)
        self.category_names = [c.name for c in self.categories]
        self.category_text = category_vectors(self.minilm.encode, self.categories)
        self.category_clip = category_vectors(self.clip.encode_texts, self.categories) if self.clip else None
        self.hashtags = HashtagVocabulary(self.minilm.encode, [t for c in self.categories for t in c.tags])
        self.use_head(head)

    def use_head(self, head: Any) -> None:
        """Take categories from a trained :class:`~models.clip.head.CategoryHead` (``None``: zero-shot),
        and name it in ``model`` / ``model_version``.

        Raises :class:`~models.clip.head.HeadMismatch` when the head was trained on other encoders'
        vectors, other widths, or categories the taxonomy does not have.
        """
        if head is not None:
            from models.clip.head import HeadMismatch
            from models.clip.train import encoder_versions

            head.check_encoders(*encoder_versions(self))
            unknown = set(head.classes) - set(self.category_names)
            if unknown:
                raise HeadMismatch(f"category head {head.version} predicts {sorted(unknown)}, which the taxonomy "
                                   f"{self.config.taxonomy} does not have; retrain it (pulse train clip)")
        self.head = head
        versions = [self.imagenet.version, self.minilm.version, file_version(Path(self.config.taxonomy), "taxonomy")]
        names = [self.imagenet.name, self.minilm.name]
        if self.clip:
            versions.append(self.clip.version)
            names.append(self.clip.name)
        if self.head:
            versions.append(self.head.version)
            names.append("category_head")
        self.model = "clip_ai[" + "+".join(names) + "]"
        self.model_version = "+".join(versions)

    @property
    def image_dim(self) -> int:
        """Width of the ``image`` vector: CLIP's embedding dimension, or 1280 (EfficientNet-Lite0)."""
        return self.clip.dim if self.clip else 1280

    def encode_queries(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Search queries as ``{"semantic": (n, 384)}`` MiniLM vectors, plus ``"image"`` (CLIP text
        tower, in the image vectors' space) when CLIP is configured."""
        out = {"semantic": self.minilm.encode(texts)}
        if self.clip:
            out["image"] = self.clip.encode_texts(texts)
        return out

    def enrich(self, records: Sequence[dict], media: Sequence[Media | None] | None = None,
               hashtags: HashtagHistory | None = None,
               resolve_media: Callable[[str], Any] | None = None) -> list[Enrichment]:
        """One :class:`Enrichment` per upload record (``uploads`` schema), in order.

        ``hashtags``: the platform's hashtags as of each post's time (clip_ai's side input);
        default: only the taxonomy's tags. The models learn nothing from the records: the same
        upload gets the same enrichment whatever was enriched before.

        ``media``: already decoded media per record (default: decoded here from ``media_uri``).
        ``resolve_media(media_uri) -> local path``: where a ``media_uri`` may be read (clip_ai
        passes the media roots' resolver, which raises a ``MediaError`` for a URI outside
        them); default: the URI as it is (:func:`models.clip.media.media_path`).
        Media that cannot be decoded gives an enrichment without image fields and its reason in
        ``media_error``; it never raises for bad media.
        """
        t0 = time.perf_counter()
        results = [Enrichment(r["post_id"]) for r in records]
        decoded: list[Media | None] = []
        for i, r in enumerate(records):
            m = media[i] if media is not None else None
            if m is None and r.get("kind") in ("IMAGE", "VIDEO") and r.get("media_uri"):
                try:
                    uri = r["media_uri"] if resolve_media is None else str(resolve_media(r["media_uri"]))
                    m = load_media(uri, r["kind"], keyframes=self.config.keyframes,
                                   duration_ms=r.get("duration_ms"))
                except (MediaError, FingerprintUnavailable, OSError) as e:
                    results[i].media_error = str(e) or type(e).__name__
                    log.warning("clip_ai: post %s: media not analysed: %s", r["post_id"], results[i].media_error)
            decoded.append(m)
        # ---- images and keyframes: one batch through the towers
        frames, owner = [], []
        for i, m in enumerate(decoded):
            if m is not None:
                frames.extend(m.frames)
                owner.extend([i] * len(m.frames))
        owner_a = np.asarray(owner)
        feats, probs = self.imagenet.encode(frames)
        clip_img = self.clip.encode_images(frames) if self.clip and frames else None
        # ---- texts: one batch through MiniLM (and CLIP's text tower)
        texts = [_text_of(r) for r in records]
        has_text = [i for i, t in enumerate(texts) if t]
        text_vecs = self.minilm.encode([texts[i] for i in has_text])
        clip_txt = self.clip.encode_texts([texts[i] for i in has_text]) if self.clip and has_text else None
        for j, i in enumerate(has_text):
            results[i].text = text_vecs[j]
            if clip_txt is not None:
                results[i].clip_text = clip_txt[j]
        for i, m in enumerate(decoded):
            e, kind = results[i], records[i].get("kind")
            if m is not None:
                rows = owner_a == i
                e.keyframes = len(m.frames) if kind == "VIDEO" else None
                e.image = _unit(feats[rows].mean(axis=0))
                p = probs[rows].mean(axis=0, keepdims=True)
                e.semantic = self.bridge.bridge(p)[0]
                e.labels = self.imagenet.top_labels(p, 5)[0]
                if clip_img is not None:
                    e.image = _unit(clip_img[rows].mean(axis=0))
                e.quality = media_quality(m, kind)
            elif e.text is not None:
                e.semantic = e.text
                e.quality = {"score": TEXT_QUALITY}
            else:
                e.quality = {"score": TEXT_QUALITY}
            self._understand(e, records[i], hashtags)
        elapsed = int((time.perf_counter() - t0) * 1000)
        for e in results:
            e.latency_ms = elapsed // max(1, len(records))
        return results

    def _understand(self, e: Enrichment, record: dict, hashtags: HashtagHistory | None = None) -> None:
        """Embeddings for the event, categories, alignment, alt-text and hashtags of one post."""
        has_media = e.semantic is not None and e.media_error is None and e.labels
        if self.clip and has_media:
            e.image_embedding, e.text_embedding = e.image, e.clip_text
            space_vecs, cats = [e.image], self.category_clip
        else:
            e.image_embedding = e.semantic if has_media else None
            e.text_embedding = e.text
            space_vecs, cats = [v for v in (e.image_embedding, e.text) if v is not None], self.category_text
        if e.image_embedding is not None and e.text_embedding is not None:
            e.alignment = float(np.dot(e.image_embedding, e.text_embedding))
        if self.head is not None and (e.semantic is not None or e.text is not None):
            probs = self.head.predict_proba(self.head.feature_matrix(
                {"semantic": [e.semantic], "text": [e.text], "image": [e.image]}))[0]
            e.categories = {name: 0.0 for name in self.category_names} | dict(zip(self.head.classes, map(float, probs)))
        elif space_vecs:
            dists = [zero_shot(v[None, :], cats)[0] for v in space_vecs]
            if self.clip and has_media and e.text is not None:
                dists.append(zero_shot(e.text[None, :], self.category_text)[0])
            e.categories = dict(zip(self.category_names, map(float, np.mean(dists, axis=0))))
        ranked = sorted(e.categories.items(), key=lambda kv: -kv[1])
        if has_media:
            e.alt_text = alt_text(record.get("kind", "IMAGE"), e.labels, ranked)
        anchor = e.semantic if e.semantic is not None else e.text
        if anchor is not None:
            own = record.get("hashtags") or []
            if hashtags is not None:
                t = record["event_time"]
                at = t if isinstance(t, int) else int(round(t.timestamp() * 1000))
                e.hashtags = hashtags.suggest(anchor, 5, own, at)
            else:
                e.hashtags = self.hashtags.suggest(anchor[None, :], 5, [own])[0]

    def hashtag_history(self) -> HashtagHistory:
        """An empty :class:`HashtagHistory` over the taxonomy's tags and this model's text encoder
        (clip_ai's side-input state)."""
        return HashtagHistory(self.minilm.encode, [t for c in self.categories for t in c.tags])


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
