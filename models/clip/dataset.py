"""The CLIP training-set format: labelled (image, caption, category) rows in a directory.

``DIR/rows.jsonl``, one JSON object per line (format ``pulse-clip-dataset/1``):

``post_id`` (str, required, unique)
    the post the row comes from.
``image`` (str or null)
    the media file, relative to ``DIR`` (``media/<post_id>.jpg``); ``null`` for a text post.
``caption`` (str), ``title`` (str, optional)
    the post's text, as clip_ai embeds it (title + caption).
``category`` (str, required)
    the label: a category name of the taxonomy (``models/clip/taxonomy.toml``).
``label_source`` (str, optional)
    where the label came from: ``creator_hashtag`` (the creator tagged the post with one of the
    category's hashtags), ``clip_ai:<model_version>`` (clip_ai's top zero-shot category), a
    moderator, or a documented rule (``coco_captions_zero_shot``).
``group`` (str, optional)
    rows of one group never straddle the train/test split (default: the image path, else the
    post id), so several captions of one photo cannot leak across it.

``DIR/dataset.json`` (optional): ``{"format", "source", "rows", "created_at", "labels": {...}}``,
written by :func:`write_dataset`. Build a dataset from the platform's own topics with
``replay.training.export_clip_dataset`` (``pulse dataset clip --out DIR``), or from a COCO-captions
directory with :func:`coco_dataset` (``pulse dataset clip --coco DIR --out DIR``).
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

FORMAT = "pulse-clip-dataset/1"


class DatasetError(ValueError):
    """A training set that does not follow the format (the message names the file and line)."""


@dataclass(frozen=True)
class Row:
    """One labelled post. ``image`` is an absolute path once loaded (``None`` for a text post)."""

    post_id: str
    image: Path | None
    caption: str
    category: str
    title: str | None = None
    label_source: str | None = None
    group: str | None = None

    @property
    def split_group(self) -> str:
        return self.group or (str(self.image) if self.image else self.post_id)

    def upload(self) -> dict:
        """The row as an ``uploads`` record, the shape ``ContentModels.enrich`` takes."""
        return {"post_id": self.post_id, "kind": "IMAGE" if self.image else "TEXT",
                "media_uri": str(self.image) if self.image else None, "caption": self.caption, "title": self.title}


def load_dataset(directory: Path | str, categories: Sequence[str] | None = None) -> list[Row]:
    """Rows of ``DIR/rows.jsonl`` with image paths made absolute.

    ``categories``: the known category names; a row with another label is an error. Raises
    :class:`DatasetError` (bad JSON, a missing field, a duplicate post id, an unknown category, a
    missing image file) or ``FileNotFoundError`` when ``rows.jsonl`` is absent.
    """
    d = Path(directory)
    path = d / "rows.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a CLIP dataset directory holds rows.jsonl "
                                f"(build one with `pulse dataset clip --out {d}`)")
    rows, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{n}: not JSON: {e}") from None
        for key in ("post_id", "category"):
            if not isinstance(obj.get(key), str) or not obj[key]:
                raise DatasetError(f"{path}:{n}: {key!r} must be a non-empty string")
        if obj["post_id"] in seen:
            raise DatasetError(f"{path}:{n}: duplicate post_id {obj['post_id']!r}")
        seen.add(obj["post_id"])
        if categories is not None and obj["category"] not in categories:
            raise DatasetError(f"{path}:{n}: category {obj['category']!r} is not in the taxonomy")
        image = None
        if obj.get("image"):
            image = (d / obj["image"]).resolve()
            if not image.is_file():
                raise DatasetError(f"{path}:{n}: image {obj['image']!r} not found under {d}")
        rows.append(Row(obj["post_id"], image, obj.get("caption") or "", obj["category"], obj.get("title"),
                        obj.get("label_source"), obj.get("group")))
    if not rows:
        raise DatasetError(f"{path} has no rows")
    return rows


def write_dataset(directory: Path | str, rows: Iterable[dict], *, source: str) -> dict:
    """Write ``rows.jsonl`` (dicts in the format above, ``image`` relative to ``directory``) and
    ``dataset.json``; returns the manifest."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    with open(d / "rows.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if v is not None}, ensure_ascii=False) + "\n")
    manifest = {"format": FORMAT, "source": source, "rows": len(rows),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "categories": dict(Counter(r["category"] for r in rows).most_common()),
                "label_sources": dict(Counter(r.get("label_source") or "unknown" for r in rows).most_common())}
    (d / "dataset.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def copy_media(src: Path, directory: Path, post_id: str) -> str:
    """Hard-link (or copy, across file systems) ``src`` to ``directory/media/<post_id><suffix>``;
    returns the path relative to ``directory``."""
    rel = Path("media") / f"{post_id.replace('/', '_')}{src.suffix.lower()}"
    dst = directory / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copyfile(src, dst)
    return str(rel)


COCO_LABEL_RULE = "coco_captions_zero_shot"
"""How :func:`coco_dataset` labels a caption row: the taxonomy's zero-shot category (MiniLM,
``models.clip.understanding.zero_shot``) of the *other four* human captions of the same photo,
probabilities averaged, so a row's own caption never decides its label."""


def coco_dataset(coco_dir: Path | str, out_dir: Path | str, minilm, categories) -> dict:
    """A CLIP dataset from a COCO-captions directory (``captions.json``; ``../shared/data/coco-captions``).

    One row per (photo, caption): ``post_id`` ``coco-<image id>-<k>``, ``group`` the photo, label
    by :data:`COCO_LABEL_RULE`. ``minilm``: a :class:`models.clip.text.MiniLM`; ``categories``:
    the taxonomy (``load_taxonomy()``). Images are linked under ``out_dir/media``. Returns the manifest.
    """
    from models.clip.understanding import category_vectors, zero_shot

    coco_dir, out_dir = Path(coco_dir), Path(out_dir)
    photos = json.loads((coco_dir / "captions.json").read_text())
    names = [c.name for c in categories]
    cat_vecs = category_vectors(minilm.encode, categories)
    rows = []
    for photo in photos:
        caps = list(photo["captions"])
        probs = zero_shot(minilm.encode(caps), cat_vecs)  # (5, c)
        stem = Path(photo["file"]).stem
        image = copy_media(coco_dir / photo["file"], out_dir, f"coco-{stem}")
        for k, cap in enumerate(caps):
            others = np.delete(probs, k, axis=0).mean(axis=0)
            rows.append(asdict(Row(f"coco-{stem}-{k}", None, cap, names[int(np.argmax(others))],
                                   label_source=COCO_LABEL_RULE, group=f"coco-{stem}")) | {"image": image})
    return write_dataset(out_dir, rows, source=f"coco-captions:{coco_dir}")
