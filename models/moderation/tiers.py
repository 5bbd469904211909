"""The tiered moderator: fast tier, heavy tier, human review; and the verdict it returns.

Text: the fast tier (``text_fast``, about a millisecond) decides every text outside its calibrated
uncertain band; the rest goes to the heavy tier (``text_heavy``: fine-tuned MiniLM + Jigsaw BiLSTM + head,
tens of milliseconds); what the heavy tier cannot decide gets ``REVIEW`` (the human review queue).
Images and video keyframes: open_nsfw (``image``); its uncertain band (the policy's ``review_at``
to ``block_at``) is ``REVIEW`` directly, as there is no heavier image model. Text visible in an
image or in a few video keyframes is read by OCR (``ocr``, Tesseract) and, when there are at least
the policy's ``ocr.min_words`` words, goes through the text tiers; its verdict is combined with the
image's. Which score leads to which action is the policy's (``policy.v1.toml``).

For a stream worker, ``fast`` is cheap enough to run inline and ``heavy`` belongs in an executor;
both are safe to call from several threads (the heavy encoders load once, under a lock).

Example
-------
>>> m = load_moderator()                                     # doctest: +SKIP
>>> [v.action for v in m.moderate_texts(["have a lovely day"])]   # doctest: +SKIP
['ALLOW']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from models.fingerprints.errors import MediaError
from models.moderation import artifacts
from models.moderation.encoders import EncoderUnavailable
from models.moderation.image import NSFWScorer
from models.moderation.ocr import (OCR_FRAME_SIDE, UNAVAILABLE, OcrConfig, available, ocr_text,
                                   tesseract_version)
from models.moderation.policy import TEXT_CLASSES, Policy, load_policy
from models.moderation.routing import TierRule
from models.moderation.text_fast import FastTextModel
from models.moderation.text_heavy import HEAVY_FEATURES, HeavyHead, HeavyTextModel, jigsaw_dict

FAST_MODEL = "pulse-text-fast"
HEAVY_MODEL = "pulse-text-heavy"


@dataclass(frozen=True)
class Verdict:
    """One moderation decision.

    Attributes
    ----------
    action : "ALLOW" | "RESTRICT" | "BLOCK" | "REVIEW" (see the policy file).
    tier : "FAST" | "HEAVY": the tier that decided (or, for REVIEW, the last that looked).
    scores : category -> probability in [0, 1]: text ``hate``, ``harassment``, ``none`` (sum to 1),
        heavy tier also ``threat`` and ``jigsaw.<label>``; images/video ``sexual``.
    reasons : human-readable, e.g. ``"hate 0.83 -> BLOCK"``, ``"bad media: file too large ..."``.
    model, model_version : what produced it (``pulse-text-fast`` / ``davidson-v2:distilled``).
    latency_ms : wall time of the model call that produced it (the whole batch the item was in;
        for a heavy verdict from ``moderate_texts``, fast + heavy time).
    categories : flagged policy categories (empty for ALLOW).
    label : the tier's best-guess text class (``hate``/``harassment``/``none``) even when it did
        not decide; None for media.
    policy_version : version of the policy file applied.
    """

    action: str
    tier: str
    scores: dict[str, float]
    reasons: list[str]
    model: str
    model_version: str
    latency_ms: float
    categories: list[str] = field(default_factory=list)
    label: str | None = None
    policy_version: str = ""

    def to_json(self) -> dict:
        return {"action": self.action, "tier": self.tier, "categories": list(self.categories),
                "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
                "reasons": list(self.reasons), "label": self.label, "model": self.model,
                "model_version": self.model_version, "policy_version": self.policy_version,
                "latency_ms": round(self.latency_ms, 3)}


def combine(verdicts: list[Verdict], policy: Policy | None = None) -> Verdict:
    """One verdict for a post from the verdicts of its parts (caption, hashtags, image, frames):
    the strictest action wins; categories and reasons are merged in order without repeats; each
    score is the maximum over parts; tier is HEAVY if any part needed it; latencies add up.

    Raises
    ------
    ValueError : no verdicts.
    """
    if not verdicts:
        raise ValueError("combine needs at least one verdict")
    pol = policy or load_policy()
    action = pol.strictest(v.action for v in verdicts)
    scores: dict[str, float] = {}
    for v in verdicts:
        for k, s in v.scores.items():
            scores[k] = max(scores.get(k, 0.0), float(s))

    def uniq(items):
        return list(dict.fromkeys(items))

    worst = next(v for v in verdicts if v.action == action)
    return Verdict(action=action, tier="HEAVY" if any(v.tier == "HEAVY" for v in verdicts) else "FAST",
                   scores=scores, reasons=uniq(r for v in verdicts for r in v.reasons),
                   model="+".join(uniq(v.model for v in verdicts)),
                   model_version="+".join(uniq(v.model_version for v in verdicts)),
                   latency_ms=float(sum(v.latency_ms for v in verdicts)),
                   categories=uniq(c for v in verdicts for c in v.categories),
                   label=worst.label, policy_version=worst.policy_version)


class Moderator:
    """A loaded artifact + policy. Build with :func:`load_moderator`.

    ``fast_variant`` picks the fast weights (``"base"`` or ``"distilled"``); default: the
    artifact's ``default_fast``.
    """

    def __init__(self, directory: Path, policy: Policy | None = None,
                 fast_variant: str | None = None) -> None:
        self.directory = directory
        self.config = artifacts.read_config(directory)
        self.version: str = self.config["version"]
        self.policy = policy or load_policy()
        self.fast_variant = fast_variant or self.config["default_fast"]
        if self.fast_variant not in self.config["fast"]:
            raise artifacts.ModelNotFound(
                f"artifact {self.version} has no fast model {self.fast_variant!r} "
                f"(has {', '.join(self.config['fast'])})")
        features = self.config["heavy"].get("features")
        if features != HEAVY_FEATURES:
            raise artifacts.ModelNotFound(
                f"artifact {self.version} was trained by an older Pulse (heavy tier features "
                f"{features or 'MiniLM embeddings'}; this Pulse needs {HEAVY_FEATURES}): retrain it "
                f"with `{self.config.get('command') or 'pulse train moderation ...'}`")
        self.fast_model = FastTextModel.load(directory / f"fast_{self.fast_variant}.npz")
        self.fast_rule = TierRule(**self.config["fast"][self.fast_variant]["rule"])
        base = (self.fast_model if self.fast_variant == "base"
                else FastTextModel.load(directory / "fast_base.npz"))
        self.heavy_model = HeavyTextModel(HeavyHead.load(directory / "heavy.npz"), base, directory)
        self.heavy_rule = TierRule(**self.config["heavy"][self.fast_variant]["rule"])
        lim = self.policy.limits
        self.nsfw = NSFWScorer(max_bytes=lim.get("max_media_bytes", 150 * 2**20),
                               max_pixels=lim.get("max_image_pixels"))
        self.ocr = OcrConfig.from_policy_file(self.policy.path) if self.policy.path else OcrConfig()

    @property
    def fast_version(self) -> str:
        return f"{self.version}:{self.fast_variant}"

    # ------------------------------------------------------------------------------ text
    def _text_verdict(self, p: np.ndarray, label: int, tier: str, decided: bool, extra: dict,
                      latency_ms: float) -> Verdict:
        scores = {c: float(p[i]) for i, c in enumerate(TEXT_CLASSES)} | extra
        name = TEXT_CLASSES[label]
        action, cats, reasons = self.policy.text_action(name, scores)
        if not decided:
            reasons = [f"uncertain at the heavy tier (best guess {name} {scores[name]:.2f}) -> REVIEW",
                       *[r for r in reasons if r.startswith("threat")]]
            action = self.policy.strictest(["REVIEW", *(["BLOCK"] if "threat" in cats and
                                                         action == "BLOCK" else [])])
            cats = [c for c in cats if c == "threat"] + ([] if name == "none" else [name])
        model, version = ((FAST_MODEL, self.fast_version) if tier == "FAST"
                          else (HEAVY_MODEL, f"{self.version}:heavy"))
        return Verdict(action, tier, scores, reasons, model, version, latency_ms, cats, name,
                       self.policy.version)

    def fast_scores(self, texts: list[str]) -> np.ndarray:
        """(n, 3) fast-tier probabilities (hate, harassment, none)."""
        return self.fast_model.predict_proba(texts)

    def fast(self, texts: list[str]) -> list[Verdict | None]:
        """Fast-tier verdicts; None where the text is in the uncertain band (send it to ``heavy``)."""
        if not texts:
            return []
        t0 = time.perf_counter()
        p = self.fast_model.predict_proba(list(texts))
        lab, dec = self.fast_rule.labels(p), self.fast_rule.decided(p)
        ms = (time.perf_counter() - t0) * 1000
        return [self._text_verdict(p[i], int(lab[i]), "FAST", True, {}, ms) if dec[i] else None
                for i in range(len(texts))]

    def heavy(self, texts: list[str]) -> list[Verdict]:
        """Heavy-tier verdicts (REVIEW where the heavy tier is uncertain too). Loads the encoders
        on first use. Raises ``encoders.EncoderUnavailable`` when their packages are missing."""
        if not texts:
            return []
        t0 = time.perf_counter()
        p, jig = self.heavy_model.scores(list(texts))
        lab, dec = self.heavy_rule.labels(p), self.heavy_rule.decided(p)
        ms = (time.perf_counter() - t0) * 1000
        out = []
        for i in range(len(texts)):
            j = jigsaw_dict(jig[i])
            extra = {"threat": j["threat"], **{f"jigsaw.{k}": v for k, v in j.items()}}
            out.append(self._text_verdict(p[i], int(lab[i]), "HEAVY", bool(dec[i]), extra, ms))
        return out

    def moderate_texts(self, texts: list[str]) -> list[Verdict]:
        """Every text through the tiers: fast, then heavy for the uncertain ones."""
        texts = list(texts)
        t0 = time.perf_counter()
        out = self.fast(texts)
        fast_ms = (time.perf_counter() - t0) * 1000
        todo = [i for i, v in enumerate(out) if v is None]
        for i, v in zip(todo, self.heavy([texts[i] for i in todo])):
            out[i] = replace(v, latency_ms=v.latency_ms + fast_ms)
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------------------ media
    def _media_verdict(self, nsfw: float, ms: float, *extra_reasons: str) -> Verdict:
        action, cats, reasons = self.policy.image_action(nsfw)
        reasons = [*reasons, *extra_reasons]
        return Verdict(action, "FAST", {"sexual": nsfw}, reasons, self.nsfw.name, self.nsfw.version,
                       ms, cats, None, self.policy.version)

    def bad_media(self, reason: str, ms: float = 0.0) -> Verdict:
        """The verdict for media that cannot be screened (policy category ``bad_media``)."""
        c = self.policy.categories["bad_media"]
        return Verdict(c.action, "FAST", {}, [f"bad media: {reason}"], self.nsfw.name,
                       self.nsfw.version, ms, ["bad_media"], None, self.policy.version)

    def moderate_image(self, path: str | Path) -> Verdict:
        """Verdict for an image file: open_nsfw, combined with the text tiers' verdict on the text
        OCR reads in it (see ``_ocr_verdicts``; latency includes OCR). Unreadable, truncated,
        unsupported, oversized (> 150 MiB) or decompression-bomb images get a ``bad_media``
        verdict (never an exception)."""
        t0 = time.perf_counter()
        try:
            img = self.nsfw.load(path)
            nsfw = float(self.nsfw.score_pil([img])[0])
        except MediaError as err:
            return self.bad_media(str(err), (time.perf_counter() - t0) * 1000)
        ms = (time.perf_counter() - t0) * 1000
        texts, notes, ocr_ms = self._ocr_verdicts([("image", img)])
        return self._with_text(self._media_verdict(nsfw, ms + ocr_ms, *notes), texts)

    def moderate_video(self, path: str | Path) -> Verdict:
        """Verdict for a video from its keyframes (max NSFW score over frames), combined with the
        verdict on the text OCR reads in ``ocr.max_keyframes`` frames spread over it; bad media as
        for images. Raises ``FingerprintUnavailable`` when ffmpeg is not installed."""
        t0 = time.perf_counter()
        try:
            vs = self.nsfw.score_video(path, self.policy.limits.get("max_video_frames", 60))
            frames = (self.nsfw.spread_frames(path, self.ocr.max_keyframes, OCR_FRAME_SIDE)
                      if self._ocr_on() else [])
        except MediaError as err:
            return self.bad_media(str(err), (time.perf_counter() - t0) * 1000)
        ms = (time.perf_counter() - t0) * 1000
        texts, notes, ocr_ms = self._ocr_verdicts([(f"video at {t:.1f} s", im) for t, im in frames])
        media = self._media_verdict(vs.nsfw, ms + ocr_ms, *notes,
                                    f"max sexual score at {vs.t_s:.1f} s over {vs.frames} frames")
        return self._with_text(media, texts)

    # ------------------------------------------------------------------------------ OCR
    def _ocr_on(self) -> bool:
        """OCR enabled by the policy and the tesseract binary installed."""
        return self.ocr.enabled and self.ocr.max_keyframes > 0 and available()

    def _ocr_verdicts(self, images: list) -> tuple[list[Verdict], list[str], float]:
        """OCR ``[(where, PIL image), ...]`` and moderate each distinct text of at least
        ``ocr.min_words`` words with the text tiers (fast, heavy where the fast tier is unsure).

        Returns ``(text verdicts, notes for the media verdict, OCR ms)``; the text verdicts'
        reasons say ``text in <where>: '<text>' -> ...`` and their model is ``tesseract+<tier>``.
        Notes: ``"ocr unavailable"`` (no tesseract: OCR skipped) or a timeout / failure.
        """
        if not self.ocr.enabled:
            return [], [], 0.0
        if not available():
            return [], [UNAVAILABLE], 0.0
        ms, notes, found = 0.0, [], {}
        for where, img in images:
            r = ocr_text(img, self.ocr)
            ms += r.ms
            if r.skipped:
                notes.append(r.skipped)
            elif len(r.words) >= self.ocr.min_words:
                found.setdefault(r.text, where)  # a caption repeated over keyframes counts once
        if not found:
            return [], list(dict.fromkeys(notes)), ms
        texts = list(found)
        try:
            verdicts = self.moderate_texts(texts)
        except EncoderUnavailable as err:  # heavy tier missing: its items go to human review
            fast = self.fast(texts)
            why = [f"heavy tier unavailable ({err}) -> REVIEW"]
            verdicts = [v or Verdict("REVIEW", "FAST", {}, why, FAST_MODEL, self.fast_version, 0.0,
                                     [], None, self.policy.version) for v in fast]
        version = f"tesseract-{tesseract_version()}"
        out = []
        for text, v in zip(texts, verdicts):
            quoted = text if len(text) <= 80 else text[:77] + "..."
            head = f"text in {found[text]}: '{quoted}'"
            label = v.label or "none"
            reasons = ([f"{head} -> {r}" for r in v.reasons] or
                       [f"{head} -> {label} {v.scores.get(label, 0.0):.2f} -> {v.action}"])
            out.append(replace(v, reasons=reasons, model=f"tesseract+{v.model}",
                               model_version=f"{version}+{v.model_version}"))
        return out, list(dict.fromkeys(notes)), ms

    def _with_text(self, media: Verdict, texts: list[Verdict]) -> Verdict:
        """The media verdict combined (``combine``) with the text verdicts that flag something;
        clean text (ALLOW) only adds its reason and latency, so the verdict stays open_nsfw's."""
        clean = [v for v in texts if v.action == "ALLOW"]
        media = replace(media, reasons=[*media.reasons, *(r for v in clean for r in v.reasons)],
                        latency_ms=media.latency_ms + sum(v.latency_ms for v in clean))
        flagged = [v for v in texts if v.action != "ALLOW"]
        return combine([media, *flagged], self.policy) if flagged else media


def load_moderator(version: str | Path | None = None, *, fast_variant: str | None = None,
                   policy_path: str | Path | None = None) -> Moderator:
    """Load a trained moderator: ``version`` None -> the shipped default
    (``artifacts.DEFAULT_VERSION``), a name under ``models/moderation/artifacts/``, or a directory;
    ``NAME:VARIANT`` (e.g. ``davidson-v2:base``, the form verdicts name their ``model_version``
    in) also picks the fast tier's weights when ``fast_variant`` is not given.

    Raises
    ------
    artifacts.ModelNotFound : no artifact there.
    policy.PolicyError : the policy file is bad.
    """
    if fast_variant is None and isinstance(version, str) and ":" in version:
        name, _, variant = version.rpartition(":")
        if name and variant and "/" not in variant:
            version, fast_variant = name, variant
    return Moderator(artifacts.resolve(version), load_policy(policy_path), fast_variant)
