"""Copyright Guard's commands: ``pulse copyright match`` (offline, no server), ``pulse eval
copyright`` and ``pulse bench copyright``. ``pulse copyright register`` (publishing a reference to
Kafka) attaches to ``copyright_app`` from the runtime side."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn)
from rich.text import Text

from streams.cli.common import app, bench_app, console, err_console, eval_app, friendly
from streams.cli.tables import RecordTable

copyright_app = typer.Typer(help="Copyright Guard: match files against registered works.",
                            no_args_is_help=True)
app.add_typer(copyright_app, name="copyright")


def progress_bar() -> Progress:
    """A rich progress bar on stderr (stdout stays one JSON document)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True)


def build_bank(references: Path):
    """A ``ReferenceBank`` of every media file under ``references``, with a progress bar; files
    that cannot be fingerprinted are named on stderr and skipped."""
    from models.copyright.bank import ReferenceBank
    from models.copyright.folders import load_references, media_files

    files = media_files(references)
    if not files:
        raise FileNotFoundError(f"{references}: no media files (images, audio or video) in it")
    bank = ReferenceBank()
    with progress_bar() as bar:
        task = bar.add_task("fingerprinting references", total=len(files))
        failed = load_references(bank, files, on_file=lambda _: bar.advance(task))
    for path, reason in failed:
        err_console.print(f"[yellow]skipped reference {path}: {reason}[/]", highlight=False)
    if not len(bank):
        raise FileNotFoundError(f"{references}: none of its {len(files)} media files could be "
                                "fingerprinted")
    err_console.print(f"{len(bank)} references registered from {references}", highlight=False)
    return bank


@copyright_app.command("match")
@friendly
def match(files: List[Path] = typer.Argument(..., help="Uploads to check (image, audio, video)."),
          references: Path = typer.Option(..., "--references", "-r",
                                          help="Folder of reference works; each file's stem is "
                                               "its reference id."),
          as_json: bool = typer.Option(False, "--json", help="One JSON verdict per line."),
          caption: Optional[str] = typer.Option(None, help="Upload caption / title / hashtags: "
                                                           "evidence, never proof.")) -> None:
    """Match files against a folder of reference works, without any server. Bad media gets a
    verdict that says why; the exit code is 1 only when no file could be read."""
    bank = build_bank(references)
    metadata = {"caption": caption} if caption else None
    verdicts = []
    with progress_bar() as bar:
        task = bar.add_task("matching", total=len(files))
        for f in files:
            decision = bank.decision_for_file(f, metadata=metadata)
            verdicts.append(decision.as_json(str(f)))
            if as_json:
                bar.console.file.flush()
                print(json.dumps(verdicts[-1]), flush=True)
            bar.advance(task)
    if not as_json:
        console.print(match_table(verdicts, len(bank)))
    if all(v["error"] for v in verdicts):
        raise typer.Exit(1)


def match_table(verdicts: list[dict], references: int) -> RecordTable:
    """``pulse copyright match``'s listing: per verdict (``CopyrightDecision.as_json``) one line
    with the action, modality and matched reference id, then the file's path and the evidence
    (or the error) on lines below it."""
    table = RecordTable(f"copyright matches against {references} references")
    for col in ("action", "modality", "reference"):
        table.add_column(col)
    for v in verdicts:
        colour = {"ALLOW": "green", "REVIEW": "yellow"}.get(v["action"], "red")
        evidence = v["error"] or (v["reasons"][0] if v["reasons"] else "")
        table.add_row(Text(v["action"], style=colour), v["modality"] or "-", v["reference"] or "-",
                      details=[("file", v["file"]),
                               ("error" if v["error"] else "evidence", evidence)])
    return table


@eval_app.command("copyright")
@friendly
def eval_copyright(references: Optional[Path] = typer.Option(
                       None, help="Folder of reference works (default: real media of "
                                  "../shared/data, see models.copyright.evaluation)."),
                   others: Optional[Path] = typer.Option(
                       None, help="Folder of unrelated files for the false-positive rate."),
                   limit: int = typer.Option(0, help="Use at most this many references per "
                                                     "modality (0: all)."),
                   seed: int = typer.Option(0, help="Seed of the random transformations.")) -> None:
    """Recall per transformation and modality, false-positive rate on unrelated files and latency;
    one JSON object."""
    from models.copyright.evaluation import run_evaluation

    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=None)

        def step(message: str, done: int, total: int) -> None:
            bar.update(task, description=message, completed=done, total=total)

        result = run_evaluation(references, others, limit=limit or None, seed=seed,
                                on_progress=step)
    print(json.dumps(result, indent=2))


@bench_app.command("copyright")
@friendly
def bench_copyright(sizes: str = typer.Option("100000,1000000",
                                              help="PDQ bank sizes, comma-separated."),
                    queries: int = typer.Option(200, help="Bank look-ups per size."),
                    agent: bool = typer.Option(True, help="Also time the copyright_guard agent "
                                                          "through a real broker (starts servers)."),
                    uploads: int = typer.Option(200, help="Uploads for the agent run.")) -> None:
    """Fingerprint cost per image / audio second / video second, PDQ bank look-up p50/p99 against
    a brute-force numpy scan, the robust stage's cost per upload, and the copyright_guard agent's
    events/s through the broker beside the pass-through agent's; one JSON object."""
    from models.copyright.bench import DATA, run_bench

    bank_sizes = tuple(int(s) for s in sizes.split(",") if s.strip())
    with err_console.status("benchmarking copyright") as st:
        def agent_run() -> dict:
            from streams.bench.agents import bench_agent_throughput, copyright_events

            images = sorted((DATA / "coco-captions" / "images").glob("*.jpg"))
            return bench_agent_throughput("copyright_guard", copyright_events(images, uploads=uploads),
                                          on_step=lambda m: st.update(f"bench: {m}"))

        result = run_bench(bank_sizes=bank_sizes, queries=queries,
                           agent_events_per_s=agent_run if agent else None,
                           on_step=lambda m: st.update(f"bench: {m}"))
    print(json.dumps(result, indent=2))
