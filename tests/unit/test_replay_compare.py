"""`pulse replay compare`'s pure parts: version parsing and the decision diff."""
from __future__ import annotations

import pytest

from replay.compare import CompareError, diff_decisions, parse_versions


def verdict(cause, action, tier="FAST", scores=None, post=None, comment=None, version="m:a"):
    return {"cause_event_id": cause, "post_id": post or f"p-{cause}", "comment_id": comment, "action": action,
            "tier": tier, "scores": scores or {"none": 0.9, "toxic": 0.05}, "reasons": [f"{action.lower()} {cause}"],
            "model_version": version}


def test_versions_are_two_names():
    assert parse_versions("davidson-v2:distilled, davidson-v2:base") == ("davidson-v2:distilled", "davidson-v2:base")
    for bad in ("davidson-v2", "a,b,c", "a,", " ,b"):
        with pytest.raises(CompareError, match="two model versions"):
            parse_versions(bad)


def test_diff_counts_changes_categories_tiers_and_one_sided_decisions():
    a = [verdict("e1", "ALLOW"), verdict("e2", "ALLOW"), verdict("e3", "BLOCK", scores={"hate": 0.9, "toxic": 0.8}),
         verdict("e4", "ALLOW", tier="FAST"), verdict("e5", "REVIEW"), verdict("only-a", "ALLOW"),
         verdict("e6", "ALLOW", comment="c1")]
    b = [verdict("e1", "ALLOW"), verdict("e2", "REVIEW", tier="HEAVY", scores={"toxic": 0.6, "harassment": 0.2}),
         verdict("e3", "ALLOW", scores={"hate": 0.1}), verdict("e4", "ALLOW", tier="HEAVY"),
         verdict("e5", "BLOCK", scores={"harassment": 0.95}), verdict("only-b", "ALLOW"),
         verdict("e6", "RESTRICT", comment="c1", scores={"toxic": 0.7}, version="m:b")]
    d = diff_decisions(a, b, examples=2)
    assert (d["decisions"], d["same"], d["differ"], d["tier_changes"]) == (6, 2, 4, 1)
    assert (d["only_a"], d["only_b"]) == (1, 1) and d["share_differ"] == round(4 / 6, 4)
    assert d["transitions"] == {"ALLOW -> REVIEW": 1, "BLOCK -> ALLOW": 1, "REVIEW -> BLOCK": 1, "ALLOW -> RESTRICT": 1}
    # the stricter side's top category: B's toxic (e2, e6), A's hate (e3), B's harassment (e5)
    assert d["by_category"] == {"toxic": 2, "hate": 1, "harassment": 1}
    assert d["model_versions"] == {"a": ["m:a"], "b": ["m:a", "m:b"]}
    # the largest severity jumps first: BLOCK -> ALLOW (3 steps), then REVIEW -> BLOCK (2)
    assert [e["cause_event_id"] for e in d["examples"]] == ["e3", "e5"]
    assert d["examples"][0]["a"]["top_scores"] == {"hate": 0.9, "toxic": 0.8}


def test_identical_runs_do_not_differ():
    runs = [verdict(f"e{i}", "ALLOW" if i % 3 else "REVIEW") for i in range(20)]
    d = diff_decisions(runs, list(reversed(runs)))
    assert d["differ"] == 0 and d["same"] == 20 and d["transitions"] == {} and d["examples"] == []


def test_a_moderator_version_can_name_its_fast_variant():
    from models.moderation.tiers import load_moderator

    assert load_moderator("davidson-v2:base").fast_version == "davidson-v2:base"
    assert load_moderator("davidson-v2").fast_version == load_moderator(None).fast_version
    from models.moderation.artifacts import ModelNotFound

    with pytest.raises(ModelNotFound, match="no fast model 'fancy'"):
        load_moderator("davidson-v2:fancy")


def test_the_command_prints_counts_tables_and_examples(monkeypatch, tmp_path):
    """`pulse replay compare`'s report as a person reads it (the replay itself is covered on the
    real servers by tests/integration/test_replay_compare.py)."""
    from typer.testing import CliRunner

    import replay.compare as C
    from streams.cli import app

    a = [verdict("e1", "ALLOW"), verdict("e2", "ALLOW", post="se-p7", comment="se-c9")]
    b = [verdict("e1", "ALLOW"), verdict("e2", "RESTRICT", post="se-p7", comment="se-c9",
                                         scores={"harassment": 0.66, "none": 0.3}, version="m:b")]
    canned = {"agent": "content_guard", "versions": ["m:a", "m:b"], "topic": "moderation-verdicts",
              "from_ms": None, "to_ms": None, "events": {"a": 2, "b": 2}, "seconds": {"a": 0.1, "b": 0.1},
              **diff_decisions(a, b)}
    seen = {}

    def fake(settings, agent, versions, **kw):
        seen.update(agent=agent, versions=versions, **kw)
        return canned

    monkeypatch.setattr(C, "compare_versions", fake)
    result = CliRunner().invoke(app, ["replay", "compare", "--agent", "content_guard", "--versions", "m:a,m:b",
                                      "--from", "2018-03-01", "--examples", "1"],
                                env={"PULSE_HOME": str(tmp_path), "COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert seen["versions"] == ("m:a", "m:b") and seen["examples"] == 1 and seen["start_ms"] == 1519862400000
    assert all(len(line) <= 80 for line in result.output.splitlines())
    out = " ".join(result.output.split())  # the console wraps at 80 columns
    assert "2 decisions replayed with both versions" in out and "1 differ (50.0 %)" in out
    assert "ALLOW -> RESTRICT" in out and "harassment" in out
    assert "se-p7 comment se-c9: A ALLOW" in out and "-> B RESTRICT" in out
