"""open_clip image and text towers, with the model and weights that settings name.

``OpenClipTower("ViT-B-32", "/models/vit-b-32-laion2b.pt")`` runs
``open_clip.create_model_and_transforms(name, pretrained=<checkpoint>)``: ``checkpoint`` is a
local file (a state dict saved by ``torch.save`` or an open_clip/OpenAI checkpoint), or a
pretrained tag (``"laion2b_s34b_b79k"``) where the deployment can download weights (not here:
every hub download fails on this machine, so Pulse never falls back to one silently).
``model_config`` registers extra model configs (a JSON file or a directory of them, open_clip's
``add_model_config``) for architectures open_clip does not ship, e.g. the tiny model the tests
build.

Embeddings are L2-normalised ``float32``; image and text embeddings share one space
(``embed_dim``, 512 for ViT-B/32), so their dot product is CLIP's cosine similarity.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from models.clip.imagenet import file_version


class ClipUnavailable(RuntimeError):
    """The named open_clip model or checkpoint cannot be loaded (the message says why)."""


class OpenClipTower:
    """A loaded open_clip model: ``encode_images`` / ``encode_texts`` -> ``(n, dim)`` unit vectors.

    Raises :class:`ClipUnavailable` for an unknown model name, a checkpoint that is not a file
    and not a known pretrained tag, or weights that do not fit the model.
    """

    def __init__(self, model_name: str, checkpoint: str | Path, *, model_config: str | Path | None = None) -> None:
        import open_clip
        import torch

        if model_config:
            if not Path(model_config).exists():
                raise ClipUnavailable(f"open_clip model config {model_config} does not exist")
            open_clip.add_model_config(str(model_config))
        if model_name not in open_clip.list_models():
            raise ClipUnavailable(f"open_clip has no model {model_name!r} (PULSE_CLIP_MODEL); "
                                  f"register its JSON config with PULSE_CLIP_MODEL_CONFIG")
        checkpoint = str(checkpoint)
        is_file = Path(checkpoint).is_file()
        if not is_file and checkpoint not in open_clip.list_pretrained_tags_by_model(model_name):
            raise ClipUnavailable(f"CLIP checkpoint {checkpoint!r} is neither a file nor a pretrained tag "
                                  f"of {model_name} (PULSE_CLIP_CHECKPOINT)")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=checkpoint,
                                                                         device="cpu")
        except (RuntimeError, KeyError, ValueError, OSError) as e:  # shape mismatch, bad pickle, no download
            raise ClipUnavailable(f"loading open_clip {model_name} from {checkpoint}: {e}") from e
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.model_name = model_name
        self.name = f"open_clip.{model_name}"
        self.version = file_version(Path(checkpoint), model_name) if is_file else f"{model_name}-{checkpoint}"
        with torch.inference_mode():
            self.dim = int(self.model.encode_text(self.tokenizer(["a"])).shape[1])

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """``(n, dim) float32`` unit vectors of PIL images (RGB-converted by the model's transform)."""
        import torch

        out = []
        for start in range(0, len(images), batch_size):
            x = torch.stack([self.preprocess(im.convert("RGB")) for im in images[start:start + batch_size]])
            with torch.inference_mode():
                out.append(torch.nn.functional.normalize(self.model.encode_image(x), dim=-1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(n, dim) float32`` unit vectors of texts (truncated to the model's context length)."""
        import torch

        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start:start + batch_size]))
            with torch.inference_mode():
                out.append(torch.nn.functional.normalize(self.model.encode_text(tokens), dim=-1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
