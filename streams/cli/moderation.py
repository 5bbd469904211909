"""Content Guard's model commands: ``pulse train moderation``, ``pulse eval moderation``,
``pulse moderate`` and ``pulse bench moderation``. Each prints one JSON object on stdout;
progress goes to stderr."""
from __future__ import annotations

import contextlib
import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from streams.cli.common import app, bench_app, err_console, eval_app, friendly, register_user_errors, train_app

DEFAULT_DATA = Path("../shared/data/davidson/labeled_dev.csv")
MODEL_HELP = ("Model version under models/moderation/artifacts/, or an artifact directory "
              "(default: the shipped one).")


register_user_errors("models.moderation.datasets:DataError", "models.moderation.policy:PolicyError",
                     "models.moderation.artifacts:ModelNotFound",
                     "models.moderation.encoders:EncoderUnavailable")


def _print(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


@contextlib.contextmanager
def _progress():
    """A ``progress(stage, done, total)`` callback drawing rich bars on stderr."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield report


@train_app.command("moderation")
@friendly
def train_moderation(
    data: List[Path] = typer.Option(..., "--data", help=(
        "Labelled CSV/JSONL; repeatable. Davidson columns `tweet,class` (0 hate, 1 offensive, "
        "2 neither) or review-decision exports `text,class` (CSV) / {\"text\",\"class\"} (JSONL), "
        "class 0/1/2 or hate/harassment/none.")),
    unlabelled: Optional[Path] = typer.Option(None, "--unlabelled", help=(
        "Unlabelled text for distillation: a Stack Exchange dump directory (Posts.xml, "
        "Comments.xml), one such XML, a .txt (one text per line) or a CSV/JSONL with `text`.")),
    version: str = typer.Option("davidson-v2", "--version", help="Artifact name to write."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the artifact here instead."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute encoder outputs."),
) -> None:
    """Train the fast and heavy text tiers (and a distilled fast tier), calibrate them on a
    validation split, and write a versioned artifact with metrics.json and MODEL_CARD.md."""
    from models.moderation.training import default_cache_dir, train

    command = "pulse train moderation " + " ".join(
        shlex.quote(a) for a in sys.argv[sys.argv.index("moderation") + 1:]) if "moderation" in sys.argv else ""
    with _progress() as report:
        res = train(data, unlabelled, version, out_dir=out, command=command, progress=report,
                    cache_dir=None if no_cache else default_cache_dir())
    m = res.metrics
    v = m["variants"][m["default_fast"]]
    _print({"artifact": str(res.directory), "version": version, "train_seconds": round(res.seconds, 1),
            "default_fast": m["default_fast"], "validation": {
                "weighted_f1": v["system"]["weighted_f1"], "hate": v["system"]["per_class"]["hate"],
                "share_decided": v["share_decided"]}})


@eval_app.command("moderation")
@friendly
def eval_moderation(
    data: Path = typer.Option(DEFAULT_DATA, "--data", help="Labelled CSV/JSONL (held-out rows only are used)."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    plot: Optional[Path] = typer.Option(None, "--plot", help=(
        "Also write a PNG of the hate precision-recall curves (fast tier, heavy tier, baseline) "
        "with the operating points.")),
    no_baseline: bool = typer.Option(False, "--no-baseline", help=(
        "Skip training Davidson et al.'s method on the same rows (about 15 s).")),
) -> None:
    """Per-class precision/recall/F1, weighted F1, share decided per tier, latency per tier, the
    Davidson anchor, Davidson et al.'s method trained and scored on the same rows in the same run,
    and the distilled-vs-undistilled comparison, on rows the model never saw."""
    from models.moderation.evaluation import evaluate

    with _progress() as report:
        _print(evaluate(str(data), model, progress=report, baseline=not no_baseline,
                        plot=str(plot) if plot else None))


@app.command()
@friendly
def moderate(
    text: Optional[List[str]] = typer.Option(None, "--text", help="Text to moderate (repeatable)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Image file."),
    video: Optional[Path] = typer.Option(None, "--video", help="Video file (keyframes)."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
) -> None:
    """Moderate a text, an image or a video and print one verdict as JSON (several inputs: the
    combined verdict, strictest action wins, with each part)."""
    from models.moderation.tiers import combine, load_moderator

    if not text and image is None and video is None:
        raise typer.BadParameter("give --text, --image or --video")
    mod = load_moderator(model)
    parts = list(mod.moderate_texts(list(text))) if text else []
    if image is not None:
        parts.append(mod.moderate_image(image))
    if video is not None:
        parts.append(mod.moderate_video(video))
    if len(parts) == 1:
        _print(parts[0].to_json())
    else:
        _print(combine(parts, mod.policy).to_json() | {"parts": [p.to_json() for p in parts]})


@bench_app.command("moderation")
@friendly
def bench_moderation(
    data: Path = typer.Option(DEFAULT_DATA, "--data", help="Labelled CSV whose texts are timed."),
    images: Path = typer.Option(Path("../shared/data/coco-captions/images"), "--images",
                                help="Directory of real photos for the image tier."),
    texts: int = typer.Option(2000, "--texts", help="Texts timed one per call on the fast tier."),
    heavy_texts: int = typer.Option(100, "--heavy-texts", help="Texts timed on the heavy tier."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    agent: bool = typer.Option(True, help="Also time the content_guard agent through a real "
                                          "broker beside the pass-through agent (starts servers)."),
    uploads: int = typer.Option(2000, "--uploads", help="Text uploads for the agent run."),
) -> None:
    """Fast-tier latency p50/p99 and texts/s (baseline: alt-profanity-check, same run), heavy tier
    per text, open_nsfw per image, and the content_guard agent's events/s through the broker."""
    from models.moderation.bench import bench
    from models.moderation.datasets import read_labelled

    rows = read_labelled(data)
    imgs = sorted(p for p in images.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
        if images.is_dir() else []
    with err_console.status("benchmarking") as status:
        def agent_run() -> dict:
            from streams.bench.agents import bench_agent_throughput, moderation_events

            return bench_agent_throughput("content_guard",
                                          moderation_events([r.text for r in rows], uploads),
                                          on_step=lambda m: status.update(f"agent: {m}"))

        _print(bench([r.text for r in rows], imgs, model, n_fast=texts, n_heavy=heavy_texts,
                     agent_events_per_s=agent_run if agent else None,
                     progress=lambda s: status.update(s)))
