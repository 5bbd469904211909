"""Content Guard's models: tiered text moderation, images and video keyframes, one policy.

Public API (what the content_guard agent calls)
    ``load_moderator(version=None) -> Moderator`` (``version``: a name under ``artifacts/``, an
    artifact directory, or None for the shipped ``artifacts.DEFAULT_VERSION``);
    ``Moderator.fast(texts) -> [Verdict | None]`` (None: uncertain, needs the heavy tier; cheap,
    inline), ``Moderator.heavy(texts) -> [Verdict]`` (run in an executor),
    ``Moderator.moderate_texts(texts)`` (both), ``Moderator.moderate_image(path)``,
    ``Moderator.moderate_video(path)`` (bad media -> a ``bad_media`` verdict, never an exception),
    ``Moderator.version``; ``combine(verdicts) -> Verdict`` (strictest action wins);
    ``Verdict`` (frozen: action, tier, scores, reasons, model, model_version, latency_ms,
    categories, label, policy_version).
Modules
    ``policy`` (the versioned policy file), ``datasets`` (labelled/unlabelled text, the split),
    ``text_fast`` (hashed n-gram logistic regression), ``encoders`` (Jigsaw BiLSTM in torch),
    ``text_finetuned`` (fine-tuned MiniLM classifier), ``text_heavy`` (stacked head),
    ``routing`` (decision rule, uncertain band, calibration), ``image`` (open_nsfw), ``tiers``
    (Moderator, Verdict), ``artifacts`` (versioned files), ``training``, ``evaluation``,
    ``baseline`` (Davidson et al.'s method, the same-run baseline), ``plots``, ``bench``,
    ``metrics``.

Heavy imports (torch, transformers, onnxruntime) happen on first use, not on import.
"""

from models.moderation.artifacts import DEFAULT_VERSION, ModelNotFound
from models.moderation.policy import ACTIONS, Policy, PolicyError, load_policy
from models.moderation.tiers import Moderator, Verdict, combine, load_moderator

__all__ = ["ACTIONS", "DEFAULT_VERSION", "ModelNotFound", "Moderator", "Policy", "PolicyError",
           "Verdict", "combine", "load_moderator", "load_policy"]
