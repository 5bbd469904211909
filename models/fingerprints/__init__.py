"""Media fingerprints for Copyright Guard: Chromaprint for audio, PDQ and pHash for images/video.

Pure model code: functions from media (a file, PCM bytes, decoded pixels) to fingerprints, and the
distances used to compare them. No I/O beyond reading the media, no bank, no matching policy.

Audio (``audio``)
    ``chromaprint_file(path)`` / ``chromaprint_pcm(pcm, sample_rate, channels)`` ->
    ``AudioFingerprint(raw (n,) uint32, encoded str, duration_s, algorithm)``, via libchromaprint
    (pyacoustid) and ffmpeg; ``bit_error_rate(a, b, offset)`` and
    ``best_alignment(query, reference, max_offset) -> (offset, ber)``.
Images (``image``)
    ``image_hashes(path_or_bytes)`` / ``hash_image(pil_or_rgb_array)`` ->
    ``ImageHashes(pdq 32 bytes, pdq_quality, phash 8 bytes, width, height)``; ``pdq_dihedral`` for
    the 8 rotations/flips; ``hamming(a, b)``.
Video (``video``)
    ``video_fingerprint(path)`` -> ``VideoFingerprint(frames [FrameHash(t_s, pdq, quality, phash)],
    audio AudioFingerprint | None, duration_s, width, height)`` from frames sampled about once a
    second plus keyframes (``sample_frames``, dark bars trimmed by ``trim_borders``);
    ``frame_match_ratio(query, reference)`` is vPDQ's share of matching frames; ``probe`` and
    ``detect_modality`` describe a file with ffprobe.
Errors
    ``MediaError(ValueError)`` for media that cannot be fingerprinted (its message is a reason for
    a verdict); ``FingerprintUnavailable(RuntimeError)`` when ffmpeg or libchromaprint is missing.

Example
-------
>>> from models.fingerprints import hamming
>>> hamming(bytes.fromhex("ff00"), bytes.fromhex("0f01"))
5
"""

from models.fingerprints.audio import (
    ITEM_DURATION_S,
    AudioFingerprint,
    best_alignment,
    bit_error_rate,
    chromaprint_file,
    chromaprint_pcm,
    decode_audio,
)
from models.fingerprints.bank import PDQBank, brute_force_search
from models.fingerprints.errors import FingerprintUnavailable, MediaError
from models.fingerprints.image import (
    ImageHashes,
    hamming,
    hash_image,
    image_hashes,
    load_image,
    pdq_dihedral,
)
from models.fingerprints.video import (
    FrameHash,
    VideoFingerprint,
    detect_modality,
    frame_match_ratio,
    probe,
    sample_frames,
    trim_borders,
    video_fingerprint,
)

__all__ = [
    "PDQBank",
    "brute_force_search",
    "FrameHash",
    "VideoFingerprint",
    "detect_modality",
    "frame_match_ratio",
    "probe",
    "sample_frames",
    "trim_borders",
    "video_fingerprint",
    "ITEM_DURATION_S",
    "AudioFingerprint",
    "FingerprintUnavailable",
    "ImageHashes",
    "MediaError",
    "best_alignment",
    "bit_error_rate",
    "chromaprint_file",
    "chromaprint_pcm",
    "decode_audio",
    "hamming",
    "hash_image",
    "image_hashes",
    "load_image",
    "pdq_dihedral",
]
