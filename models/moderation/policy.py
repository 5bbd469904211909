"""The moderation policy: categories, actions, and which score leads to which action.

The policy is a versioned TOML file (``policy.v1.toml`` next to this module); nothing here hard-codes
a threshold. Calibrated values (each tier's hate threshold and uncertain band) live in the trained
artifact, not in the policy: the policy names their targets.

Example
-------
>>> p = load_policy()
>>> p.version, p.strictest(["ALLOW", "RESTRICT"])
('v1', 'RESTRICT')
>>> p.text_action("hate", {"hate": 0.9, "harassment": 0.05, "none": 0.05})[0]
'BLOCK'
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ACTIONS = ("ALLOW", "RESTRICT", "REVIEW", "BLOCK")
"""All actions, strictest last."""

TEXT_CLASSES = ("hate", "harassment", "none")
"""The text tiers' classes, in Davidson's class order (0 hate speech, 1 offensive, 2 neither)."""

POLICY_DIR = Path(__file__).resolve().parent
DEFAULT_POLICY = POLICY_DIR / "policy.v1.toml"


class PolicyError(ValueError):
    """The policy file is missing, not TOML, or inconsistent; the message says which key."""


@dataclass(frozen=True)
class Category:
    """One policy category: what it is, what scores it ("none" = no model), its action and, for
    score-thresholded categories, ``block_at`` / ``review_at`` (probabilities, None if unused)."""

    name: str
    description: str
    model: str
    action: str
    block_at: float | None = None
    review_at: float | None = None


@dataclass(frozen=True)
class Policy:
    """A parsed policy file. Build with :func:`load_policy`.

    Attributes
    ----------
    version : the policy's own version ("v1"), carried by every verdict.
    categories : by name.
    order : actions, least strict first.
    tiers : per tier ("fast", "heavy"), its targets (``min_decided``, ``calibration_margin``).
    hate_min_precision : constraint used to calibrate each tier's hate threshold.
    limits : media limits (``max_media_bytes``, ``max_image_pixels``, ``max_video_frames``).
    """

    version: str
    categories: dict[str, Category]
    order: tuple[str, ...]
    tiers: dict[str, dict[str, float]]
    hate_min_precision: float
    limits: dict[str, int] = field(default_factory=dict)
    path: str = ""

    def strictest(self, actions) -> str:
        """The strictest of ``actions`` by the policy's order ("ALLOW" for none)."""
        rank = {a: i for i, a in enumerate(self.order)}
        return max(actions, key=rank.__getitem__, default="ALLOW")

    def text_action(self, label: str, scores: dict[str, float]) -> tuple[str, list[str], list[str]]:
        """Action, flagged categories and reasons for a text the tier labelled ``label``
        (one of :data:`TEXT_CLASSES`) with ``scores`` (may also hold ``threat`` and other
        heavy-tier scores).

        Returns ``(action, categories, reasons)``.
        """
        actions, cats, reasons = ["ALLOW"], [], []
        if label in ("hate", "harassment"):
            c = self.categories[label]
            actions.append(c.action)
            cats.append(label)
            reasons.append(f"{label} {scores.get(label, 0.0):.2f} -> {c.action}")
        threat = self.categories.get("threat")
        if threat is not None and "threat" in scores and threat.block_at is not None:
            s = scores["threat"]
            if s >= threat.block_at:
                actions.append(threat.action)
                cats.append("threat")
                reasons.append(f"threat {s:.2f} >= {threat.block_at} -> {threat.action}")
            elif threat.review_at is not None and s >= threat.review_at:
                actions.append("REVIEW")
                cats.append("threat")
                reasons.append(f"threat {s:.2f} >= {threat.review_at} -> REVIEW")
        return self.strictest(actions), cats, reasons

    def image_action(self, nsfw: float) -> tuple[str, list[str], list[str]]:
        """Action, categories and reasons for an open_nsfw probability ``nsfw`` in [0, 1]."""
        c = self.categories["sexual"]
        if c.block_at is not None and nsfw >= c.block_at:
            return c.action, ["sexual"], [f"sexual {nsfw:.2f} >= {c.block_at} -> {c.action}"]
        if c.review_at is not None and nsfw >= c.review_at:
            return "REVIEW", ["sexual"], [f"sexual {nsfw:.2f} in [{c.review_at}, {c.block_at}) -> REVIEW"]
        return "ALLOW", [], []


def _num(d: dict, key: str, where: str, default=None) -> float | None:
    v = d.get(key, default)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise PolicyError(f"{where}.{key} must be a number, got {v!r}")
    return float(v)


def load_policy(path: str | Path | None = None) -> Policy:
    """Parse and check a policy file (default: the shipped ``policy.v1.toml``).

    Raises
    ------
    PolicyError : missing file, bad TOML, unknown action, a category without an action, thresholds
        out of [0, 1] or ``review_at > block_at``, or a missing required category or tier.
    """
    p = Path(path) if path is not None else DEFAULT_POLICY
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise PolicyError(f"policy file not found: {p}") from err
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"policy file {p} is not valid TOML: {err}") from err
    version = raw.get("version")
    if not isinstance(version, str) or not version:
        raise PolicyError(f"{p}: missing `version`")
    order = tuple(raw.get("actions", {}).get("order", ACTIONS))
    if sorted(order) != sorted(ACTIONS):
        raise PolicyError(f"{p}: actions.order must list exactly {', '.join(ACTIONS)}, got {order}")
    cats: dict[str, Category] = {}
    for name, c in raw.get("categories", {}).items():
        where = f"categories.{name}"
        action = c.get("action")
        if action not in ACTIONS:
            raise PolicyError(f"{p}: {where}.action must be one of {', '.join(ACTIONS)}, got {action!r}")
        block_at, review_at = _num(c, "block_at", where), _num(c, "review_at", where)
        for k, v in (("block_at", block_at), ("review_at", review_at)):
            if v is not None and not 0.0 <= v <= 1.0:
                raise PolicyError(f"{p}: {where}.{k} must be in [0, 1], got {v}")
        if block_at is not None and review_at is not None and review_at > block_at:
            raise PolicyError(f"{p}: {where}.review_at ({review_at}) > block_at ({block_at})")
        cats[name] = Category(name, str(c.get("description", "")), str(c.get("model", "none")),
                              action, block_at, review_at)
    for needed in ("hate", "harassment", "threat", "sexual", "bad_media"):
        if needed not in cats:
            raise PolicyError(f"{p}: missing category `{needed}`")
    for name in ("threat", "sexual"):
        if cats[name].block_at is None:
            raise PolicyError(f"{p}: categories.{name}.block_at is required")
    tiers = {}
    for t in ("fast", "heavy"):
        d = raw.get("tiers", {}).get(t)
        if d is None:
            raise PolicyError(f"{p}: missing [tiers.{t}]")
        md = _num(d, "min_decided", f"tiers.{t}")
        if md is None or not 0.0 < md <= 1.0:
            raise PolicyError(f"{p}: tiers.{t}.min_decided must be in (0, 1]")
        tiers[t] = {"min_decided": md,
                    "calibration_margin": _num(d, "calibration_margin", f"tiers.{t}", 0.0)}
    hmp = _num(raw.get("hate_threshold", {}), "min_precision", "hate_threshold", 0.44)
    limits = {k: int(v) for k, v in raw.get("limits", {}).items()}
    return Policy(version, cats, order, tiers, float(hmp), limits, str(p))
