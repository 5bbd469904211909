"""CLIP AI in `pulse demo`: what the enrichment found in the demo's media (categories,
alt-text) and a few text searches over the demo's posts, run after the worker stopped (the
embedded vector engine allows one process per collection)."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from streams.settings import Settings

#: Queries the demo runs over its own posts: one per kind of content it publishes.
QUERIES = (("a cat", "image"), ("rocket launch at night", "image"), ("a cup of coffee", "image"),
           ("quantum error correction with surface codes", "text"))


def clip_summary(settings: Settings, post_ids: set[str]) -> dict[str, Any]:
    """Enrichments of the demo's image and video posts, and the demo's searches (empty when
    clip_ai did not run)."""
    from replay.reader import read_topic

    media = {}
    texts = 0
    for _, r in read_topic(settings, "content-enriched", on_error="skip"):
        if r["post_id"] not in post_ids:
            continue
        if r.get("image_embedding") is not None or r.get("keyframe_count"):
            top = sorted((r.get("categories") or {}).items(), key=lambda kv: -kv[1])[:2]
            media[r["post_id"]] = {"categories": [c for c, _ in top], "alt_text": r.get("alt_text"),
                                   "quality": r.get("quality_score"),
                                   "alignment": r.get("alignment_score"),
                                   "hashtags": list(r.get("suggested_hashtags") or [])[:3]}
        else:
            texts += 1
    searches = []
    if media or texts:
        from streams.query.search import ContentSearch

        with ContentSearch.open(settings) as search:
            for query, kind in QUERIES:
                hits = [h for h in search.text(query, limit=20, kind=kind) if h.post_id in post_ids]
                searches.append({"query": query, "kind": kind,
                                 "hits": [(h.post_id, round(h.score, 4)) for h in hits[:3]]})
    return {"media": media, "text_posts_enriched": texts, "searches": searches}


def print_clip_summary(s: dict[str, Any], console: Console) -> None:
    if not s.get("media") and not s.get("text_posts_enriched"):
        return
    t = Table(title="CLIP AI: what the models found in the demo's media")
    for col in ("post", "categories", "alt-text", "quality", "caption fit"):
        t.add_column(col, overflow="fold")
    for post, e in sorted(s["media"].items()):
        t.add_row(post, ", ".join(e["categories"]), e["alt_text"] or "",
                  "" if e["quality"] is None else f"{e['quality']:.2f}",
                  "" if e["alignment"] is None else f"{e['alignment']:.2f}")
    console.print(t)
    console.print(f"text posts enriched: {s['text_posts_enriched']}")
    for q in s["searches"]:
        found = ", ".join(f"{p} ({score})" for p, score in q["hits"]) or "nothing"
        console.print(f"search ({q['kind']} posts) {q['query']!r}: {found}", markup=False)
