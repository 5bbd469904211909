"""``pulse eval clip``: cross-modal retrieval on captioned photos (COCO captions layout).

Data: a directory with ``captions.json``, a list of ``{"file": "images/x.jpg", "captions": [...]}``
(``../shared/data/coco-captions``: 51 COCO 2017 photos, 5 human captions each).

For each image path (the ImageNet bridge always; CLIP when a checkpoint is configured):

- ``image_to_caption``: each image ranks every caption; recall@k = share of images with one of
  their own captions in the top k.
- ``caption_to_image``: each caption ranks every image; recall@k = share of captions whose image
  is in the top k.

``minilm_caption_to_caption``: each caption ranks every *other* caption; recall@k = share with a
caption of the same image in the top k. ``chance`` gives the expected recall of a random ranking
for each, so the figures can be read against it. ``bridge_category_agreement``: share of
captions whose zero-shot category (MiniLM) equals their image's (bridged) category.
"""
from __future__ import annotations

import json
import time
from math import comb
from pathlib import Path

import numpy as np

from models.clip.enrich import ClipConfig, ContentModels
from models.clip.understanding import zero_shot
from models.fingerprints.image import load_image

KS = (1, 5)


def load_captioned(data_dir: Path | str) -> tuple[list[Path], list[str], np.ndarray]:
    """``(image paths, captions, owner)``: ``owner[j]`` is the index of caption ``j``'s image.

    Raises ``FileNotFoundError`` when ``captions.json`` is missing.
    """
    data_dir = Path(data_dir)
    rows = json.loads((data_dir / "captions.json").read_text())
    paths = [data_dir / r["file"] for r in rows]
    captions = [c for r in rows for c in r["captions"]]
    owner = np.asarray([i for i, r in enumerate(rows) for _ in r["captions"]])
    return paths, captions, owner


def retrieval(image_vecs: np.ndarray, caption_vecs: np.ndarray, owner: np.ndarray) -> dict:
    """Recall@1/@5 both ways from ``(n, d)`` image and ``(m, d)`` caption unit vectors."""
    s = image_vecs @ caption_vecs.T
    i2c = {f"recall@{k}": float(np.mean([np.isin(i, owner[np.argsort(-s[i])[:k]]) for i in range(len(s))]))
           for k in KS}
    c2i = {f"recall@{k}": float(np.mean([owner[j] in np.argsort(-s[:, j])[:k] for j in range(s.shape[1])]))
           for k in KS}
    return {"image_to_caption": i2c, "caption_to_image": c2i}


def caption_to_caption(caption_vecs: np.ndarray, owner: np.ndarray) -> dict:
    """Recall@k of retrieving another caption of the same image (the query itself excluded)."""
    s = caption_vecs @ caption_vecs.T
    np.fill_diagonal(s, -np.inf)
    return {f"recall@{k}": float(np.mean([np.isin(owner[j], owner[np.argsort(-s[j])[:k]])
                                          for j in range(len(s))])) for k in KS}


def chance(n_images: int, per_image: int) -> dict:
    """Expected recall@k of a random ranking for the three tasks."""
    m = n_images * per_image

    def hit(pool: int, good: int, k: int) -> float:  # P(at least one of `good` among k drawn from pool)
        return 1 - comb(pool - good, k) / comb(pool, k)

    return {"image_to_caption": {f"recall@{k}": hit(m, per_image, k) for k in KS},
            "caption_to_image": {f"recall@{k}": k / n_images for k in KS},
            "caption_to_caption": {f"recall@{k}": hit(m - 1, per_image - 1, k) for k in KS}}


def run_clip_eval(data_dir: Path | str, config: ClipConfig = ClipConfig(), models: ContentModels | None = None) -> dict:
    """The evaluation (module docstring) as one JSON-able dict."""
    t0 = time.perf_counter()
    paths, captions, owner = load_captioned(data_dir)
    models = models or ContentModels(config)
    images = [load_image(p, apply_exif_orientation=True) for p in paths]
    _, probs = models.imagenet.encode(images)
    bridged = models.bridge.bridge(probs)
    cap = models.minilm.encode(captions)
    per_image = int(round(len(captions) / len(paths)))
    report = {"data": str(data_dir), "images": len(paths), "captions": len(captions),
              "chance": chance(len(paths), per_image),
              "paths": {"imagenet_bridge": {"model": f"{models.imagenet.name}+{models.minilm.name}",
                                            "model_version": f"{models.imagenet.version}+{models.minilm.version}",
                                            "bridge_top_k": models.bridge.top_k,
                                            **retrieval(bridged, cap, owner)}},
              "minilm_caption_to_caption": caption_to_caption(cap, owner)}
    if models.clip is not None:
        report["paths"]["clip"] = {"model": models.clip.name, "model_version": models.clip.version,
                                   **retrieval(models.clip.encode_images(images), models.clip.encode_texts(captions),
                                               owner)}
    img_cat = zero_shot(bridged, models.category_text).argmax(1)
    cap_cat = zero_shot(cap, models.category_text).argmax(1)
    report["bridge_category_agreement"] = float(np.mean(img_cat[owner] == cap_cat))
    report["seconds"] = time.perf_counter() - t0
    return report
