"""``pulse models list``: the model registry (:mod:`models.registry`), with the version each
family's setting loads marked "in use"."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from streams.cli.common import app, console, err_console, friendly, register_user_errors, settings
from streams.cli.tables import RecordTable
from streams.settings import REPO_ROOT, Settings

models_app = typer.Typer(help="Trained model artifacts: versions, hashes, metrics, training data.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


register_user_errors("models.registry:RegistryError")


def in_use(s: Settings) -> tuple[dict[str, Path], list[str]]:
    """``({family: artifact directory the settings load}, [notes])``.

    moderation: ``PULSE_MODERATION_MODEL`` (unset: the shipped default); clip: the category head
    ``PULSE_CLIP_CATEGORY_HEAD`` (unset: none, zero-shot categories); collaborative:
    ``PULSE_COLLABORATIVE_MODEL`` (unset: none). A setting that names no
    artifact becomes a note instead of an error, so the listing still prints.
    """
    from models.clip.head import HeadNotFound, resolve_head
    from models.moderation.artifacts import ModelNotFound, resolve

    chosen, notes = {}, []
    try:
        chosen["moderation"] = resolve(s.moderation_model)
    except ModelNotFound as exc:
        notes.append(f"PULSE_MODERATION_MODEL: {exc}")
    if s.clip_category_head:
        try:
            chosen["clip"] = resolve_head(s.clip_category_head)
        except HeadNotFound as exc:
            notes.append(f"PULSE_CLIP_CATEGORY_HEAD: {exc}")
    else:
        notes.append("clip: no category head in use (PULSE_CLIP_CATEGORY_HEAD unset: zero-shot categories)")
    if s.collaborative_model:
        from models.ranking.collaborative import resolve as resolve_cf

        d = resolve_cf(s.home, s.collaborative_model)
        if d.is_dir():
            chosen["collaborative"] = d
        else:
            notes.append(f"PULSE_COLLABORATIVE_MODEL: no collaborative model at {d} "
                         f"(train one with `pulse train collaborative`)")
    else:
        notes.append("collaborative: no model in use (PULSE_COLLABORATIVE_MODEL unset: feed_ranker "
                     "has no collaborative candidate source)")
    return chosen, notes


def key_metrics(family: str, metrics: dict) -> list[tuple[str, float]]:
    """Up to three headline figures of an artifact's metrics, ``[(label, value)]``.

    moderation: the default fast model's whole-system validation weighted F1 and hate
    precision/recall; clip: the head's held-out accuracy, macro-F1 and ECE; another family: its
    first three top-level numbers.
    """
    def at(*keys):
        v = metrics
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return v

    if family == "moderation":
        system = at("variants", str(metrics.get("default_fast")), "system") or {}
        hate = at("variants", str(metrics.get("default_fast")), "system", "per_class", "hate") or {}
        found = [("weighted F1", system.get("weighted_f1")), ("hate P", hate.get("precision")),
                 ("hate R", hate.get("recall"))]
    elif family == "clip":
        head = at("held_out", "head") or {}
        found = [("acc", head.get("accuracy")), ("macro-F1", head.get("macro_f1")), ("ECE", head.get("ece"))]
    else:
        found = list(metrics.items())
    return [(label, v) for label, v in found
            if isinstance(v, (int, float)) and not isinstance(v, bool)][:3]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


@models_app.command("list")
@friendly
def models_list(as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
                check: bool = typer.Option(False, "--verify", help=(
                    "Recompute every file's SHA-256 against manifest.json; exit 1 if a file is "
                    "missing, changed or extra."))) -> None:
    """Every trained artifact (models/*/artifacts and $PULSE_HOME/models/<family>): version,
    creation time, files, size, key metrics, status, and which version the settings load."""
    from models.registry import default_roots, list_models, read_entry, verify

    s = settings()
    entries = list_models(default_roots(REPO_ROOT, s.home))
    chosen, notes = in_use(s)
    listed = {e.path.resolve() for e in entries}
    entries += [read_entry(f, d) for f, d in chosen.items() if d.resolve() not in listed]
    problems = {e.path: verify(e) if check and e.has_manifest else [] for e in entries}
    using = {d.resolve() for d in chosen.values()}
    if as_json:
        rows = [e.to_json() | {"in_use": e.path.resolve() in using}
                | ({"problems": problems[e.path]} if check else {}) for e in entries]
        print(json.dumps(rows, indent=2))
    else:
        table = RecordTable(f"{len(entries)} model artifact(s)"
                            + ("" if check else "; hashes not checked (--verify checks them)"))
        for col in ("family", "version", "created", "files", "size", "status", "loaded"):
            table.add_column(col, justify="right" if col in ("files", "size") else "left")
        for e in entries:
            n = len(problems[e.path])
            status = e.status if not n else f"{n} problem{'s' if n > 1 else ''}"
            figures = ", ".join(f"{label} {v:.3g}" for label, v in key_metrics(e.family, e.metrics))
            table.add_row(e.family, e.version, (e.created_at or "-")[:10],
                          str(len(e.files)), _size(e.bytes), status,
                          "in use" if e.path.resolve() in using else "",
                          details=[("metrics", figures), ("model_version", e.model_version or ""),
                                   ("path", str(e.path))] + [("problem", p) for p in problems[e.path]])
        console.print(table)
    for note in notes:  # beside JSON, on stderr so stdout stays one JSON document
        (err_console if as_json else console).print(note, highlight=False, markup=False)
    bad = sum(1 for p in problems.values() if p)
    if bad:
        err_console.print(f"[bold red]error:[/] {bad} artifact(s) do not match their manifest.json")
        raise typer.Exit(1)
