"""The reference bank: registered works and their fingerprints, searchable, and matching of uploads.

A reference is registered from a file (``register_file``) or from fingerprints carried by a
``CopyrightReference`` event (``register_fingerprints``; ``reference_fingerprints(path)`` computes
them). Registering an id again replaces the reference, so replaying the topic rebuilds the same
bank; ``withdraw`` removes it. Not thread-safe.

Fingerprints in event form are dicts ``{"kind", "offset_ms", "value"}``: "PDQ" (32 bytes), "PHASH"
(8 bytes), "CHROMAPRINT" (the raw fingerprint as little-endian uint32 words) and "ORB"
(``OrbFeatures.to_bytes``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from models.fingerprints import (ITEM_DURATION_S, MediaError, PDQBank, chromaprint_file,
                                 detect_modality, hash_image, load_image, pdq_dihedral)
from models.fingerprints.robust import OrbFeatures, best_match, orb_features
from models.copyright import matching as mt
from models.copyright.decision import (POLICIES, CopyrightDecision, Match, Modality, Policy,
                                       bad_media_decision, decide)

KINDS = ("PDQ", "PHASH", "CHROMAPRINT", "ORB")
_SEP = "\x1f"  # reference id / row number separator in PDQBank ids


@dataclass(frozen=True)
class Reference:
    """A registered work: its ids, policy, modality and fingerprints in event form."""

    reference_id: str
    modality: Modality
    title: str
    rights_holder_id: str
    policy: Policy
    fingerprints: tuple[dict, ...]


def reference_fingerprints(path: str | PathLike[str]) -> tuple[Modality, list[dict]]:
    """Fingerprints of a reference file in event form (``CopyrightReference.fingerprints``).

    Image: one PDQ, one PHASH and one ORB at offset 0. Audio: one CHROMAPRINT. Video: PDQ and PHASH
    of frames sampled every ``REFERENCE_FRAME_INTERVAL_S`` plus keyframes (offset = frame time),
    ORB of ``ORB_REFERENCE_FRAMES`` of them, and the audio track's CHROMAPRINT when it has one
    long enough.

    Raises
    ------
    MediaError : the file cannot be fingerprinted (see ``models.fingerprints``).
    """
    modality = detect_modality(path).upper()
    if modality == "IMAGE":
        image = load_image(str(path))
        h = hash_image(image)
        return "IMAGE", [
            {"kind": "PDQ", "offset_ms": 0, "value": h.pdq},
            {"kind": "PHASH", "offset_ms": 0, "value": h.phash},
            {"kind": "ORB", "offset_ms": 0, "value": orb_features(image).to_bytes()},
        ]
    if modality == "AUDIO":
        fp = chromaprint_file(path)
        return "AUDIO", [{"kind": "CHROMAPRINT", "offset_ms": 0, "value": _chroma_bytes(fp.raw)}]
    frames, info = mt.video_frames(path, every_s=mt.REFERENCE_FRAME_INTERVAL_S)
    out = []
    for f in frames:
        out.append({"kind": "PDQ", "offset_ms": f.t_ms, "value": f.pdq})
        out.append({"kind": "PHASH", "offset_ms": f.t_ms, "value": f.phash})
    for f in mt.evenly(frames, mt.ORB_REFERENCE_FRAMES):
        out.append({"kind": "ORB", "offset_ms": f.t_ms, "value": f.orb.to_bytes()})
    if info["has_audio"]:
        try:
            fp = chromaprint_file(path)
            out.append({"kind": "CHROMAPRINT", "offset_ms": 0, "value": _chroma_bytes(fp.raw)})
        except MediaError:
            pass  # audio track too short or broken: the frames still identify the video
    return "VIDEO", out


def _chroma_bytes(raw: np.ndarray) -> bytes:
    return np.asarray(raw, dtype="<u4").tobytes()


class ReferenceBank:
    """Registered reference works, searchable by PDQ (images, video frames), ORB and Chromaprint.

    Example
    -------
    >>> bank = ReferenceBank()                                  # doctest: +SKIP
    >>> bank.register_file("song.mp3", title="Song", rights_holder_id="label-1")
    >>> bank.match_file("upload.mp4").action                    # "BLOCK" for a copy
    """

    def __init__(self) -> None:
        self._refs: dict[str, Reference] = {}
        self._image_pdq = PDQBank()
        self._frame_pdq = PDQBank()
        self._pdq_rows: dict[str, list[str]] = {}  # reference -> its ids in the PDQ banks
        self._frame_ms: dict[str, np.ndarray] = {}  # video reference -> (frames,) offset ms
        self._orb: dict[str, list[tuple[int, OrbFeatures]]] = {}
        self._audio: dict[str, tuple[int, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._refs)

    def __contains__(self, reference_id: object) -> bool:
        return reference_id in self._refs

    def __iter__(self):
        return iter(self._refs.values())

    def get(self, reference_id: str) -> Reference | None:
        return self._refs.get(reference_id)

    # ---- registration ------------------------------------------------------------------------

    def register_file(self, path: str | PathLike[str], reference_id: str | None = None, *,
                      title: str | None = None, rights_holder_id: str = "",
                      policy: Policy = "BLOCK") -> Reference:
        """Fingerprint a file (``reference_fingerprints``) and register it; the id defaults to the
        file's stem, the title to the id. Raises ``MediaError`` for bad media."""
        modality, fingerprints = reference_fingerprints(path)
        rid = reference_id or Path(path).stem
        return self.register_fingerprints(rid, modality, fingerprints, title=title or rid,
                                          rights_holder_id=rights_holder_id, policy=policy)

    def register_fingerprints(self, reference_id: str, modality: str, fingerprints: list[dict], *,
                              title: str = "", rights_holder_id: str = "",
                              policy: str = "BLOCK") -> Reference:
        """Register (or replace) a reference from fingerprints in event form.

        Raises
        ------
        ValueError : unknown modality, kind or policy; a PDQ that is not 32 bytes; a CHROMAPRINT
            whose length is not a multiple of 4; an undecodable ORB blob; no usable fingerprint
            for the modality (an image needs PDQ or ORB, audio CHROMAPRINT, video PDQ, ORB or
            CHROMAPRINT).
        """
        modality = modality.upper()
        if modality not in ("IMAGE", "AUDIO", "VIDEO"):
            raise ValueError(f"unknown modality {modality!r}; IMAGE, AUDIO or VIDEO")
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; one of {', '.join(POLICIES)}")
        pdq, orb, audio = [], [], None
        for fp in fingerprints:
            kind, offset, value = fp["kind"], int(fp.get("offset_ms", 0)), bytes(fp["value"])
            if kind not in KINDS:
                raise ValueError(f"unknown fingerprint kind {kind!r}; one of {', '.join(KINDS)}")
            if kind == "PDQ":
                if len(value) != 32:
                    raise ValueError(f"a PDQ hash is 32 bytes, got {len(value)}")
                pdq.append((offset, value))
            elif kind == "ORB":
                orb.append((offset, OrbFeatures.from_bytes(value)))
            elif kind == "CHROMAPRINT":
                if len(value) % 4 or not value:
                    raise ValueError(f"a raw Chromaprint is uint32 words, got {len(value)} bytes")
                audio = (offset, np.frombuffer(value, "<u4").astype(np.uint32))
        usable = {"IMAGE": pdq or orb, "AUDIO": audio is not None,
                  "VIDEO": pdq or orb or audio is not None}[modality]
        if not usable:
            raise ValueError(f"no usable fingerprint for a {modality} reference")
        self.withdraw(reference_id)
        ref = Reference(reference_id, modality, title, rights_holder_id, policy,  # type: ignore
                        tuple(dict(fp) for fp in fingerprints))
        self._refs[reference_id] = ref
        if pdq:
            ids = [f"{reference_id}{_SEP}{i}" for i in range(len(pdq))]
            target = self._image_pdq if modality == "IMAGE" else self._frame_pdq
            target.add(ids, [v for _, v in pdq])
            self._pdq_rows[reference_id] = ids
            if modality == "VIDEO":
                self._frame_ms[reference_id] = np.array([o for o, _ in pdq], dtype=np.int64)
        if orb:
            self._orb[reference_id] = sorted(orb, key=lambda x: x[0])
        if audio is not None:
            self._audio[reference_id] = audio
        return ref

    def withdraw(self, reference_id: str) -> bool:
        """Remove a reference from matching; False when it was not registered."""
        ref = self._refs.pop(reference_id, None)
        if ref is None:
            return False
        ids = self._pdq_rows.pop(reference_id, [])
        (self._image_pdq if ref.modality == "IMAGE" else self._frame_pdq).remove(ids)
        self._frame_ms.pop(reference_id, None)
        self._orb.pop(reference_id, None)
        self._audio.pop(reference_id, None)
        return True

    # ---- matching ----------------------------------------------------------------------------

    def match_file(self, path: str | PathLike[str], *, metadata: dict | None = None
                   ) -> CopyrightDecision:
        """Fingerprint an upload and match it (``match_image`` / ``match_audio`` /
        ``match_video`` by its modality); ``metadata`` (title, caption, hashtags) is evidence only.

        Raises
        ------
        MediaError : missing, empty, over 150 MB, unreadable, truncated or unsupported media, or
            audio too short to fingerprint. ``decision_for_file`` returns a verdict instead.
        """
        from models.copyright.query import query_features

        t0 = time.perf_counter()
        return _with_latency(self.match_features(query_features(path), metadata=metadata), t0)

    def match_features(self, features, *, metadata: dict | None = None) -> CopyrightDecision:
        """Match an upload's precomputed :class:`~models.copyright.query.QueryFeatures` (from its
        file, or rebuilt from its ``ContentFingerprint`` event): exactly what ``match_image``,
        ``match_audio`` and ``match_video`` decide for the media they came from."""
        t0 = time.perf_counter()
        if features.modality == "IMAGE":
            orb = features.orb
            return self._image_decision(list(features.pdq), features.quality, lambda: orb,
                                        metadata, t0)
        if features.modality == "AUDIO":
            return self.match_audio(features.chroma, metadata=metadata)
        return self._video_decision(features.frames, features.chroma, metadata, t0)

    def decision_for_file(self, path: str | PathLike[str], *, metadata: dict | None = None
                          ) -> CopyrightDecision:
        """``match_file``, with bad media turned into a verdict (``bad_media_decision``)."""
        t0 = time.perf_counter()
        try:
            return self.match_file(path, metadata=metadata)
        except MediaError as err:
            return bad_media_decision(str(err), latency_ms=(time.perf_counter() - t0) * 1e3)

    def match_image(self, image, *, metadata: dict | None = None) -> CopyrightDecision:
        """Match a decoded image (PIL or ``(h, w, 3) uint8``): PDQ over its 8 rotations/flips,
        then the robust stage where PDQ is not conclusive (see ``matching``)."""
        t0 = time.perf_counter()
        hashes, quality = pdq_dihedral(image)
        return self._image_decision(hashes, quality, lambda: orb_features(image), metadata, t0)

    def _image_decision(self, hashes: list[bytes], quality: int, orb_of, metadata, t0
                        ) -> CopyrightDecision:
        """The image matcher on the 8 dihedral PDQs, their quality and ``orb_of()`` (called only
        when the robust stage runs)."""
        nearest: dict[str, int] = {}
        for h in hashes:
            for id_, d in self._image_pdq.search(h, mt.PDQ_GREY_DISTANCE):
                rid = id_.split(_SEP)[0]
                nearest[rid] = min(d, nearest.get(rid, 257))
        evidence, weak = [], []
        for rid, d in nearest.items():
            if d <= mt.PDQ_MATCH_DISTANCE and quality >= mt.PDQ_MIN_QUALITY:
                evidence.append(self._match(rid, "PDQ", 1 - d / 256, hamming_distance=d,
                                            detail=f"PDQ distance {d} (<= {mt.PDQ_MATCH_DISTANCE}),"
                                                   f" quality {quality}"))
        if not evidence:
            image_refs = [r for r in self._orb if self._refs[r].modality == "IMAGE"]
            by_pdq = sorted(nearest, key=nearest.get)
            if len(image_refs) <= mt.ROBUST_EXHAUSTIVE_MAX:
                candidates = by_pdq + [r for r in image_refs if r not in nearest]
            else:
                candidates = by_pdq[: mt.ROBUST_TOP_K]
            query = orb_of() if candidates else None
            for rid in candidates:
                feats = [f for _, f in self._orb.get(rid, [])]
                _, r = best_match(query, feats) if feats else (-1, None)
                d = nearest.get(rid)
                if r is not None and r.matched:
                    evidence.append(self._match(
                        rid, "ORB", r.similarity, hamming_distance=d,
                        detail=f"{r.inliers} ORB inliers ({r.inlier_ratio:.0%} of "
                               f"{r.good_matches}), scale {r.scale:.2f}, rotation "
                               f"{r.rotation_deg:.0f} deg"
                               + (f"; PDQ distance {d}" if d is not None else "")))
                elif d is not None:
                    evidence.append(self._match(
                        rid, "PDQ", 1 - d / 256, hamming_distance=d, confirmed=False,
                        detail=f"PDQ distance {d} (quality {quality}), not confirmed by ORB "
                               f"({r.inliers if r else 0} inliers)"))
                elif r is not None and r.inliers >= mt.ROBUST_WEAK_INLIERS:
                    weak.append(self._match(rid, "ORB", r.similarity, confirmed=False,
                                            detail=f"{r.inliers} ORB inliers (weak)"))
        return self._decide("IMAGE", evidence, weak, metadata, t0)

    def match_audio(self, raw: np.ndarray, *, metadata: dict | None = None,
                    modality: Modality = "AUDIO") -> CopyrightDecision:
        """Match a raw Chromaprint ``(n,) uint32`` against every reference with audio (audio
        references and video references' tracks)."""
        t0 = time.perf_counter()
        evidence, weak = self._audio_evidence(raw)
        return self._decide(modality, evidence, weak, metadata, t0)

    def match_video(self, path: str | PathLike[str], *, metadata: dict | None = None
                    ) -> CopyrightDecision:
        """Match a video file: frames in order (vPDQ-style), the robust stage on frames where PDQ
        is not conclusive, and the audio track. Raises ``MediaError`` for bad media."""
        from models.copyright.query import query_features

        t0 = time.perf_counter()
        features = query_features(path)
        if features.modality != "VIDEO":
            raise MediaError(f"not a video: {features.modality.lower()}")
        return self._video_decision(features.frames, features.chroma, metadata, t0)

    def _video_decision(self, frames: list[mt.QueryFrame], raw: np.ndarray | None, metadata, t0
                        ) -> CopyrightDecision:
        """Frames in order, the robust stage, then the soundtrack ``raw`` (None: no track)."""
        evidence, weak = self._frame_evidence(frames)
        if raw is not None:
            seen = {m.reference_id for m in evidence if m.confirmed}
            a_ev, a_weak = self._audio_evidence(raw)
            evidence += [m for m in a_ev if m.reference_id not in seen]
            weak += a_weak
        return self._decide("VIDEO", evidence, weak, metadata, t0)

    # ---- internals ---------------------------------------------------------------------------

    def _match(self, rid: str, kind: str, similarity: float, *, confirmed: bool = True,
               **fields) -> Match:
        ref = self._refs[rid]
        return Match(reference_id=rid, rights_holder_id=ref.rights_holder_id, kind=kind,
                     modality=ref.modality, similarity=float(max(0.0, min(1.0, similarity))),
                     title=ref.title, confirmed=confirmed, policy=ref.policy, **fields)

    def _decide(self, modality, evidence, weak, metadata, t0) -> CopyrightDecision:
        words = mt.metadata_words(metadata)
        hits = {r.reference_id for r in self._refs.values()
                if words and mt.names_reference(words, r.title, r.reference_id)}
        return decide(modality, evidence, metadata_hits=hits, weak=weak,
                      latency_ms=(time.perf_counter() - t0) * 1e3)

    def _audio_evidence(self, raw: np.ndarray) -> tuple[list[Match], list[Match]]:
        evidence, weak = [], []
        item_ms = ITEM_DURATION_S * 1000
        for rid, (base_ms, ref_raw) in self._audio.items():
            offset, ber, overlap = mt.align(raw, ref_raw)
            if ber > mt.AUDIO_WEAK_BER:
                continue
            span = dict(bit_error_rate=ber, upload_offset_ms=round(max(0, -offset) * item_ms),
                        reference_offset_ms=round(base_ms + max(0, offset) * item_ms),
                        matched_ms=round(overlap * item_ms))
            detail = (f"bit error rate {ber:.3f} over {overlap * ITEM_DURATION_S:.1f} s at "
                      f"reference {span['reference_offset_ms'] / 1000:.1f} s")
            m = self._match(rid, "CHROMAPRINT", 1 - 2 * ber, confirmed=ber <= mt.AUDIO_MATCH_BER,
                            detail=detail, **span)
            if ber <= mt.AUDIO_REVIEW_BER:
                evidence.append(m)
            else:
                weak.append(m)
        return evidence, weak

    def _frame_evidence(self, frames: list[mt.QueryFrame]) -> tuple[list[Match], list[Match]]:
        pairs: dict[str, list[tuple[int, int, int]]] = {}  # rid -> [(upload ms, ref ms, dist)]
        usable = [f for f in frames if f.quality >= mt.PDQ_MIN_QUALITY]
        for f in usable:
            for id_, d in self._frame_pdq.search(f.pdq, mt.PDQ_MATCH_DISTANCE):
                rid, row = id_.split(_SEP)
                pairs.setdefault(rid, []).append((f.t_ms, int(self._frame_ms[rid][int(row)]), d))
        evidence, weak, shares = [], [], {}
        for rid, found in pairs.items():
            kept = _in_order(found)
            share = self._share(rid, kept, len(usable), pdq=True)
            shares[rid] = share
            dist = int(np.median([d for _, _, d in kept]))
            if share >= mt.VIDEO_REVIEW_SHARE and len({q for q, _, _ in kept}) >= mt.VIDEO_MIN_FRAMES:
                evidence.append(self._video_match(rid, "PDQ", kept, share, share >= mt.VIDEO_MATCH_SHARE,
                                                  hamming_distance=dist))
        confirmed = {m.reference_id for m in evidence if m.confirmed}
        video_refs = [r for r in self._orb if self._refs[r].modality == "VIDEO"]
        candidates = sorted((r for r in shares if r not in confirmed and r in self._orb),
                            key=shares.get, reverse=True)
        if len(video_refs) <= mt.ROBUST_VIDEO_TOP_K:
            candidates += [r for r in video_refs if r not in shares]
        probe = mt.evenly(frames, mt.ROBUST_QUERY_FRAMES)
        for rid in candidates[: mt.ROBUST_VIDEO_TOP_K]:
            found, _ = mt.orb_verify_frames(probe, self._orb[rid])
            share = self._share(rid, found, len(probe), pdq=False)
            if len(found) >= mt.VIDEO_MIN_FRAMES and share >= mt.VIDEO_MATCH_SHARE:
                evidence = [m for m in evidence if m.reference_id != rid]
                evidence.append(self._video_match(rid, "ORB", found, share, True))
            elif found:
                weak.append(self._video_match(rid, "ORB", found, share, False))
        return evidence, weak

    def _share(self, rid: str, kept: list[tuple[int, int, int]], n_query: int, *, pdq: bool) -> float:
        """max(share of upload frames matched, share of reference frames matched)."""
        n_ref = len(self._frame_ms.get(rid, ())) if pdq else len(self._orb.get(rid, ()))
        q_share = len({q for q, _, _ in kept}) / max(1, n_query)
        r_share = len({r for _, r, _ in kept}) / max(1, n_ref)
        return min(1.0, max(q_share, r_share))

    def _video_match(self, rid, kind, kept, share, confirmed, **fields) -> Match:
        q0, q1 = min(q for q, _, _ in kept), max(q for q, _, _ in kept)
        r0 = min(r for _, r, _ in kept)
        n = len({q for q, _, _ in kept})
        what = "PDQ" if kind == "PDQ" else "ORB-verified"
        return self._match(rid, kind, share, confirmed=confirmed, upload_offset_ms=q0,
                           reference_offset_ms=r0, matched_ms=q1 - q0 + 1000,
                           detail=f"{n} {what} frames in order, {share:.0%} of the frames", **fields)


def _in_order(found: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The frame pairs that agree on one time offset (reference ms - upload ms), within
    ``VIDEO_OFFSET_TOLERANCE_MS``: the largest such set, one best pair per upload frame."""
    offsets = np.array([r - q for q, r, _ in found])
    best: list = []
    for o in np.unique(offsets):
        near = [p for p, x in zip(found, offsets) if abs(x - o) <= mt.VIDEO_OFFSET_TOLERANCE_MS]
        per_frame = {}
        for q, r, d in sorted(near, key=lambda p: p[2]):
            per_frame.setdefault(q, (q, r, d))
        if len(per_frame) > len(best):
            best = list(per_frame.values())
    return sorted(best)


def _with_latency(decision: CopyrightDecision, t0: float) -> CopyrightDecision:
    from dataclasses import replace

    return replace(decision, latency_ms=(time.perf_counter() - t0) * 1e3)

