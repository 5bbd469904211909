"""Where the tests' media lies, as media roots (``PULSE_MEDIA_READ_ROOTS``): pytest's temporary
directories, the shared data (COCO photos, clips), scikit-image's photos and the tests' own files.
Workers read media only from their media roots (:mod:`streams.contracts.media`), so every tier
configures these, as an operator configures a read-only volume."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from streams.settings import REPO_ROOT


def _roots() -> tuple[Path, ...]:
    import skimage

    roots = [tempfile.gettempdir(), REPO_ROOT.parent / "shared" / "data", skimage.data_dir, REPO_ROOT / "tests"]
    return tuple(Path(r).resolve() for r in roots)


TEST_MEDIA_ROOTS = _roots()
TEST_MEDIA_READ_ROOTS = os.pathsep.join(str(r) for r in TEST_MEDIA_ROOTS)
""":data:`TEST_MEDIA_ROOTS` as the value of ``PULSE_MEDIA_READ_ROOTS``."""
