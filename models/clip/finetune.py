"""Contrastive fine-tuning of the configured open_clip model on the platform's (image, caption) pairs.

``pulse train clip --finetune`` with ``PULSE_CLIP_CHECKPOINT`` set: the model named by
``PULSE_CLIP_MODEL`` is loaded from that checkpoint, trained with open_clip's own symmetric
InfoNCE loss (``open_clip.ClipLoss``, as in Radford et al. 2021) on the training side of the
dataset's grouped split, on the CPU with AdamW (small batches; a few epochs), and written as
``<dir>/open_clip_model.safetensors`` (a plain state dict; open_clip loads ``.safetensors``
checkpoints as ``pretrained=``) with ``config.json`` and ``metrics.json``.

Metrics: image-to-caption and caption-to-image recall@1/@5 on the held-out side
(:func:`models.clip.evaluate.retrieval`; every held-out photo with all its held-out captions),
before and after, with the chance level. Point clip_ai at the result with
``PULSE_CLIP_CHECKPOINT=<dir>/open_clip_model.safetensors``; a category head trained on the old
checkpoint's vectors then refuses to load and must be retrained.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from models.clip.dataset import Row
from models.clip.evaluate import chance, retrieval
from models.clip.imagenet import file_version


def _pairs(rows: Sequence[Row]) -> tuple[list[Path], list[str], np.ndarray]:
    """``(unique images, captions, owner)`` of the rows that have an image and a caption."""
    images: list[Path] = []
    index: dict[Path, int] = {}
    captions, owner = [], []
    for r in rows:
        text = " ".join(x for x in (r.title or "", r.caption) if x.strip())
        if r.image is None or not text:
            continue
        if r.image not in index:
            index[r.image] = len(images)
            images.append(r.image)
        captions.append(text)
        owner.append(index[r.image])
    return images, captions, np.asarray(owner, int)


def _evaluate(model, preprocess, tokenizer, images: list, captions: list[str], owner: np.ndarray) -> dict:
    import torch

    with torch.inference_mode():
        iv = torch.cat([model.encode_image(torch.stack([preprocess(im) for im in images[i:i + 32]]))
                        for i in range(0, len(images), 32)])
        tv = torch.cat([model.encode_text(tokenizer(captions[i:i + 64])) for i in range(0, len(captions), 64)])
    iv = torch.nn.functional.normalize(iv, dim=-1).numpy()
    tv = torch.nn.functional.normalize(tv, dim=-1).numpy()
    return retrieval(iv, tv, owner)


def finetune_clip(model_name: str, checkpoint: str | Path, train_rows: Sequence[Row], test_rows: Sequence[Row],
                  out_dir: Path | str, *, model_config: str | Path | None = None, epochs: int = 2,
                  batch_size: int = 16, lr: float = 1e-5, weight_decay: float = 0.1, max_steps: int | None = None,
                  seed: int = 0, command: str = "") -> dict:
    """Fine-tune, evaluate before/after, write the checkpoint; returns the metrics dict.

    ``max_steps``: stop after this many optimiser steps (tests use 1). Raises
    :class:`models.clip.openclip.ClipUnavailable` when the model or checkpoint cannot be loaded,
    ``ValueError`` with fewer than two training pairs.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    from models.clip.openclip import ClipUnavailable
    from models.fingerprints.image import load_image

    t0 = time.perf_counter()
    if model_config:
        open_clip.add_model_config(str(model_config))
    try:
        model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            model_name, pretrained=str(checkpoint), device="cpu")
    except (RuntimeError, KeyError, ValueError, OSError) as e:
        raise ClipUnavailable(f"loading open_clip {model_name} from {checkpoint}: {e}") from e
    tokenizer = open_clip.get_tokenizer(model_name)
    tr_images, tr_captions, tr_owner = _pairs(train_rows)
    te_images, te_captions, te_owner = _pairs(test_rows)
    if len(tr_captions) < 2:
        raise ValueError(f"fine-tuning needs at least two (image, caption) training pairs, got {len(tr_captions)}")
    tr_pil = [load_image(p, apply_exif_orientation=True).convert("RGB") for p in tr_images]
    te_pil = [load_image(p, apply_exif_orientation=True).convert("RGB") for p in te_images]
    model.eval()
    before = _evaluate(model, preprocess_val, tokenizer, te_pil, te_captions, te_owner) if te_captions else None

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    loss_fn = open_clip.ClipLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps, losses = 0, []
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(tr_captions))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            # one caption per photo in a batch: two captions of one photo would be false negatives
            _, first = np.unique(tr_owner[idx], return_index=True)
            idx = idx[np.sort(first)]
            if len(idx) < 2:
                continue
            images = torch.stack([preprocess_train(tr_pil[tr_owner[i]]) for i in idx])
            texts = tokenizer([tr_captions[i] for i in idx])
            out = model(images, texts)
            img, txt, scale = (out["image_features"], out["text_features"], out["logit_scale"]) \
                if isinstance(out, dict) else out[:3]
            loss = loss_fn(img, txt, scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():  # CLIP clamps the learned temperature at 100 (Radford et al. 2021)
                model.logit_scale.clamp_(0, np.log(100))
            losses.append(loss.item())
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        if max_steps is not None and steps >= max_steps:
            break
    model.eval()
    after = _evaluate(model, preprocess_val, tokenizer, te_pil, te_captions, te_owner) if te_captions else None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "open_clip_model.safetensors"))
    version = file_version(out_dir / "open_clip_model.safetensors", model_name)
    per_image = max(1, round(len(te_captions) / max(1, len(te_images))))
    metrics = {"version": version, "model": model_name, "base_checkpoint": str(checkpoint),
               "train_pairs": len(tr_captions), "train_images": len(tr_images),
               "held_out_pairs": len(te_captions), "held_out_images": len(te_images),
               "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "steps": steps,
               "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
               "held_out_before": before, "held_out_after": after,
               "chance": chance(len(te_images), per_image) if te_images else None,
               "seconds": round(time.perf_counter() - t0, 1)}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out_dir / "config.json").write_text(json.dumps(
        {"format": "pulse-open-clip-finetune/1", "version": version, "model": model_name,
         "model_config": str(model_config) if model_config else None, "checkpoint": "open_clip_model.safetensors",
         "base_checkpoint": str(checkpoint), "command": command,
         "use": f"PULSE_CLIP_MODEL={model_name} PULSE_CLIP_CHECKPOINT={out_dir / 'open_clip_model.safetensors'}"},
        indent=2) + "\n", encoding="utf-8")
    return metrics
