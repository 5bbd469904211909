"""A rebuild after an erasure differs from the live run for the erased user, and only there:
verify counts those differences apart and keeps every other one."""
from __future__ import annotations

from replay.verify import Difference, Report, _drop_erased


def test_differences_naming_an_erased_user_are_counted_apart_and_the_rest_kept():
    report = Report(differences=[
        Difference("row", "user_feeds", "ada", "in the rebuilt view only", frozenset({"ada"})),
        Difference("event", "profiles", "e1", "fields handle differ", frozenset({"ada"})),
        Difference("point", "content", "p9", "in the live collection only", frozenset({"p9", "ada"})),
        Difference("row", "user_feeds", "bob", "items differ", frozenset({"bob"})),
        Difference("event", "feed-updates", "e2", "emitted by the replay, not on the live topic")])
    _drop_erased(report, {"ada"})
    assert [d.key for d in report.differences] == ["bob", "e2"]
    assert report.erased == 3 and "erased users" in report.notes[0]
    assert report.as_dict()["erased_subject_differences"] == 3


def test_nothing_erased_keeps_every_difference():
    report = Report(differences=[Difference("row", "t", "k", "x", frozenset({"bob"}))])
    _drop_erased(report, set())
    assert len(report.differences) == 1 and report.erased == 0 and not report.notes
