"""The gates in `pulse demo`: works registered by rights holders, re-encoded copies uploaded, and
the summary of what Content Guard, Copyright Guard and the publisher decided.

Registered works (``copyright-references``, fingerprints computed here as ``pulse copyright
register`` does):

* scikit-image's ``rocket`` photo, registered by its demo creator (LUMEN): LUMEN's own upload of
  it is allowed as own work; a cropped, logo-stamped, re-compressed copy that another creator
  uploads is caught;
* with ``--media``, the ``carphone_pristine.mp4`` clip, registered by an outside rights holder:
  both the pristine upload and its heavily compressed copy ``carphone_distorted.mp4`` are caught.

Every event id is derived from its input, so a re-run publishes identical events.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.settings import Settings
from streams.demo.sources import stable_event_id
from streams.demo.sources.media import FIELDNOTES, LUMEN, hashtags_from_caption, skimage_data_dir

SOURCE = "demo-gates"
CARPHONE_STUDIO = "demo-rights-carphone-studio"


def _reference(ref_id: str, title: str, holder: str, path: Path, now_ms: int) -> dict[str, Any]:
    from models.copyright import reference_fingerprints

    modality, fps = reference_fingerprints(path)
    return {"event_id": stable_event_id(SOURCE, f"reference:{ref_id}"), "event_time": now_ms,
            "producer": "pulse-demo", "reference_id": ref_id, "rights_holder_id": holder,
            "action": "REGISTER", "title": title, "media_kind": modality,
            "media_uri": path.resolve().as_uri(), "fingerprints": fps, "policy": "BLOCK",
            "metadata": {"source": "pulse demo"}}


def make_copy(src: Path, dst: Path) -> Path:
    """A re-encoded copy meant to dodge matching: 10 % crop, a logo bar, JPEG quality 50."""
    from PIL import Image, ImageDraw

    im = Image.open(src).convert("RGB")
    w, h = im.size
    im = im.crop((w // 20, h // 20, w - w // 20, h - h // 20))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, int(im.height * 0.85), im.width, im.height), fill=(20, 20, 20))
    draw.text((10, int(im.height * 0.88)), "@fieldnotes reposts", fill=(255, 255, 255))
    dst.parent.mkdir(parents=True, exist_ok=True)
    im.save(dst, quality=50)
    return dst


def gate_events(settings: Settings, *, photos: bool, media: Path | None, now_ms: int
                ) -> tuple[list[dict], list[dict]]:
    """``(references, uploads)``: the works the demo registers and the copies it uploads."""
    refs: list[dict] = []
    uploads: list[dict] = []
    if photos:
        rocket = skimage_data_dir() / "rocket.jpg"
        if rocket.is_file():
            refs.append(_reference("demo-work-rocket", "Falcon 9 before the DSCOVR launch",
                                   LUMEN, rocket, now_ms))
            copy = make_copy(rocket, settings.home / "demo" / "rocket-repost.jpg")
            caption = "Look at this rocket I found"
            uploads.append({
                "event_id": stable_event_id(SOURCE, "upload:rocket-repost"), "event_time": now_ms + 1,
                "producer": "pulse-demo", "post_id": "demo-repost-rocket", "creator_id": FIELDNOTES,
                "kind": "IMAGE", "content_type": "FOREVER", "media_uri": copy.resolve().as_uri(),
                "caption": caption, "title": None, "hashtags": hashtags_from_caption(caption),
                "duration_ms": None, "size_bytes": copy.stat().st_size, "width": None,
                "height": None, "parent_post_id": None})
    if media is not None:
        clip = Path(media) / "video" / "carphone_pristine.mp4"
        if clip.is_file():
            refs.append(_reference("demo-work-carphone", "Carphone (reference clip)",
                                   CARPHONE_STUDIO, clip, now_ms))
    return refs, uploads


def gate_summary(settings: Settings, post_ids: set[str] | None = None) -> dict[str, Any]:
    """What the gates decided about ``post_ids`` (default: every post), from their topics
    (distinct event ids: re-runs do not double)."""
    from replay.reader import read_topic

    def distinct(topic: str) -> list[dict]:
        seen: dict[str, dict] = {}
        for _, r in read_topic(settings, topic, on_error="skip"):
            if post_ids is None or r["post_id"] in post_ids:
                seen.setdefault(r["event_id"], r)
        return list(seen.values())

    moderation = distinct("moderation-verdicts")
    copyright_ = distinct("copyright-verdicts")
    published = distinct("posts-published")
    tasks = distinct("review-queue")
    human = {r["review_task_id"] for r in moderation if r["tier"] == "HUMAN"}
    return {
        "moderation": Counter((r["tier"], r["action"], "comment" if r["comment_id"] else "post")
                              for r in moderation),
        "copyright": Counter(r["action"] for r in copyright_),
        "copyright_matches": [(r["post_id"], r["action"], m["reference_id"], m["kind"],
                               m.get("hamming_distance"), m.get("similarity"))
                              for r in copyright_ for m in r["matches"][:1]],
        "own_work": sum(any("own work" in x for x in r["reasons"]) for r in copyright_),
        "published": Counter(r["distribution"] for r in published),
        "review_pending": sum(1 for t in tasks if t["task_id"] not in human),
    }


def print_gate_summary(s: dict[str, Any], console: Console) -> None:
    t = Table(title="Content Guard verdicts (tier x action)")
    for col in ("tier", "action", "posts", "comments"):
        t.add_column(col)
    keys = sorted({(tier, action) for tier, action, _ in s["moderation"]})
    for tier, action in keys:
        t.add_row(tier, action, str(s["moderation"][(tier, action, "post")]),
                  str(s["moderation"][(tier, action, "comment")]))
    console.print(t)
    total = sum(s["moderation"].values())
    fast = sum(n for (tier, _, _), n in s["moderation"].items() if tier == "FAST")
    if total:
        console.print(f"fast tier decided {fast} of {total} items ({fast / total:.1%}); "
                      f"{s['review_pending']} waiting for human review (`pulse review list`)")
    c = Table(title="Copyright Guard")
    for col in ("post", "action", "matched work", "by", "PDQ distance", "similarity"):
        c.add_column(col)
    for post, action, ref, kind, dist, sim in s["copyright_matches"]:
        c.add_row(post, action, ref, kind, "" if dist is None else str(dist),
                  "" if sim is None else f"{sim:.2f}")
    console.print(c)
    console.print("copyright verdicts: " + ", ".join(f"{a} {n}" for a, n in sorted(s["copyright"].items()))
                  + f" ({s['own_work']} own work allowed)")
    console.print("published: " + (", ".join(f"{d} {n}" for d, n in sorted(s["published"].items()))
                                   or "none"))
