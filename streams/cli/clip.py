"""``pulse search``, ``pulse eval clip``, ``pulse bench clip``, ``pulse train clip``: CLIP AI's commands."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import app, bench_app, console, err_console, eval_app, friendly, register_user_errors, settings, train_app


def _register_errors() -> None:
    from models.clip.openclip import ClipUnavailable
    from streams.vectors import VectorIndexError

    register_user_errors(ClipUnavailable, VectorIndexError)


_register_errors()


@app.command()
@friendly
def search(query: Optional[str] = typer.Argument(None, help="What to look for, in words."),
           like: Optional[str] = typer.Option(None, "--like", help="Find posts similar to this post id instead."),
           kind: Optional[str] = typer.Option(None, "--kind", help="image, video or text."),
           since: Optional[str] = typer.Option(None, "--since", help="Only posts uploaded since (ISO 8601 or epoch ms)."),
           limit: int = typer.Option(10, "--limit", min=1, max=1000, help="How many posts."),
           published_only: bool = typer.Option(False, "--published-only",
                                               help="Only posts both gates allowed (not also those not yet gated)."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Semantic search over posts (the `content` vectors clip_ai wrote): by text or by example.

    With the embedded vector engine, a running worker holds the collection: stop it first, or
    use a Qdrant server (PULSE_QDRANT_URL)."""
    from ..search import ContentSearch

    if (query is None) == (like is None):
        raise typer.BadParameter("give a QUERY or --like POST_ID (one of them)")
    if kind is not None and kind.lower() not in ("image", "video", "text"):
        raise typer.BadParameter("--kind is image, video or text", param_hint="'--kind'")
    since_ms = None
    if since is not None:
        from replay.rebuild import TimeRangeError, parse_time_ms

        try:
            since_ms = parse_time_ms(since, "")
        except TimeRangeError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--since'") from None
    with ContentSearch.open(settings()) as s:
        if like is not None:
            hits = s.like(like, limit, kind=kind, since_ms=since_ms, published_only=published_only)
        else:
            hits = s.text(query, limit, kind=kind, since_ms=since_ms, published_only=published_only)
    if as_json:
        print(json.dumps([{"post_id": h.post_id, "score": h.score, "scores": h.scores, "payload": h.payload}
                          for h in hits], indent=2, default=str))
        return
    if not hits:
        console.print("[yellow]no posts found[/]")
    for rank, h in enumerate(hits, 1):
        p = h.payload
        what = p.get("alt_text") or p.get("title") or p.get("caption") or ""
        cos = " ".join(f"{k}={v:.2f}" for k, v in h.scores.items())
        console.print(f"{rank:>3}. [bold]{h.post_id}[/] ({p.get('kind')}, {', '.join(p.get('categories') or [])}) "
                      f"[dim]{cos}[/]\n     {what[:120]}", highlight=False)


@eval_app.command("clip")
@friendly
def eval_clip(data: Path = typer.Option(Path("../shared/data/coco-captions"), "--data",
                                        help="Directory with captions.json and its images.")) -> None:
    """Image-caption retrieval recall@1/@5 per image path (ImageNet bridge; CLIP when configured),
    chance levels, MiniLM caption-to-caption retrieval; prints one JSON object."""
    from models.clip.enrich import ClipConfig
    from models.clip.evaluate import run_clip_eval

    if not (data / "captions.json").exists():
        raise FileNotFoundError(f"{data}/captions.json not found (see ../shared/data/README.md)")
    with err_console.status("evaluating clip"):
        report = run_clip_eval(data, ClipConfig.from_settings(settings()))
    print(json.dumps(report, indent=2))


@bench_app.command("clip")
@friendly
def bench_clip(points: int = typer.Option(100_000, help="Points in the vector-index benchmark."),
               queries: int = typer.Option(200, help="Search queries timed per engine."),
               data: Path = typer.Option(Path("../shared/data/coco-captions"), "--data",
                                         help="Photos for the embedding throughput and the realistic vectors."),
               skip_models: bool = typer.Option(False, "--skip-models", help="Only the vector-index part."),
               random_data: bool = typer.Option(True, "--random/--no-random",
                                                help="Also measure i.i.d. Gaussian vectors (HNSW's worst case).")) -> None:
    """Embedding throughput (batch 1, 8, 32) and vector-index upsert/filtered-search latency with
    recall@10 against exact numpy search, at 100k points; prints one JSON object."""
    from models.clip.bench import run_clip_bench

    with err_console.status("benchmarking clip (the edge optimizer takes minutes)") as st:
        report = run_clip_bench(data, points=points, queries=queries, models=not skip_models,
                                random_data=random_data, on_step=lambda m: st.update(f"bench: {m}"))
    print(json.dumps(report, indent=2))
