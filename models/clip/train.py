"""``pulse train clip``: a category head on frozen embeddings, and (``--finetune``) open_clip itself.

:func:`train_clip` runs both on a dataset directory (:mod:`models.clip.dataset`):

1. Every row goes through ``ContentModels.enrich`` -- the exact code clip_ai runs -- so the head's
   training features are the vectors the agent will feed it, and the zero-shot categories of the
   same call are the baseline.
2. The rows are split by group (a photo's captions stay on one side): scikit-learn's
   ``StratifiedGroupKFold`` with ``round(1 / test_fraction)`` folds, the first fold held out.
3. On the training side, grouped 3-fold cross-validation picks ``C`` (mean held-out log-loss)
   and its out-of-fold logits fit the temperature (:func:`models.clip.head.fit_temperature`); the
   head is refitted on the whole training side.
4. Metrics on the held-out side, for the head and for zero-shot: accuracy, macro-F1 (over the
   categories present in the held-out labels or predictions), log-loss, expected calibration
   error (10 equal-width confidence bins); plus grouped 5-fold cross-validation accuracy and
   macro-F1 over all rows (the same selection inside each fold), which varies less on small data.

The artifact goes to ``<out>/<version>/`` (:mod:`models.clip.head`), with ``metrics.json`` and a
``MODEL_CARD.md`` naming the command. ``--finetune`` adds ``<out>/<version>/clip/``
(:mod:`models.clip.finetune`). Last, ``manifest.json`` (:mod:`models.registry`) records every
file's hash, the metrics and the dataset's hashes.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models import registry
from models.clip.dataset import Row, load_dataset
from models.clip.head import ARTIFACTS_DIR, FEATURES, CategoryHead, feature_matrix, fit_head, fit_temperature

class TrainError(ValueError):
    """``pulse train clip`` cannot run as asked (the message says what to change)."""


C_GRID = (1.0, 10.0, 100.0)
"""``C`` values tried (inverse L2 strength on centred unit-vector blocks)."""
MIN_GROUPS = 3
"""A category needs rows from this many groups (photos / posts) to be trained and evaluated: with
fewer, a grouped split cannot put it on both sides. Its rows are set aside (counted in the metrics)."""
DEFAULT_FEATURES = ("semantic", "text")
"""Measured on the COCO captions set (grouped 5-fold CV, ``pulse train clip``): semantic + text gave
accuracy 0.81 / macro-F1 0.71; adding the 1280-d image block 0.78 / 0.65; image alone 0.60 / 0.45
(226 rows, 46 photos; chosen on that data, so optimistic for it)."""


def encoder_versions(models: Any) -> tuple[dict[str, str], dict[str, int]]:
    """``({block: encoder version}, {block: width})`` of a :class:`~models.clip.enrich.ContentModels`."""
    bridge = f"{models.imagenet.version}+{models.minilm.version}+bridge-top{models.bridge.top_k}"
    image = models.clip.version if models.clip else models.imagenet.version
    return ({"semantic": bridge, "text": models.minilm.version, "image": image},
            {"semantic": 384, "text": 384, "image": models.image_dim})


def embed_rows(models: Any, rows: Sequence[Row], batch_size: int = 32) -> tuple[dict[str, list], np.ndarray]:
    """Run ``models.enrich`` over the rows: ``({block: [vector or None]}, zero-shot (n, c))``,
    the zero-shot columns in ``models.category_names`` order.

    Raises ``ValueError`` when a row's image cannot be decoded (a training set should not hold those).
    """
    blocks: dict[str, list] = {name: [] for name in FEATURES}
    zs = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        for row, e in zip(batch, models.enrich([r.upload() for r in batch])):
            if e.media_error:
                raise ValueError(f"post {row.post_id}: image {row.image} not usable: {e.media_error}")
            blocks["semantic"].append(e.semantic)
            blocks["text"].append(e.text)
            blocks["image"].append(e.image)
            zs.append([e.categories.get(c, 0.0) for c in models.category_names])
    return blocks, np.asarray(zs, np.float64)


def _folds(y: Sequence[str], groups: Sequence[str], n_splits: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, min(n_splits, len(set(groups))))
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), list(y), list(groups)))


def classification_metrics(y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, log-loss and 10-bin expected calibration error of ``(n, c)`` probabilities."""
    from sklearn.metrics import f1_score

    classes = list(classes)
    pred = [classes[i] for i in proba.argmax(axis=1)]
    idx = np.asarray([classes.index(t) if t in classes else -1 for t in y_true])
    p_true = np.where(idx >= 0, proba[np.arange(len(idx)), np.maximum(idx, 0)], 0.0)
    conf = proba.max(axis=1)
    correct = np.asarray([a == b for a, b in zip(pred, y_true)], float)
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * np.mean(bins == b)
              for b in range(10) if np.any(bins == b))
    return {"accuracy": float(correct.mean()), "macro_f1": float(f1_score(list(y_true), pred, average="macro",
                                                                         zero_division=0)),
            "log_loss": float(-np.mean(np.log(np.maximum(p_true, 1e-12)))), "ece": float(ece), "n": len(y_true)}


def select_and_fit(x: np.ndarray, y: Sequence[str], groups: Sequence[str], features: dict[str, int], *,
                   encoders: dict[str, str], name: str, seed: int) -> tuple[CategoryHead, dict]:
    """Pick ``C`` by grouped 3-fold CV (log-loss), fit the temperature on the out-of-fold logits,
    refit on all of ``x``. Returns the head and the selection's record."""
    y = list(y)
    folds = _folds(y, groups, 3, seed)
    classes = sorted(set(y))
    best = None
    for c in C_GRID:
        logits = np.full((len(y), len(classes)), -1e9)
        for tr, te in folds:
            h = fit_head(x[tr], [y[i] for i in tr], features, c=c, seed=seed)
            cols = [classes.index(k) for k in h.classes]
            logits[np.ix_(te, cols)] = h.logits(x[te])
        loss = classification_metrics(y, _softmax(logits), classes)["log_loss"]
        if best is None or loss < best[0]:
            best = (loss, c, logits)
    loss, c, logits = best
    t = fit_temperature(logits, np.asarray([classes.index(k) for k in y]))
    head = fit_head(x, y, features, c=c, temperature=t, encoders=encoders, name=name, seed=seed)
    return head, {"C": c, "C_grid": list(C_GRID), "cv_log_loss": loss, "temperature": t}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_head(models: Any, rows: Sequence[Row], out_dir: Path, *, features: Sequence[str] = DEFAULT_FEATURES,
               test_fraction: float = 0.25, seed: int = 0, name: str = "category-head",
               command: str = "", dataset: str = "") -> tuple[CategoryHead, dict]:
    """Embed, split, select, fit, evaluate against zero-shot, and write the artifact to ``out_dir``.

    Returns ``(head, metrics)``. Raises ``ValueError`` for an unknown feature block, or when the
    training side has fewer than two categories.
    """
    t0 = time.perf_counter()
    bad = set(features) - set(FEATURES)
    if bad or not features:
        raise ValueError(f"feature blocks are some of {FEATURES}, got {list(features)}")
    group_count = Counter()
    for cat, _ in {(r.category, r.split_group) for r in rows}:
        group_count[cat] += 1
    set_aside = {c: n for c, n in group_count.items() if n < MIN_GROUPS}
    all_rows = len(rows)
    rows = [r for r in rows if r.category not in set_aside]
    if len({r.category for r in rows}) < 2:
        raise TrainError(f"fewer than two categories have rows from {MIN_GROUPS} or more groups "
                         f"(per category: {dict(group_count)}); label more posts")
    encoders, widths = encoder_versions(models)
    feats = {f: widths[f] for f in FEATURES if f in features}
    blocks, zero_shot = embed_rows(models, rows)
    x = feature_matrix(feats, blocks)
    y = [r.category for r in rows]
    groups = [r.split_group for r in rows]
    tr, te = _folds(y, groups, max(2, round(1 / test_fraction)), seed)[0]
    head, selection = select_and_fit(x[tr], [y[i] for i in tr], [groups[i] for i in tr], feats,
                                     encoders={f: encoders[f] for f in feats}, name=name, seed=seed)
    y_te = [y[i] for i in te]
    held_out = {"head": classification_metrics(y_te, head.predict_proba(x[te]), head.classes),
                "zero_shot": classification_metrics(y_te, zero_shot[te], models.category_names)}
    cv = {"head": [], "zero_shot": []}
    for ftr, fte in _folds(y, groups, 5, seed + 1):
        h, _ = select_and_fit(x[ftr], [y[i] for i in ftr], [groups[i] for i in ftr], feats,
                              encoders={}, name=name, seed=seed)
        y_f = [y[i] for i in fte]
        cv["head"].append(classification_metrics(y_f, h.predict_proba(x[fte]), h.classes))
        cv["zero_shot"].append(classification_metrics(y_f, zero_shot[fte], models.category_names))
    cv_summary = {k: {m: float(np.mean([f[m] for f in v])) for m in ("accuracy", "macro_f1")} | {"folds": len(v)}
                  for k, v in cv.items()}
    majority = Counter(y[i] for i in tr).most_common(1)[0][0]
    metrics = {
        "rows": len(rows), "rows_in_dataset": all_rows, "set_aside_categories": set_aside,
        "min_groups": MIN_GROUPS, "groups": len(set(groups)), "train_rows": len(tr), "held_out_rows": len(te),
        "held_out_groups": len({groups[i] for i in te}), "features": feats, "classes": list(head.classes),
        "label_counts": dict(Counter(y).most_common()),
        "label_sources": dict(Counter(r.label_source or "unknown" for r in rows).most_common()),
        "selection": selection, "held_out": held_out,
        "majority_class_accuracy": float(np.mean([t == majority for t in y_te])),
        "grouped_cv_5fold": cv_summary, "seed": seed, "test_fraction": test_fraction,
        "seconds": round(time.perf_counter() - t0, 1)}
    head.save(out_dir, extra_config={"command": command, "dataset": dataset, "model": models.model,
                                     "model_version": models.model_version, "trained_at": _now(),
                                     "selection": selection})
    metrics = {"version": head.version, **metrics}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out_dir / "MODEL_CARD.md").write_text(model_card(head, metrics, command, dataset), encoding="utf-8")
    return head, metrics


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def model_card(head: CategoryHead, metrics: dict, command: str, dataset: str) -> str:
    """The artifact's MODEL_CARD.md: what it is, the command, the data, the held-out figures."""
    h, z = metrics["held_out"]["head"], metrics["held_out"]["zero_shot"]
    ch, cz = metrics["grouped_cv_5fold"]["head"], metrics["grouped_cv_5fold"]["zero_shot"]
    return f"""# Category head {head.version}

Multinomial logistic regression (scikit-learn, L2, C={metrics['selection']['C']}, temperature
{metrics['selection']['temperature']:.3f}) on clip_ai's frozen embeddings: {', '.join(f'{k} ({v}-d)' for k, v in head.features.items())}.
Encoders: {', '.join(f'{k}: {v}' for k, v in head.encoders.items())}.
Load it with `PULSE_CLIP_CATEGORY_HEAD=<this directory or its name under models/clip/artifacts>`;
clip_ai then reports its categories (only these {len(head.classes)}: {', '.join(head.classes)}) and adds
`{head.version}` to `model_version`. It refuses to load next to other encoders.

## Made by

```
{command}
```

Dataset: `{dataset}` ({metrics['rows_in_dataset']} rows; {metrics['rows']} used, {metrics['groups']} groups; labels
from {', '.join(f'{k} ({v})' for k, v in metrics['label_sources'].items())}). Categories set aside for
having rows from fewer than {metrics['min_groups']} groups: {metrics['set_aside_categories'] or 'none'}.

## Held-out ({metrics['held_out_rows']} rows, {metrics['held_out_groups']} groups, split by group)

| | accuracy | macro-F1 | log-loss | ECE |
| --- | --- | --- | --- | --- |
| this head | {h['accuracy']:.3f} | {h['macro_f1']:.3f} | {h['log_loss']:.3f} | {h['ece']:.3f} |
| zero-shot taxonomy (same run) | {z['accuracy']:.3f} | {z['macro_f1']:.3f} | {z['log_loss']:.3f} | {z['ece']:.3f} |

Majority class: {metrics['majority_class_accuracy']:.3f}. Grouped 5-fold CV over all rows:
head accuracy {ch['accuracy']:.3f} / macro-F1 {ch['macro_f1']:.3f}; zero-shot {cz['accuracy']:.3f} / {cz['macro_f1']:.3f}.

## Limits

Trained on {metrics['rows']} rows: the figures carry wide uncertainty (one held-out row is
{100 / max(1, metrics['held_out_rows']):.1f} points of accuracy). The head knows only the categories
present in its training rows. Labels are only as good as their source (above): labels from
clip_ai's own zero-shot categories teach the head to imitate zero-shot, not to beat it.
"""


def default_out() -> Path:
    return ARTIFACTS_DIR


def split_rows(rows: Sequence[Row], test_fraction: float = 0.25, seed: int = 0) -> tuple[list[Row], list[Row]]:
    """``(train, held out)``: the grouped, stratified split :func:`train_head` uses (first fold of
    ``StratifiedGroupKFold(round(1 / test_fraction))``)."""
    tr, te = _folds([r.category for r in rows], [r.split_group for r in rows], max(2, round(1 / test_fraction)),
                    seed)[0]
    return [rows[i] for i in tr], [rows[i] for i in te]


def train_clip(dataset_dir: Path | str, out_root: Path | str, version: str, config: Any, *,
               features: Sequence[str] = DEFAULT_FEATURES, finetune: bool = False, epochs: int = 2,
               batch_size: int = 16, lr: float = 1e-5, max_steps: int | None = None, test_fraction: float = 0.25,
               seed: int = 0, command: str = "", models: Any = None) -> dict:
    """``pulse train clip``: the category head (always) and the open_clip fine-tune (``finetune``).

    ``config``: a :class:`~models.clip.enrich.ClipConfig` (its ``category_head`` is ignored: the
    head is trained on, and compared with, zero-shot). Writes ``<out_root>/<version>/`` (the
    head) and, with ``finetune``, ``<out_root>/<version>/clip/``. Returns
    ``{"head": metrics, "finetune": metrics or None, "artifact": dir}``.

    Raises :class:`TrainError` when ``finetune`` is asked without a CLIP checkpoint in ``config``, or
    when ``<out_root>/<version>`` already holds an artifact (versions are immutable).
    """
    from dataclasses import replace

    from models.clip.enrich import ContentModels

    if finetune and not config.clip_checkpoint:
        raise TrainError("--finetune needs a CLIP checkpoint to start from: set PULSE_CLIP_CHECKPOINT "
                         "(and PULSE_CLIP_MODEL / PULSE_CLIP_MODEL_CONFIG)")
    out_dir = Path(out_root) / version
    if (out_dir / "config.json").exists():
        raise TrainError(f"{out_dir} already holds a trained version; choose another --version")
    models = models or ContentModels(replace(config, category_head=None))
    rows = load_dataset(dataset_dir, models.category_names)
    manifest = Path(dataset_dir) / "dataset.json"
    source = json.loads(manifest.read_text()).get("source") if manifest.is_file() else None
    described = f"{dataset_dir} (built from {source})" if source else str(dataset_dir)
    _, head_metrics = train_head(models, rows, out_dir, features=features, test_fraction=test_fraction, seed=seed,
                                 name=f"category-head.{version}", command=command, dataset=described)
    report = {"artifact": str(out_dir), "head": head_metrics, "finetune": None}
    if finetune:
        from models.clip.finetune import finetune_clip

        train_rows, test_rows = split_rows(rows, test_fraction, seed)
        report["finetune"] = finetune_clip(config.clip_model, config.clip_checkpoint, train_rows, test_rows,
                                           out_dir / "clip", model_config=config.clip_model_config, epochs=epochs,
                                           batch_size=batch_size, lr=lr, max_steps=max_steps, seed=seed,
                                           command=command)
    data_files = {name: registry.data_digest(Path(dataset_dir) / name)
                  for name in ("rows.jsonl", "dataset.json", "media") if (Path(dataset_dir) / name).exists()}
    registry.write_manifest(out_dir, family="clip", version=version, command=command or None,
                            model_version=head_metrics["version"], training_data={
                                "dataset": described, "files": data_files,
                                **{k: head_metrics[k] for k in ("rows_in_dataset", "rows", "groups", "train_rows",
                                                                "held_out_rows", "test_fraction", "seed")}})
    return report
