"""Real photos and videos as Pulse ``upload`` records for the demo.

Two sources:

- :func:`scikit_image_uploads`: the real photographs shipped inside the scikit-image package's
  ``skimage/data`` directory (read straight from that directory: nothing is downloaded, whatever
  the installed version ships is used). Synthetic images, drawings, logos, masks and microscopy
  images (see :data:`NOT_PHOTOS`) are left out; an image file this module does not know is taken
  to be a photo with a caption made from its file name.
- :func:`media_dir_uploads`: every video and image under a directory (e.g.
  ``../shared/data/media``); audio and other files are counted as skipped.

Each upload is attributed to one of :data:`DEMO_CREATORS` (by theme for the files with a
hand-written caption, by a hash of the file name otherwise, so always the same one), whose
signups :func:`demo_creator_signups` gives. Uploads are
``content_type`` FOREVER unless asked otherwise, and are spaced 1 s apart from ``now_ms`` in file
name order. ``event_id`` and ``post_id`` depend on the file only (never on ``now_ms``), so a
re-run demo republishes the same events: ``stable_event_id("media", "upload:skimage/<file>")``
and ``post_id`` ``"skimage-<stem>"`` for scikit-image photos; for a directory, the path relative
to that directory: ``stable_event_id("media", "upload:<relative path>")`` and ``post_id``
``"media-<uuid5 of the relative path>"``.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

from PIL import Image

from models.fingerprints.errors import FingerprintUnavailable, MediaError
from models.fingerprints.video import probe as probe_video
from streams.demo.sources import EVENT_ID_NAMESPACE, stable_event_id

PRODUCER = "demo.media"
SOURCE = "media"

LUMEN, FIELDNOTES, FRAMERATE = "demo-u-lumen", "demo-u-fieldnotes", "demo-u-framerate"
DEMO_CREATORS = {
    LUMEN: ("lumen", ["space", "science", "photography"]),
    FIELDNOTES: ("fieldnotes", ["nature", "animals", "food"]),
    FRAMERATE: ("framerate", ["video", "city", "people"]),
}
"""user_id -> (handle, declared interests) of the demo's media creators."""

PHOTO_CAPTIONS = {
    "astronaut": (LUMEN, "Astronaut Eileen Collins in her orange flight suit, the US flag and a "
                         "space shuttle model behind her"),
    "brick": (FIELDNOTES, "A brick wall seen at an angle"),
    "camera": (FRAMERATE, "A photographer behind a camera on a tripod in an open field, city "
                          "skyline behind"),
    "chelsea": (FIELDNOTES, "Chelsea the tabby cat looking straight at the camera"),
    "clock_motion": (FRAMERATE, "A wall clock photographed while the camera moved: motion blur"),
    "coffee": (FIELDNOTES, "An espresso in a red cup and saucer on a wooden table"),
    "coins": (LUMEN, "Rows of ancient Greek coins on a dark background"),
    "grass": (FIELDNOTES, "Close-up of a lawn: blades of grass"),
    "gravel": (FIELDNOTES, "Close-up of gravel stones"),
    "hubble_deep_field": (LUMEN, "Thousands of distant galaxies in the Hubble deep field"),
    "moon": (LUMEN, "Craters on the surface of the moon"),
    "motorcycle_left": (FRAMERATE, "A red motorcycle parked in a workshop (left view of a "
                                   "stereo pair)"),
    "motorcycle_right": (FRAMERATE, "A red motorcycle parked in a workshop (right view of a "
                                    "stereo pair)"),
    "page": (LUMEN, "A printed textbook page about region-based segmentation, unevenly lit"),
    "retina": (LUMEN, "Fundus photograph of a healthy human retina with its blood vessels"),
    "rocket": (LUMEN, "A Falcon 9 rocket on the launch pad at night before the DSCOVR launch"),
    "text": (FRAMERATE, "Handwritten text on paper, photographed at an angle"),
}
"""(creator, hand-written caption) of the real photographs scikit-image ships, by file stem."""

NOT_PHOTOS = frozenset({
    "cell", "chessboard_GRAY", "chessboard_RGB", "color", "horse", "ihc", "logo",
    "microaneurysms", "no_time_for_that_tiny", "phantom", "multipage", "multipage_rgb",
})
"""scikit-image data files that are not ordinary photographs: synthetic patterns, the horse
silhouette drawing, the logo, the Shepp-Logan phantom, microscopy and tiny test images."""

MEDIA_CAPTIONS = {
    "bigbuckbunny.mp4": (FRAMERATE, "Big Buck Bunny, the Blender Foundation's open movie: a big "
                                    "grey rabbit in a sunny meadow"),
    "carphone_pristine.mp4": (FRAMERATE, "A man in a bow tie talking on a car phone in the "
                                         "passenger seat"),
    "carphone_distorted.mp4": (FRAMERATE, "A man in a bow tie talking on a car phone in the "
                                          "passenger seat (heavily compressed copy)"),
    "cityCC0.mpg": (FRAMERATE, "Skyscrapers lit up at night, seen from the street"),
}
"""(creator, hand-written caption) of the files in the shared demo media directory, by name."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mpg", ".mpeg", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".flac", ".ogg", ".oga", ".m4a", ".aac", ".opus"})

_STOPWORDS = frozenset(
    "a an and at behind from her his in into is it its of on or the their to with".split()
)


#: Raised when ffprobe is missing (the message says ``apt-get install ffmpeg``); the same
#: type as the fingerprint layer's, whose ``probe`` the video uploads use.
MediaToolMissing = FingerprintUnavailable


def skimage_data_dir() -> Path:
    """The ``data`` directory inside the installed scikit-image package."""
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"


def demo_creator_signups(now_ms: int) -> list[dict]:
    """``user_signup`` records of :data:`DEMO_CREATORS` at ``now_ms - 1000``, before any upload."""
    return [
        {
            "event_id": stable_event_id(SOURCE, f"user_signup:{user_id}"),
            "event_time": now_ms - 1_000,
            "producer": PRODUCER,
            "user_id": user_id,
            "handle": handle,
            "declared_interests": list(interests),
            "locale": None,
            "country": None,
            "about": "Demo creator of the Pulse media uploads",
        }
        for user_id, (handle, interests) in DEMO_CREATORS.items()
    ]


def caption_from_stem(stem: str) -> str:
    """Generic caption from a file name: ``"clock_motion"`` -> ``"Clock motion"``."""
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    words = " ".join(re.split(r"[\W_]+", words)).strip()
    return words[:1].upper() + words[1:] if words else stem


def hashtags_from_caption(caption: str, limit: int = 5) -> list[str]:
    """Up to ``limit`` hashtags: the caption's distinct lowercase words of 3+ letters, in order,
    without stop words (no leading ``#``)."""
    tags: list[str] = []
    for word in re.findall(r"[a-z0-9]+", caption.lower()):
        if len(word) >= 3 and not word.isdigit() and word not in _STOPWORDS and word not in tags:
            tags.append(word)
    return tags[:limit]


def scikit_image_uploads(now_ms: int, *, content_type: str = "FOREVER") -> list[dict]:
    """IMAGE uploads of the real photographs in scikit-image's data directory.

    Parameters
    ----------
    now_ms
        UTC epoch ms of the first upload; the next ones follow 1 s apart (file name order).
    content_type
        ``"FLASH"``, ``"MEMORY"`` or ``"FOREVER"`` for every upload.

    Returns
    -------
    list[dict]
        ``upload`` records sorted by ``event_time``; ``width``/``height`` in pixels and
        ``size_bytes`` read from the file, ``media_uri`` an absolute ``file://`` URI.
    """
    photos = [
        path for path in sorted(skimage_data_dir().iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and path.stem not in NOT_PHOTOS
    ]
    uploads = []
    for index, path in enumerate(photos):
        creator, caption = PHOTO_CAPTIONS.get(path.stem) or _generic(path)
        uploads.append(_image_upload(
            path, now_ms + 1_000 * index, key=f"skimage/{path.name}",
            post_id=f"skimage-{path.stem}", creator=creator, caption=caption,
            content_type=content_type,
        ))
    return uploads


def media_dir_uploads(path: Path, now_ms: int, *,
                      content_type: str = "FOREVER") -> tuple[list[dict], dict[str, int]]:
    """VIDEO and IMAGE uploads of every media file under ``path`` (recursively).

    Videos are probed with ``models.fingerprints.video.probe`` (ffprobe: duration, and
    width and height as displayed);
    images are read with Pillow. Audio files are skipped for now.

    Parameters
    ----------
    path
        The directory to walk; ids derive from file paths relative to it.
    now_ms
        UTC epoch ms of the first upload; the next ones follow 1 s apart (relative path order).
    content_type
        ``"FLASH"``, ``"MEMORY"`` or ``"FOREVER"`` for every upload.

    Returns
    -------
    (uploads, skipped)
        ``upload`` records sorted by ``event_time``, and counts of the files that gave none:
        ``audio``, ``not_media`` (other suffixes), ``unreadable_video``, ``unreadable_image``.

    Raises
    ------
    ValueError
        ``path`` is not a directory.
    MediaToolMissing
        A video is present and ffprobe is not installed (``apt-get install ffmpeg``).
    """
    root = Path(path).resolve()
    if not root.is_dir():
        raise ValueError(f"{path} is not a directory")
    uploads: list[dict] = []
    skipped: dict[str, int] = {}
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for file in files:
        relative = file.relative_to(root).as_posix()
        suffix = file.suffix.lower()
        event_time = now_ms + 1_000 * len(uploads)
        post_id = f"media-{uuid.uuid5(EVENT_ID_NAMESPACE, f'{SOURCE}:post:{relative}')}"
        creator, caption = MEDIA_CAPTIONS.get(file.name) or _generic(file)
        try:
            if suffix in VIDEO_SUFFIXES:
                upload = _video_upload(file, event_time, key=relative, post_id=post_id,
                                       creator=creator, caption=caption,
                                       content_type=content_type)
            elif suffix in IMAGE_SUFFIXES:
                upload = _image_upload(file, event_time, key=relative, post_id=post_id,
                                       creator=creator, caption=caption,
                                       content_type=content_type)
            else:
                reason = "audio" if suffix in AUDIO_SUFFIXES else "not_media"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
        except _Unreadable as error:
            skipped[error.reason] = skipped.get(error.reason, 0) + 1
            continue
        uploads.append(upload)
    return uploads, dict(sorted(skipped.items()))


class _Unreadable(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _upload(path: Path, event_time: int, key: str, post_id: str, creator: str, caption: str,
            kind: str, content_type: str, width: int, height: int,
            duration_ms: int | None) -> dict:
    return {
        "event_id": stable_event_id(SOURCE, f"upload:{key}"),
        "event_time": event_time,
        "producer": PRODUCER,
        "post_id": post_id,
        "creator_id": creator,
        "kind": kind,
        "content_type": content_type,
        "media_uri": path.resolve().as_uri(),
        "caption": caption,
        "title": None,
        "hashtags": hashtags_from_caption(caption),
        "duration_ms": duration_ms,
        "size_bytes": path.stat().st_size,
        "width": width,
        "height": height,
        "parent_post_id": None,
    }


def _generic(path: Path) -> tuple[str, str]:
    """(creator, caption) of a file no table knows: a creator by hash of the file name, the
    caption from the file stem."""
    digest = hashlib.blake2b(path.name.encode(), digest_size=4).digest()
    creators = sorted(DEMO_CREATORS)
    return creators[int.from_bytes(digest, "big") % len(creators)], caption_from_stem(path.stem)


def _image_upload(path: Path, event_time: int, *, key: str, post_id: str, creator: str,
                  caption: str, content_type: str) -> dict:
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        raise _Unreadable("unreadable_image") from None
    return _upload(path, event_time, key, post_id, creator, caption, "IMAGE", content_type,
                   width, height, None)


def _video_upload(path: Path, event_time: int, *, key: str, post_id: str, creator: str,
                  caption: str, content_type: str) -> dict:
    try:
        info = probe_video(path, max_bytes=None)  # the demo publishes any size; the gates judge it
    except MediaError:
        raise _Unreadable("unreadable_video") from None
    if not info.get("duration"):
        raise _Unreadable("unreadable_video")
    return _upload(path, event_time, key, post_id, creator, caption, "VIDEO", content_type,
                   int(info["width"]), int(info["height"]), round(float(info["duration"]) * 1000))
