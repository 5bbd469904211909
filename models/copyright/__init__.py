"""Copyright Guard's model: a bank of registered reference works and the matching policy that
turns an upload's fingerprints into a decision (ALLOW, BLOCK, RESTRICT, REVIEW) with its evidence.

Public API
----------
``ReferenceBank()``
    ``register_file(path, reference_id=None, *, title=None, rights_holder_id="", policy="BLOCK")``,
    ``register_fingerprints(reference_id, modality, fingerprints, *, title, rights_holder_id,
    policy)``, ``withdraw(reference_id)``, ``match_file(path, *, metadata=None)`` (raises
    ``MediaError``), ``decision_for_file(path, *, metadata=None)`` (bad media -> a verdict),
    ``match_image``, ``match_audio``, ``match_video``; ``len(bank)``, ``id in bank``.
``reference_fingerprints(path) -> (modality, [{"kind", "offset_ms", "value"}])``
    What a ``CopyrightReference`` event carries.
``query_features(path)``, ``to_fingerprints``, ``from_fingerprints``, ``match_features``
    An upload's fingerprints computed once, in event form (``ContentFingerprint``) and back;
    ``ReferenceBank.match_features`` matches them (``models.copyright.query``).
``own_work_allowed(decision, creator_id)``
    A rights holder's own post of its work is reported, not blocked.
``CopyrightDecision``, ``Match``, ``bad_media_decision``
    The verdict and its evidence (``as_json(file)``; ``Match.as_avro()``).

Thresholds, each with its source, are the constants of ``models.copyright.matching`` and
``models.fingerprints.robust``. See ``models.copyright.evaluation`` (``pulse eval copyright``) for
recall and false-positive rate on real media, and ``models.copyright.bench`` for costs.
"""

from models.copyright.bank import Reference, ReferenceBank, reference_fingerprints
from models.copyright.decision import (BAD_MEDIA_ACTION, CopyrightDecision, Match,
                                       bad_media_decision, decide, own_work_allowed)
from models.copyright.query import QueryFeatures, from_fingerprints, query_features, to_fingerprints
from models.copyright.versioned import ReferenceVersion, VersionedReferenceBank

MODEL_NAME = "copyright_guard.fingerprints"
MODEL_VERSION = "1"
"""Name and version for verdict events (bump the version when a threshold or matcher changes)."""

__all__ = [
    "BAD_MEDIA_ACTION",
    "CopyrightDecision",
    "MODEL_NAME",
    "MODEL_VERSION",
    "Match",
    "Reference",
    "ReferenceBank",
    "ReferenceVersion",
    "VersionedReferenceBank",
    "bad_media_decision",
    "decide",
    "from_fingerprints",
    "own_work_allowed",
    "query_features",
    "QueryFeatures",
    "to_fingerprints",
    "reference_fingerprints",
]
