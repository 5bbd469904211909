"""Comparing model versions by replaying the log: ``pulse replay compare``.

An analyst who trained a new model asks what it would have decided differently on real traffic.
:func:`compare_versions` replays one slice of the log through the same agent twice, once per
model version, each time through the worker's own code path (:func:`replay.rebuild.rebuild_views`
into a scratch keyspace of its own, dropped afterwards unless kept), collects the decisions each
run emitted, and :func:`diff_decisions` lines them up by their cause.

What a "decision" is depends on the agent (:data:`COMPARABLE`): for ``content_guard`` it is a
``moderation-verdicts`` event, keyed by the event judged and the post or comment it is about, and
the decision is its ``action`` (ALLOW, RESTRICT, BLOCK, REVIEW). Two versions *differ* on a
decision when their actions differ; a change of deciding tier with the same action is counted
apart. Each differing decision is filed under one policy category: the top-scoring category of
the side whose action is more severe (BLOCK > RESTRICT > REVIEW > ALLOW), i.e. the category the
stricter model acted on.

A version is whatever the agent's model setting accepts: for Content Guard an artifact name
under ``models/moderation/artifacts/`` or a model directory, optionally with ``:VARIANT`` to pick
the fast tier's weights (``davidson-v2:base`` against ``davidson-v2:distilled``); the verdicts
name the version they came from (``model_version``), and the report lists the ones seen.
"""
from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from streams.settings import Settings

#: Severity order of moderation actions, mildest first.
SEVERITY = ("ALLOW", "REVIEW", "RESTRICT", "BLOCK")


@dataclass(frozen=True)
class Comparable:
    """How to compare an agent's model versions: the settings field that picks the model, the
    topic its decisions are emitted on, and the fields that identify and make a decision."""

    setting: str
    topic: str
    key_fields: tuple[str, ...]
    decision_field: str


#: Agents ``pulse replay compare`` can compare, by name.
COMPARABLE: dict[str, Comparable] = {
    "content_guard": Comparable("moderation_model", "moderation-verdicts",
                                ("cause_event_id", "post_id", "comment_id"), "action"),
}


class CompareError(ValueError):
    """The comparison cannot run as asked (unknown agent, not two versions); the message says
    what to pass instead."""


def parse_versions(text: str) -> tuple[str, str]:
    """``"A,B"`` -> ``("A", "B")``.

    Raises
    ------
    CompareError
        Not exactly two non-empty versions.
    """
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise CompareError(f"--versions takes two model versions separated by a comma "
                           f"(e.g. davidson-v2:distilled,davidson-v2:base), not {text!r}")
    return parts[0], parts[1]


def _severity(action: str | None) -> int:
    return SEVERITY.index(action) if action in SEVERITY else -1


def _top_category(scores: Mapping[str, float] | None) -> str:
    """The highest-scoring policy category other than ``none`` (ties by name); ``none`` when no
    category scored."""
    ranked = sorted(((v, k) for k, v in (scores or {}).items() if k != "none"), key=lambda x: (-x[0], x[1]))
    return ranked[0][1] if ranked else "none"


def diff_decisions(a: Iterable[Mapping], b: Iterable[Mapping], *, key_fields: tuple[str, ...] = (
        "cause_event_id", "post_id", "comment_id"), decision_field: str = "action",
        examples: int = 10) -> dict:
    """Line up two runs' decisions (decoded verdict records) by ``key_fields`` and count the
    differences.

    Returns a dict: ``decisions`` (keys in both runs), ``same``, ``differ``, ``share_differ``,
    ``tier_changes`` (same decision, another deciding tier), ``only_a`` / ``only_b`` (keys one
    run decided and the other did not), ``transitions`` (``"ALLOW -> REVIEW"``: count, most
    frequent first), ``by_category`` (category of the stricter side, see the module docstring:
    count), ``model_versions`` (``{"a": [...], "b": [...]}`` as the verdicts name them) and
    ``examples``: up to ``examples`` differing decisions, the most severe changes first, each
    with both sides' decision, tier, top scores and reasons.
    """
    def index(records: Iterable[Mapping]) -> dict[tuple, Mapping]:
        out: dict[tuple, Mapping] = {}
        for r in records:
            out.setdefault(tuple(r.get(f) for f in key_fields), r)
        return out

    ia, ib = index(a), index(b)
    both = sorted(set(ia) & set(ib), key=lambda k: tuple("" if x is None else str(x) for x in k))
    transitions: Counter = Counter()
    categories: Counter = Counter()
    tier_changes = 0
    differing = []
    for k in both:
        ra, rb = ia[k], ib[k]
        da, db = ra.get(decision_field), rb.get(decision_field)
        if da == db:
            tier_changes += ra.get("tier") != rb.get("tier")
            continue
        transitions[f"{da} -> {db}"] += 1
        stricter = rb if _severity(db) > _severity(da) else ra
        categories[_top_category(stricter.get("scores"))] += 1
        differing.append((k, ra, rb))

    def side(r: Mapping) -> dict:
        top = sorted((r.get("scores") or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        return {decision_field: r.get(decision_field), "tier": r.get("tier"),
                "model_version": r.get("model_version"),
                "top_scores": {c: round(float(v), 3) for c, v in top}, "reasons": list(r.get("reasons") or [])}

    differing.sort(key=lambda t: (-abs(_severity(t[1].get(decision_field)) - _severity(t[2].get(decision_field))),
                                  tuple("" if x is None else str(x) for x in t[0])))
    n = len(both)
    return {
        "decisions": n, "same": n - len(differing), "differ": len(differing),
        "share_differ": round(len(differing) / n, 4) if n else 0.0, "tier_changes": int(tier_changes),
        "only_a": len(set(ia) - set(ib)), "only_b": len(set(ib) - set(ia)),
        "transitions": dict(transitions.most_common()), "by_category": dict(categories.most_common()),
        "model_versions": {"a": sorted({str(r.get("model_version")) for r in ia.values()}),
                           "b": sorted({str(r.get("model_version")) for r in ib.values()})},
        "examples": [{**dict(zip(key_fields, k)), "a": side(ra), "b": side(rb)}
                     for k, ra, rb in differing[:examples]],
    }


def compare_versions(settings: Settings, agent: str, versions: tuple[str, str], *,
                     start_ms: int | None = None, end_ms: int | None = None, examples: int = 10,
                     keep: bool = False, on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Replay ``[start_ms, end_ms)`` of ``agent``'s source topics once per version into scratch
    keyspaces (``compare_<run>_a`` / ``_b``, dropped afterwards unless ``keep``) and diff the
    decisions (:func:`diff_decisions`).

    ``on_progress(version, done, total)`` follows each replay. Returns the diff plus ``agent``,
    ``versions``, ``topic``, ``from_ms`` / ``to_ms``, ``events`` and ``seconds`` (``{"a": ...,
    "b": ...}``, a being the first version) and ``keyspaces`` (when kept).

    Raises
    ------
    CompareError
        ``agent`` is not in :data:`COMPARABLE`.
    TopicError, TimeRangeError, ViewStoreError, and the model loader's errors (an unknown
    version raises the loader's ``ModelNotFound``): as :func:`replay.rebuild.rebuild_views`.
    """
    from streams.contracts.codec import codec_for
    from streams.contracts.topics import topic_spec

    from replay.rebuild import drop_rebuild, rebuild_views

    how = COMPARABLE.get(agent)
    if how is None:
        raise CompareError(f"pulse replay compare knows how to compare {', '.join(sorted(COMPARABLE))}, "
                           f"not {agent!r}")
    codec = codec_for(settings, topic_spec(how.topic).schema, how.topic)
    run = uuid.uuid4().hex[:8]
    runs, made = [], []
    out: dict = {"agent": agent, "versions": list(versions), "topic": how.topic,
                 "from_ms": start_ms, "to_ms": end_ms, "events": {}, "seconds": {}}
    try:
        for label, version in zip("ab", versions):
            keyspace = f"compare_{run}_{label}"
            made.append(keyspace)
            r = rebuild_views(settings.with_(**{how.setting: version}), [agent], start_ms=start_ms,
                              end_ms=end_ms, into=keyspace, collect=True,
                              on_progress=None if on_progress is None else
                              (lambda done, total, v=version: on_progress(v, done, total)))
            runs.append([codec.decode(v) for v in r["emitted"].get(how.topic, {}).values()])
            out["events"][label] = r["events"]
            out["seconds"][label] = round(r["seconds"], 2)
    finally:
        if not keep:
            for keyspace in made:
                drop_rebuild(settings, keyspace)
    if keep:
        out["keyspaces"] = made
    out.update(diff_decisions(runs[0], runs[1], key_fields=how.key_fields,
                              decision_field=how.decision_field, examples=examples))
    return out
