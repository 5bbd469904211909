"""An upload's fingerprints as the matcher uses them (:class:`QueryFeatures`), computed once from
the media and convertible to and from event form, so that an upload can be matched again later,
from its fingerprints alone, exactly as it was matched at upload time.

Copyright Guard matches every upload with :meth:`ReferenceBank.match_features`; it also emits
the same features (``ContentFingerprint`` events, ``content-fingerprints``), which the late-match
rescan (:mod:`models.copyright.late`) folds into an index of published posts and matches against
works registered later, through the very same ``match_features``.

Event form (``ContentFingerprint.fingerprints``), a list of dicts
``{"kind", "offset_ms", "value", "quality", "orientation"}``:

IMAGE
    8 ``PDQ`` (32 bytes each; ``orientation`` 0-7 in ``pdq_dihedral``'s order, 0 = as uploaded;
    ``quality`` the PDQ quality, 0-100), one ``PHASH`` (8 bytes), one ``ORB``
    (``OrbFeatures.to_bytes``); offsets 0.
VIDEO
    Per sampled frame (``matching.video_frames``: about once a second plus keyframes, borders
    trimmed) one ``PDQ`` (``quality`` set) and one ``PHASH`` at the frame's time (ms); one ``ORB``
    for each of the ``ROBUST_QUERY_FRAMES`` frames the robust stage probes (``matching.evenly``);
    one ``CHROMAPRINT`` of the soundtrack when it has one long enough.
AUDIO
    One ``CHROMAPRINT`` (the raw fingerprint as little-endian uint32 words).

``quality`` and ``orientation`` are null where they do not apply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike

import numpy as np

from models.copyright import matching as mt
from models.fingerprints import (MediaError, chromaprint_file, detect_modality, hash_image,
                                 load_image, pdq_dihedral)
from models.fingerprints.robust import OrbFeatures, orb_features


@dataclass
class QueryFeatures:
    """What the matcher needs of one upload.

    Attributes
    ----------
    modality:
        ``"IMAGE"``, ``"AUDIO"`` or ``"VIDEO"``.
    pdq:
        IMAGE: the 8 dihedral PDQs (32 bytes each, ``pdq_dihedral``'s order); empty otherwise.
    quality:
        IMAGE: PDQ quality (0-100).
    phash:
        IMAGE: the 8-byte pHash (kept for the event form; matching does not use it).
    orb:
        IMAGE: ORB features (``OrbFeatures``).
    frames:
        VIDEO: sampled frames (``matching.QueryFrame``, in time order). Frames rebuilt from event
        form carry no image; the robust stage's probe frames carry their ORB features.
    chroma:
        AUDIO, and a VIDEO's soundtrack when long enough: raw Chromaprint ``(n,) uint32``.
    """

    modality: str
    pdq: tuple[bytes, ...] = ()
    quality: int = 0
    phash: bytes | None = None
    orb: OrbFeatures | None = None
    frames: list[mt.QueryFrame] = field(default_factory=list)
    chroma: np.ndarray | None = None


def query_features(path: str | PathLike[str]) -> QueryFeatures:
    """Fingerprint an upload's media file once, as the matcher needs it.

    Costs (measured for ``docs/copyright-guard.md``): about 25 ms an image (load, 8 dihedral PDQs,
    pHash, ORB), about 0.1 s of CPU a video second plus ORB of 8 frames.

    Raises
    ------
    MediaError : missing, empty, unreadable, truncated or unsupported media, or audio too short
        to fingerprint (a video's soundtrack that is too short is left out instead).
    """
    modality = detect_modality(path).upper()
    if modality == "IMAGE":
        image = load_image(str(path))
        hashes, quality = pdq_dihedral(image)
        return QueryFeatures("IMAGE", pdq=tuple(hashes), quality=quality,
                             phash=hash_image(image).phash, orb=orb_features(image))
    if modality == "AUDIO":
        return QueryFeatures("AUDIO", chroma=chromaprint_file(path).raw)
    frames, info = mt.video_frames(path)
    chroma = None
    if info["has_audio"]:
        try:
            chroma = chromaprint_file(path).raw
        except MediaError:
            chroma = None  # a silent or very short track: the frames still decide
    return QueryFeatures("VIDEO", frames=frames, chroma=chroma)


def to_fingerprints(features: QueryFeatures) -> list[dict]:
    """``features`` in event form (module docstring). For a video, computes the ORB features of
    the probe frames that the matcher has not computed yet."""
    out: list[dict] = []

    def add(kind, offset_ms, value, quality=None, orientation=None):
        out.append({"kind": kind, "offset_ms": int(offset_ms), "value": bytes(value),
                    "quality": quality, "orientation": orientation})

    if features.modality == "IMAGE":
        for i, h in enumerate(features.pdq):
            add("PDQ", 0, h, quality=int(features.quality), orientation=i)
        if features.phash is not None:
            add("PHASH", 0, features.phash)
        if features.orb is not None:
            add("ORB", 0, features.orb.to_bytes())
    for f in features.frames:
        add("PDQ", f.t_ms, f.pdq, quality=int(f.quality))
        add("PHASH", f.t_ms, f.phash)
    for f in mt.evenly(features.frames, mt.ROBUST_QUERY_FRAMES):
        add("ORB", f.t_ms, f.orb.to_bytes())
    if features.chroma is not None:
        add("CHROMAPRINT", 0, np.asarray(features.chroma, dtype="<u4").tobytes())
    return out


def from_fingerprints(modality: str, fingerprints: list[dict]) -> QueryFeatures:
    """Inverse of :func:`to_fingerprints` (ORB coordinates rounded to 1/16 pixel, as in every
    serialised ORB). Unknown kinds (``DHASH``) are ignored.

    Raises
    ------
    ValueError : unknown modality; a PDQ that is not 32 bytes; a CHROMAPRINT whose length is not a
        positive multiple of 4; an undecodable ORB blob; an IMAGE without 8 PDQs and ORB, or a
        VIDEO without frames or soundtrack.
    """
    modality = str(modality).upper()
    if modality not in ("IMAGE", "AUDIO", "VIDEO"):
        raise ValueError(f"unknown modality {modality!r}; IMAGE, AUDIO or VIDEO")
    pdq: list[tuple[int, bytes]] = []
    frames: list[list] = []  # [t_ms, pdq, quality, phash], in the order emitted (time order)
    orb: list[OrbFeatures] = []
    chroma = None
    quality = 0
    phash = None
    for fp in fingerprints:
        kind, t, value = fp["kind"], int(fp.get("offset_ms") or 0), bytes(fp["value"])
        if kind == "PDQ":
            if len(value) != 32:
                raise ValueError(f"a PDQ hash is 32 bytes, got {len(value)}")
            if modality == "IMAGE":
                pdq.append((int(fp.get("orientation") or 0), value))
                quality = int(fp.get("quality") or 0)
            else:
                frames.append([t, value, int(fp.get("quality") or 0), b""])
        elif kind == "PHASH":
            if modality == "IMAGE":
                phash = value
            elif frames:
                frames[-1][3] = value
        elif kind == "ORB":
            orb.append(OrbFeatures.from_bytes(value))
        elif kind == "CHROMAPRINT":
            if len(value) % 4 or not value:
                raise ValueError(f"a raw Chromaprint is uint32 words, got {len(value)} bytes")
            chroma = np.frombuffer(value, "<u4").astype(np.uint32)
    if modality == "IMAGE":
        if len(pdq) != 8 or len(orb) != 1:
            raise ValueError(f"an IMAGE needs 8 dihedral PDQs and one ORB, got {len(pdq)} PDQs "
                             f"and {len(orb)} ORB")
        return QueryFeatures("IMAGE", pdq=tuple(v for _, v in sorted(pdq, key=lambda x: x[0])),
                             quality=quality, phash=phash, orb=orb[0])
    if modality == "AUDIO":
        if chroma is None:
            raise ValueError("an AUDIO upload needs a CHROMAPRINT")
        return QueryFeatures("AUDIO", chroma=chroma)
    out = [mt.QueryFrame(t, h, q, ph, None) for t, h, q, ph in frames]
    probe = mt.evenly(out, mt.ROBUST_QUERY_FRAMES)
    if len(orb) != len(probe):
        raise ValueError(f"a VIDEO of {len(out)} frames needs ORB of {len(probe)} probe frames, "
                         f"got {len(orb)}")
    for frame, feats in zip(probe, orb):
        frame._orb = feats
    if not out and chroma is None:
        raise ValueError("a VIDEO needs frames or a soundtrack")
    return QueryFeatures("VIDEO", frames=out, chroma=chroma)
