"""Perceptual image hashes: Meta's PDQ (256 bits, with its quality score) and a 64-bit pHash.

Images are shrunk to fit 512x512 before hashing (``PDQ_MAX_SIDE``), which reproduces Meta's
published reference hashes exactly.

PDQ comes from the ``pdqhash`` package (Python bindings to Meta's reference C++ from
github facebook/ThreatExchange ``pdq/``); a correct PDQ lands within Hamming distance 10 of the
reference hasher's output, and Meta's suggested match threshold is a distance of 31 or less with
quality 50 or more. The pHash is ``imagehash.phash`` (DCT of a 32x32 greyscale, 8x8 low
frequencies against their median).

EXIF orientation is NOT applied, on purpose: Meta's reference ``pdq-photo-hasher`` hashes the
stored pixels and ignores the EXIF Orientation tag (its published hashes of ThreatExchange's
``pdq/data/exif-rotn/exif-rotn-{3,6,8}.jpg`` are within distance 10 of the stored pixels' PDQ
as computed here, and about 130 from the upright image's), so hashes exchanged with other platforms are comparable only
this way. A copy rotated by EXIF is still caught by checking the 8 rotations/flips
(``pdq_dihedral``). Pass ``apply_exif_orientation=True`` to hash the image as viewers see it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from os import PathLike

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageOps, UnidentifiedImageError

from models.fingerprints.errors import MediaError

ImageSource = str | PathLike[str] | bytes


@dataclass(frozen=True)
class ImageHashes:
    """Perceptual hashes of one image.

    Attributes
    ----------
    pdq : 32 bytes, PDQ's 256 bits, most significant first (``pdq_hex`` is Meta's hex form).
    pdq_quality : 0-100, PDQ's gradient-based quality; Meta advises ignoring matches below 50
        (flat or near-empty images).
    phash : 8 bytes, imagehash's 64-bit pHash in row-major bit order (``phash_hex`` equals
        ``str(imagehash.phash(img))``).
    width, height : pixels of the input image (stored orientation unless EXIF was applied).
    """

    pdq: bytes
    pdq_quality: int
    phash: bytes
    width: int
    height: int

    @property
    def pdq_hex(self) -> str:
        return self.pdq.hex()

    @property
    def phash_hex(self) -> str:
        return self.phash.hex()


def hamming(a: bytes, b: bytes) -> int:
    """Number of differing bits between two equal-length bit strings (PDQ: 0-256, pHash: 0-64).

    Raises
    ------
    ValueError : the lengths differ.
    """
    if len(a) != len(b):
        raise ValueError(f"hashes differ in length: {len(a)} and {len(b)} bytes")
    x = np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))
    return int(np.bitwise_count(x).sum())


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = None,
    apply_exif_orientation: bool = False,
) -> Image.Image:
    """Open and fully decode an image (first frame of animated formats) as RGB.

    Parameters
    ----------
    source : a path, or the file's bytes.
    max_pixels : refuse images with more pixels than this before decoding them (decompression
        bomb guard); defaults to Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89.5 million).
    apply_exif_orientation : rotate/flip by the EXIF Orientation tag (see the module docstring for
        why the default is False).

    Raises
    ------
    MediaError : not an image Pillow reads, truncated or corrupt data, or too many pixels.
    """
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                width, height = im.size
                if limit is not None and width * height > limit:
                    raise MediaError(
                        f"image too large: {width}x{height} = {width * height} pixels "
                        f"(limit {limit}); refused as a possible decompression bomb"
                    )
                im.load()
                if apply_exif_orientation:
                    im = ImageOps.exif_transpose(im)
                return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise MediaError(
            f"image too large, refused as a possible decompression bomb: {err}"
        ) from err
    except UnidentifiedImageError as err:
        raise MediaError("not a recognised image format") from err
    except FileNotFoundError as err:
        raise MediaError("file not found") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        if isinstance(err, MediaError):
            raise
        raise MediaError(f"unreadable or truncated image: {err}") from err


def _rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB array, got shape {arr.shape}")
    return arr


PDQ_MAX_SIDE = 512
"""Images are shrunk to fit PDQ_MAX_SIDE x PDQ_MAX_SIDE (aspect kept, Pillow ``thumbnail``:
bicubic) before hashing. This reproduces Meta's reference hashes in ThreatExchange's
``pdq/data`` ``expected_pdq.csv`` exactly (distance 0 on all 11 images), where hashing the full
resolution lands up to 12 bits away; it is also what makes hashing a 12-megapixel photo cheap."""


def hash_image(
    image: Image.Image | np.ndarray, *, max_side: int | None = PDQ_MAX_SIDE
) -> ImageHashes:
    """PDQ (with quality) and pHash of a decoded image: a PIL image or an ``(h, w, 3) uint8`` RGB
    array (for example a video frame). The image is first shrunk to fit ``max_side`` pixels
    (``PDQ_MAX_SIDE``; None hashes full resolution). ``width``/``height`` are the input's."""
    rgb = _rgb_array(image)
    height, width = rgb.shape[:2]
    pil = Image.fromarray(rgb)
    if max_side is not None and max(width, height) > max_side:
        pil.thumbnail((max_side, max_side))
        rgb = np.asarray(pil)
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
    phash_bits = imagehash.phash(pil).hash.reshape(-1)
    return ImageHashes(
        pdq=np.packbits(bits.astype(np.uint8)).tobytes(),
        pdq_quality=int(quality),
        phash=np.packbits(phash_bits.astype(np.uint8)).tobytes(),
        width=int(width),
        height=int(height),
    )


def image_hashes(
    source: ImageSource,
    *,
    max_pixels: int | None = None,
    apply_exif_orientation: bool = False,
    max_side: int | None = PDQ_MAX_SIDE,
) -> ImageHashes:
    """Load an image file (path or bytes) and hash it; see ``load_image`` and ``hash_image``.

    Raises
    ------
    MediaError : unreadable, truncated or too-large image.
    """
    image = load_image(
        source, max_pixels=max_pixels, apply_exif_orientation=apply_exif_orientation
    )
    return hash_image(image, max_side=max_side)


def pdq_dihedral(
    image: Image.Image | np.ndarray, *, max_side: int | None = PDQ_MAX_SIDE
) -> tuple[list[bytes], int]:
    """PDQ of the 8 rotations/flips of an image in one pass (``pdqhash.compute_dihedral``), after
    the same shrink as ``hash_image``.

    Returns ``(hashes, quality)``: 8 hashes of 32 bytes in pdqhash's order: original, rotated 90,
    180, 270 degrees, flipped vertically, flipped horizontally, rotated 90 and flipped vertically,
    rotated 90 and flipped horizontally. Matching a query against all 8 of a reference catches
    rotated and mirrored copies (Meta's PDQ dihedral matching).
    """
    pil = Image.fromarray(_rgb_array(image))
    if max_side is not None and max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side))
    vectors, quality = pdqhash.compute_dihedral(np.ascontiguousarray(np.asarray(pil)))
    return [np.packbits(v.astype(np.uint8)).tobytes() for v in vectors], int(quality)
