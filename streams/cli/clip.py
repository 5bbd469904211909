"""``pulse search``, ``pulse eval clip``, ``pulse bench clip``, ``pulse train clip``, ``pulse dataset clip``:
CLIP AI's commands."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streams.cli.common import (app, bench_app, console, dataset_app, err_console, eval_app, friendly, register_user_errors,
                     settings, train_app)


register_user_errors("models.clip.openclip:ClipUnavailable", "streams.stores.vectors.base:VectorIndexError",
                     "models.clip.dataset:DatasetError", "models.clip.head:HeadMismatch",
                     "models.clip.train:TrainError")


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
    from streams.query.read_side import get_read_side

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
    with get_read_side(settings()).search as s:
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
    from streams.bench.clip import run_clip_bench

    with err_console.status("benchmarking clip (the edge optimizer takes minutes)") as st:
        report = run_clip_bench(data, points=points, queries=queries, models=not skip_models,
                                random_data=random_data, on_step=lambda m: st.update(f"bench: {m}"))
    print(json.dumps(report, indent=2))


@train_app.command("clip")
@friendly
def train_clip(dataset: Path = typer.Option(..., "--dataset", help="Dataset directory (rows.jsonl; see "
                                                                    "models/clip/dataset.py)."),
               out: Optional[Path] = typer.Option(None, "--out", help="Artifacts root (default models/clip/artifacts)."),
               version: Optional[str] = typer.Option(None, "--version",
                                                     help="Version name (default clip-<UTC timestamp>)."),
               features: str = typer.Option("semantic,text", "--features",
                                            help="Embedding blocks the head reads: semantic, text, image."),
               finetune: bool = typer.Option(False, "--finetune", help="Also fine-tune open_clip contrastively "
                                                                        "(needs PULSE_CLIP_CHECKPOINT)."),
               epochs: int = typer.Option(2, "--epochs", min=1, help="Fine-tune epochs."),
               batch_size: int = typer.Option(16, "--batch-size", min=2, help="Fine-tune batch size."),
               lr: float = typer.Option(1e-5, "--lr", help="Fine-tune AdamW learning rate."),
               test_fraction: float = typer.Option(0.25, "--test-fraction", min=0.05, max=0.5,
                                                   help="Held-out share (split by group)."),
               seed: int = typer.Option(0, "--seed")) -> None:
    """Train a category head on frozen embeddings (and, with --finetune, open_clip itself) from a
    dataset directory; writes a versioned artifact with metrics and a model card; prints the
    metrics as one JSON object. Load it with PULSE_CLIP_CATEGORY_HEAD=<version or directory>."""
    import shlex
    import time as _time

    from models.clip.enrich import ClipConfig
    from models.clip.head import ARTIFACTS_DIR
    from models.clip.train import train_clip as run

    version = version or _time.strftime("clip-%Y%m%d-%H%M%S", _time.gmtime())
    if "/" in version or version.startswith("."):
        raise typer.BadParameter("a version is a plain name", param_hint="'--version'")
    blocks = tuple(b.strip() for b in features.split(",") if b.strip())
    args = ["pulse", "train", "clip", "--dataset", str(dataset), "--version", version, "--features", features,
            "--test-fraction", str(test_fraction), "--seed", str(seed)]
    if out is not None:
        args += ["--out", str(out)]
    if finetune:
        args += ["--finetune", "--epochs", str(epochs), "--batch-size", str(batch_size), "--lr", str(lr)]
    command = " ".join(shlex.quote(a) for a in args)
    with err_console.status(f"training clip {version}"):
        report = run(dataset, out or ARTIFACTS_DIR, version, ClipConfig.from_settings(settings()), features=blocks,
                     finetune=finetune, epochs=epochs, batch_size=batch_size, lr=lr, test_fraction=test_fraction,
                     seed=seed, command=command)
    print(json.dumps(report, indent=2))


@dataset_app.command("clip")
@friendly
def dataset_clip(out: Path = typer.Option(..., "--out", help="Directory to write rows.jsonl and media/ into."),
                 coco: Optional[Path] = typer.Option(None, "--coco", help="Build from a COCO-captions directory "
                                                                          "instead of the topics.")) -> None:
    """Build a CLIP training set: from the uploads, content-enriched and erasure-requests topics
    (labels: creator hashtags, else clip_ai's top category), or with --coco from captioned photos
    (labels: zero-shot of the other captions of the photo). Prints the manifest as JSON."""
    if coco is not None:
        from models.clip.dataset import coco_dataset
        from models.clip.taxonomy import load_taxonomy
        from models.clip.text import MiniLM

        if not (coco / "captions.json").exists():
            raise FileNotFoundError(f"{coco}/captions.json not found (see ../shared/data/README.md)")
        manifest = coco_dataset(coco, out, MiniLM(), load_taxonomy())
    else:
        from replay.training import export_clip_dataset

        with err_console.status("reading uploads and content-enriched"):
            manifest = export_clip_dataset(settings(), out)
    print(json.dumps(manifest, indent=2))
