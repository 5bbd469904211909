"""Fixtures shared by unit-tier test modules."""
from __future__ import annotations

import json

import pytest

TINY_CLIP = "pulse-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A directory with a tiny open_clip model config (``pulse-test-tiny-clip.json``, registered
    with open_clip) and its randomly initialised, seeded weights (``tiny.pt``): the real open_clip
    code paths without downloading a checkpoint."""
    import open_clip
    import torch

    d = tmp_path_factory.mktemp("tiny-clip")
    (d / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(str(d))
    torch.manual_seed(0)
    torch.save(open_clip.create_model(TINY_CLIP).state_dict(), d / "tiny.pt")
    return d
