"""The robust matcher (ORB + ratio test + RANSAC): copies that defeat PDQ are found, unrelated
photos are not, and the event serialisation round-trips. Real COCO photos from ../shared/data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from models.fingerprints import hamming, hash_image, load_image
from models.fingerprints.robust import (MIN_INLIERS, OrbFeatures, best_match, orb_features,
                                        verify)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
COCO = sorted((DATA / "coco-captions" / "images").glob("*.jpg"))
needs_data = pytest.mark.skipif(len(COCO) < 8, reason=f"COCO photos not found under {DATA}")


@pytest.fixture(scope="module")
def photos():
    return [load_image(str(p)) for p in COCO[:8]]


def _crop(im: Image.Image, share: float = 0.1) -> Image.Image:
    w, h = im.size
    dx, dy = round(w * share / 2), round(h * share / 2)
    return im.crop((dx, dy, w - dx, h - dy))


def _logo_bar(im: Image.Image) -> Image.Image:
    out = im.copy()
    w, h = out.size
    ImageDraw.Draw(out).rectangle((0, int(h * 0.75), w, h), fill=(20, 30, 120))
    return out


@needs_data
@pytest.mark.parametrize("transform", [_crop, _logo_bar, lambda im: im.rotate(7, Image.BICUBIC)],
                         ids=["crop_10pct", "logo_bar_quarter", "rotate_7deg"])
def test_copies_that_defeat_pdq_are_verified(photos, transform):
    beaten = 0
    for im in photos[:4]:
        copy = transform(im)
        beaten += hamming(hash_image(copy).pdq, hash_image(im).pdq) > 31
        result = verify(orb_features(copy), orb_features(im))
        assert result.matched, result
        assert result.inliers >= MIN_INLIERS
    assert beaten >= 2  # the point of the robust stage: PDQ alone misses most of these


@needs_data
def test_rotation_and_scale_are_recovered(photos):
    im = photos[0]
    small = im.rotate(10, Image.BICUBIC).resize((im.width // 2, im.height // 2))
    result = verify(orb_features(small), orb_features(im))
    assert result.matched
    assert abs(abs(result.rotation_deg) - 10) < 2
    assert 0.8 < result.scale < 1.25  # both sides are resized to ORB_SIDE first


@needs_data
def test_unrelated_photos_do_not_verify(photos):
    feats = [orb_features(im) for im in photos]
    for i, f in enumerate(feats):
        others = feats[:i] + feats[i + 1:]
        index, result = best_match(f, others)
        assert not result.matched, (i, index, result)
        assert result.inliers < MIN_INLIERS


def test_flat_image_has_no_keypoints_and_matches_nothing():
    flat = orb_features(np.full((200, 300, 3), 128, np.uint8))
    assert len(flat) == 0
    assert not verify(flat, flat).matched


@needs_data
def test_serialisation_round_trips(photos):
    f = orb_features(photos[1])
    blob = f.to_bytes()
    assert len(blob) == 12 + 36 * len(f)
    back = OrbFeatures.from_bytes(blob)
    assert np.array_equal(back.descriptors, f.descriptors)
    assert np.abs(back.points - f.points).max() <= 1 / 32
    assert (back.width, back.height) == (f.width, f.height)
    assert verify(orb_features(_crop(photos[1])), back).matched
    with pytest.raises(ValueError, match="not ORB features"):
        OrbFeatures.from_bytes(b"XXXX" + blob[4:])
    with pytest.raises(ValueError, match="take"):
        OrbFeatures.from_bytes(blob[:-1])
