"""Technical quality, alt-text and hashtag text: pure functions on real and synthetic images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from models.clip.media import image_quality, load_media, media_path, stillness
from models.clip.taxonomy import load_taxonomy
from models.clip.understanding import alt_text, tag_text
from models.fingerprints import MediaError

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PHOTO = DATA / "coco-captions" / "images" / "000000397133.jpg"


def textured(size: int = 640, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.NEAREST)


def test_blur_darkness_and_low_resolution_lower_their_scores():
    sharp = textured()
    q = image_quality(sharp)
    blurred = image_quality(sharp.filter(ImageFilter.GaussianBlur(6)))
    dark = image_quality(Image.fromarray((np.asarray(sharp) * 0.08).astype(np.uint8)))
    tiny = image_quality(sharp.resize((120, 120)))
    assert blurred["sharpness"] < q["sharpness"] - 0.2 and blurred["score"] < q["score"]
    assert dark["exposure"] < q["exposure"] - 0.3
    assert tiny["resolution"] == 0.0 < q["resolution"]
    assert all(0.0 <= v <= 1.0 for k, v in q.items() if k != "laplacian_variance")


def test_stillness_tells_a_static_shot_from_a_shaky_one():
    frame = textured(256)
    shaky = [frame.transform(frame.size, Image.AFFINE, (1, 0, dx, 0, 1, dy)) for dx, dy in ((0, 0), (9, 4), (-7, 8))]
    assert stillness([frame, frame.copy(), frame.copy()]) == 1.0
    assert stillness(shaky) < 0.5


@pytest.mark.skipif(not PHOTO.exists(), reason="../shared/data/coco-captions is absent")
def test_load_media_reads_file_uris_and_reports_bad_media():
    m = load_media(PHOTO.resolve().as_uri(), "IMAGE")
    assert len(m.frames) == 1 and (m.width, m.height) == Image.open(PHOTO).size
    with pytest.raises(MediaError):
        load_media(str(Path(__file__)), "IMAGE")  # a Python file is not an image
    with pytest.raises(MediaError):
        load_media("/nonexistent/x.jpg", "IMAGE")
    with pytest.raises(MediaError, match="scheme"):
        media_path("https://example.com/x.jpg")


def test_alt_text_is_a_template_over_the_labels_and_says_when_unsure():
    assert alt_text("IMAGE", [("pizza", 0.8), ("plate", 0.05)], [("food", 0.9)]) == "Photo of a pizza. Food content."
    assert alt_text("VIDEO", [("snowmobile", 0.12), ("moped", 0.1)]) == "Video that may show a snowmobile or a moped."
    assert alt_text("IMAGE", [("tabby", 0.5), ("Egyptian cat", 0.3)]).startswith("Photo of a tabby, possibly with an Egyptian cat")


def test_taxonomy_has_documented_categories_with_prompts_and_tags():
    cats = {c.name: c for c in load_taxonomy()}
    for name in ("photography", "travel", "food", "music", "sport", "pets", "fashion", "art", "comedy",
                 "education", "news", "science", "technology", "nature"):
        assert cats[name].doc and len(cats[name].prompts) >= 3 and cats[name].tags
    assert tag_text("#StreetPhotography") == "street photography" and tag_text("new_music") == "new music"
