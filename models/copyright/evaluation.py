"""``pulse eval copyright``: recall per transformation and modality, false-positive rate and latency
of the reference bank on real media.

Procedure
    1. Register every reference (``ReferenceBank.register_file``); files that cannot be
       fingerprinted are listed under ``references.unusable`` with the reason.
    2. Make the transformed copies of ``models.copyright.transforms`` of each usable reference in a
       temporary folder and match each: a *hit* is a confirmed match (``matched``) naming the
       same work (a video's audio track, registered as an audio reference, is the same work as the
       video). ``recall`` = hits / copies, per modality and transformation; REVIEW verdicts are
       counted apart (``review``), they are not hits.
    3. False positives: every file of ``others`` (unrelated works) is matched against the full
       bank; and every copy is matched again with its own work withdrawn (*leave-one-out*: hard
       negatives, heavily transformed media of the same kind). A confirmed match to another work
       is a false positive; ``false_positive_rate`` = false positives / negatives.
    4. Latency: ``CopyrightDecision.latency_ms`` (fingerprinting + matching) of every query, p50
       and p99 per modality.

Default data (no ``--references``/``--others``): ``../shared/data`` as described in
``default_sets``. The real copies that ship with it (ThreatExchange's PDQ bridge edits and pattern
clips, the distorted carphone clip) are scored as ``real_variants``.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from models.copyright import transforms as tf
from models.copyright.bank import ReferenceBank
from models.copyright.folders import media_files
from models.copyright.decision import CopyrightDecision
from models.fingerprints import MediaError, detect_modality
from models.fingerprints.robust import MIN_INLIERS, MIN_INLIER_RATIO
from models.copyright import matching as mt

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
"""``../shared/data`` relative to the repository root."""

GOAL_RECALL = 0.95
GOAL_FPR = 0.01
GOAL_AUDIO_TRANSFORMS = ("mp3_64k", "volume_minus6db", "noise_20db_snr", "excerpt")
"""Audio transformations with a recall goal (issue 5); tempo is reported, not a goal."""


def default_sets(data: Path = DATA) -> dict:
    """The default references, others and real variants in ``../shared/data``.

    References: 26 of the 51 COCO photos (sorted by name), ThreatExchange's bridge photo
    (``pdq/bridge-mods/aaa-orig.jpg``) and ``misc-images/c.png``; Chromaprint's ``test.mp3``
    (10 s), the spoken-voice and drum WAVs of ``media/audio`` (all under 2 s: they are reported
    as unusable, too short for Chromaprint) and the audio tracks of ``bigbuckbunny.mp4`` and
    ``pattern-hd-no-bar.mp4`` (real soundtracks, 5.3 s and 6.9 s); videos ``pattern-hd-no-bar``,
    ``bigbuckbunny``, ``cityCC0`` and ``carphone_pristine``.
    Others: the other 25 COCO photos and scikit-image's bundled photos (when installed).
    Real variants: the bridge edits -> ``aaa-orig``; the four other pattern clips ->
    ``pattern-hd-no-bar``; ``carphone_distorted`` -> ``carphone_pristine``.

    Raises
    ------
    FileNotFoundError : ``data`` is missing.
    """
    if not data.is_dir():
        raise FileNotFoundError(f"real media not found at {data} (../shared/data): pass "
                                "--references DIR and --others DIR")
    coco = sorted((data / "coco-captions" / "images").glob("*.jpg"))
    te = data / "threatexchange"
    vids = data / "media" / "video"
    refs = coco[: len(coco) // 2 + 1] + [te / "pdq" / "bridge-mods" / "aaa-orig.jpg",
                                         te / "pdq" / "misc-images" / "c.png"]
    refs += [data / "chromaprint" / "test.mp3"] + sorted((data / "media" / "audio").rglob("*.wav"))
    refs += [te / "videos" / "pattern-hd-no-bar.mp4", vids / "bigbuckbunny.mp4",
             vids / "cityCC0.mpg", vids / "carphone_pristine.mp4"]
    others = coco[len(coco) // 2 + 1:]
    try:
        import skimage

        skdata = Path(skimage.__file__).parent / "data"
        others += sorted(p for p in skdata.glob("*.*") if p.suffix in (".png", ".jpg")
                         and not p.stem.startswith("chessboard"))
    except ImportError:
        pass
    real = [(p, "aaa-orig") for p in sorted((te / "pdq" / "bridge-mods").glob("*.jpg"))
            if p.stem != "aaa-orig"]
    real += [(te / "videos" / f"pattern-{n}.mp4", "pattern-hd-no-bar")
             for n in ("longer-no-bar", "sd-grey-bar", "sd-with-large-logo-bar",
                       "sd-with-small-logo-bar")]
    real += [(vids / "carphone_distorted.mp4", "carphone_pristine")]
    tracks = [te / "videos" / "pattern-hd-no-bar.mp4", vids / "bigbuckbunny.mp4"]
    return {"references": [p for p in refs if p.exists()], "others": [p for p in others if p.exists()],
            "real_variants": [(p, r) for p, r in real if p.exists()],
            "audio_tracks": [p for p in tracks if p.exists()]}


def _work(reference_id: str) -> str:
    return reference_id.removesuffix(".audio")


def _pct(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.array(values)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1), "max_ms": round(float(a.max()), 1)}


def _confirmed_works(d: CopyrightDecision) -> set[str]:
    return {_work(m.reference_id) for m in d.matches if m.confirmed}


def run_evaluation(references: Path | None = None, others: Path | None = None, *,
                   limit: int | None = None, seed: int = 0, on_progress=None) -> dict:
    """Run the evaluation of the module docstring; returns the JSON-ready result.

    ``references`` / ``others``: folders (``media_files``); either None uses ``default_sets``.
    ``limit``: at most this many references per modality. ``on_progress(message, done, total)``.

    Raises
    ------
    FileNotFoundError : a folder is missing, or no reference could be fingerprinted.
    """
    t_start = time.perf_counter()
    step = on_progress or (lambda *a: None)
    defaults = default_sets() if references is None or others is None else None
    ref_files = media_files(references) if references is not None else defaults["references"]
    other_files = media_files(others) if others is not None else defaults["others"]
    real = defaults["real_variants"] if references is None and defaults else []
    tracks = defaults["audio_tracks"] if references is None and defaults else []
    bank = ReferenceBank()
    unusable, per_modality = [], defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="pulse-eval-copyright-") as tmp:
        tmp_dir = Path(tmp)
        for p in tracks:
            ref_files.append(tf.extract_audio_track(p, tmp_dir))
        for i, path in enumerate(ref_files):
            step(f"registering {path.name}", i, len(ref_files))
            modality = None
            try:
                modality = detect_modality(path).upper()
                if limit and len(per_modality[modality]) >= limit:
                    continue
                ref = bank.register_file(path, path.stem)
                per_modality[ref.modality].append(path)
            except MediaError as err:
                unusable.append({"file": str(path), "modality": modality, "reason": str(err)})
        if not len(bank):
            raise FileNotFoundError("no reference could be fingerprinted")

        # transformed copies: (path, modality, transformation, expected work)
        queries = []
        for modality, paths in per_modality.items():
            for path in paths:
                make = {"IMAGE": tf.image_variants, "VIDEO": tf.video_variants,
                        "AUDIO": lambda p, d: tf.audio_variants(p, d, seed=seed)}[modality]
                step(f"transforming {path.name}", 0, 0)
                try:
                    variants = make(path, tmp_dir)
                except MediaError as err:
                    unusable.append({"file": str(path), "modality": modality,
                                     "reason": f"could not be transformed: {err}"})
                    continue
                for name, variant in variants.items():
                    queries.append((variant, modality, name, _work(path.stem)))
        for path, expected in real:
            if expected in bank:
                queries.append((path, detect_modality(path).upper(), "real_variants", expected))

        latency = defaultdict(list)
        recall = defaultdict(lambda: defaultdict(lambda: {"n": 0, "hits": 0, "review": 0,
                                                          "by_kind": defaultdict(int),
                                                          "missed": []}))
        loo = defaultdict(lambda: {"n": 0, "false_positives": 0, "review": 0, "examples": []})
        total = 2 * len(queries) + len(other_files)
        done = 0
        for path, modality, name, expected in queries:
            step(f"matching {path.name}", done, total)
            d = bank.decision_for_file(path)
            done += 1
            latency[modality].append(d.latency_ms)
            cell = recall[modality][name]
            cell["n"] += 1
            works = _confirmed_works(d)
            if expected in works:
                cell["hits"] += 1
                for kind in {m.kind for m in d.matches
                             if m.confirmed and _work(m.reference_id) == expected}:
                    cell["by_kind"][kind] += 1  # every fingerprint that confirmed the work
            else:
                cell["review"] += d.action == "REVIEW"
                cell["missed"].append({"file": path.name, "action": d.action,
                                       "reason": d.error or d.reasons[0]})
            # leave-one-out: the same copy with its own work withdrawn
            step(f"leave-one-out {path.name}", done, total)
            withdrawn = [bank.get(r.reference_id) for r in list(bank)
                         if _work(r.reference_id) == expected]
            for r in withdrawn:
                bank.withdraw(r.reference_id)
            d2 = bank.decision_for_file(path)
            done += 1
            for r in withdrawn:
                bank.register_fingerprints(r.reference_id, r.modality, list(r.fingerprints),
                                           title=r.title, rights_holder_id=r.rights_holder_id,
                                           policy=r.policy)
            if d2.error is None:
                cell_fp = loo[modality]
                cell_fp["n"] += 1
                latency[modality].append(d2.latency_ms)
                cell_fp["review"] += d2.action == "REVIEW"
                if d2.matched:
                    cell_fp["false_positives"] += 1
                    cell_fp["examples"].append({"file": path.name,
                                                "matched": d2.best.reference_id})

        fp_others = defaultdict(lambda: {"n": 0, "false_positives": 0, "review": 0,
                                         "unusable": 0, "examples": []})
        for path in other_files:
            step(f"matching other {path.name}", done, total)
            d = bank.decision_for_file(path)
            done += 1
            cell = fp_others[d.modality or "UNREADABLE"]
            if d.error is not None:
                cell["unusable"] += 1
                continue
            latency[d.modality].append(d.latency_ms)
            cell["n"] += 1
            cell["review"] += d.action == "REVIEW"
            if d.matched:
                cell["false_positives"] += 1
                cell["examples"].append({"file": path.name, "matched": d.best.reference_id})

    def finish_recall(cells):
        out = {}
        for name, c in cells.items():
            out[name] = {"recall": round(c["hits"] / c["n"], 4) if c["n"] else None,
                         "n": c["n"], "hits": c["hits"], "review": c["review"],
                         "by_kind": dict(c["by_kind"]), "missed": c["missed"][:5]}
        return out

    recall_out = {m: finish_recall(cells) for m, cells in sorted(recall.items())}
    negatives = sum(c["n"] for c in fp_others.values()) + sum(c["n"] for c in loo.values())
    false_pos = (sum(c["false_positives"] for c in fp_others.values())
                 + sum(c["false_positives"] for c in loo.values()))
    fpr = false_pos / negatives if negatives else None
    goal_cells = [(m, n, c["recall"]) for m, cells in recall_out.items() for n, c in cells.items()
                  if n != "real_variants" and (m != "AUDIO" or n in GOAL_AUDIO_TRANSFORMS)]
    failing = [f"{m}/{n}: {r}" for m, n, r in goal_cells if r is not None and r < GOAL_RECALL]

    def rate(c):
        return dict(c, rate=round(c["false_positives"] / c["n"], 4) if c["n"] else None,
                    examples=c["examples"][:5])

    return {
        "data": {"references": str(references) if references else f"default ({DATA})",
                 "others": str(others) if others else f"default ({DATA})"},
        "references": {"registered": {m: len(p) for m, p in sorted(per_modality.items())},
                       "unusable": unusable},
        "recall": recall_out,
        "false_positives": {
            "others": {m: rate(c) for m, c in sorted(fp_others.items())},
            "leave_one_out": {m: rate(c) for m, c in sorted(loo.items())},
            "negatives": negatives, "false_positives": false_pos,
            "false_positive_rate": round(fpr, 4) if fpr is not None else None,
        },
        "latency_ms": {m: _pct(v) for m, v in sorted(latency.items())},
        "thresholds": {"pdq_match_distance": mt.PDQ_MATCH_DISTANCE,
                       "pdq_grey_distance": mt.PDQ_GREY_DISTANCE,
                       "orb_min_inliers": MIN_INLIERS, "orb_min_inlier_ratio": MIN_INLIER_RATIO,
                       "video_match_share": mt.VIDEO_MATCH_SHARE,
                       "audio_match_ber": mt.AUDIO_MATCH_BER,
                       "audio_review_ber": mt.AUDIO_REVIEW_BER},
        "excerpt": {"target_s": tf.EXCERPT_S,
                    "note": "references shorter than "
                            f"{tf.EXCERPT_S / tf.EXCERPT_MAX_SHARE:.0f} s get an excerpt of "
                            f"{tf.EXCERPT_MAX_SHARE:.0%} of their length"},
        "goal": {"recall": GOAL_RECALL, "false_positive_rate": GOAL_FPR,
                 "met": not failing and fpr is not None and fpr <= GOAL_FPR,
                 "below_recall_goal": failing},
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
