"""The copyright-references side input answers *as of the upload's event time*
(models.copyright.versioned): an upload before a registration is allowed and after it blocked, a
withdrawal ends matching from its time on, a re-registration replaces the version, bad events are
skipped, later registrations do not change an earlier upload's decision, and the same events give
byte-identical encoded emits through fresh AgentRunners whether the references were all applied
first (replay) or interleaved with the uploads (live), in any upload order. Real COCO photos from
../shared/data."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from agents.copyright_guard import SPEC, load, open_references
from models.copyright import ReferenceBank, VersionedReferenceBank
from streams.contracts.codec import codec_for
from streams.contracts.topics import topic_spec
from streams.runtime.engine import AgentRunner, RawMessage
from streams.settings import Settings

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
COCO = sorted((DATA / "coco-captions" / "images").glob("*.jpg"))
pytestmark = pytest.mark.skipif(len(COCO) < 6, reason=f"COCO photos not found under {DATA} "
                                                      "(shared data)")

T = 1_700_000_000_000


def reference(rid, action, at, fps=None, **kw):
    return {"event_id": str(uuid.uuid4()), "event_time": at, "producer": "pulse-copyright",
            "reference_id": rid, "rights_holder_id": kw.get("rights_holder_id", "studio"),
            "action": action, "title": kw.get("title", rid), "media_kind": "IMAGE",
            "media_uri": kw.get("media_uri"), "fingerprints": fps or [],
            "policy": kw.get("policy", "BLOCK"), "metadata": {}}


def upload(post, path, at, kind="IMAGE"):
    return {"event_id": str(uuid.uuid4()), "event_time": at, "producer": "app", "post_id": post,
            "creator_id": "u1", "kind": kind, "content_type": "FOREVER",
            "media_uri": None if path is None else Path(path).resolve().as_uri(),
            "caption": "look", "title": None, "hashtags": [], "duration_ms": None,
            "size_bytes": None, "width": None, "height": None, "parent_post_id": None}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Fingerprints of photos 0-3 and a re-encoded, half-size copy of each."""
    from models.copyright import reference_fingerprints

    d = tmp_path_factory.mktemp("copies")
    fps, copies = [], []
    for i, p in enumerate(COCO[:4]):
        fps.append(reference_fingerprints(p)[1])
        im = Image.open(p).convert("RGB")
        copy = d / f"copy{i}.jpg"
        im.resize((im.width // 2, im.height // 2)).save(copy, quality=50)
        copies.append(copy)
    return fps, copies


def act(bank, path, at):
    d = bank.decision_for_file(path, at)
    return d.action, [m.reference_id for m in d.matches if m.confirmed]


def test_an_upload_before_the_registration_is_allowed_and_after_it_blocked(media):
    fps, copies = media
    bank = VersionedReferenceBank()
    bank.apply(reference("work-1", "REGISTER", T + 1, fps[0]))
    assert act(bank, copies[0], T) == ("ALLOW", [])
    assert act(bank, copies[0], T + 1) == ("BLOCK", ["work-1"])
    assert act(bank, copies[0], T) == ("ALLOW", [])  # back in time
    assert bank.interval("work-1") == (T + 1, None)


def test_a_withdrawal_ends_matching_from_its_time_on(media):
    fps, copies = media
    bank = VersionedReferenceBank()
    bank.apply(reference("work-1", "REGISTER", T, fps[0]))
    bank.apply(reference("work-1", "WITHDRAW", T + 100))
    assert act(bank, copies[0], T + 150) == ("ALLOW", [])
    assert act(bank, copies[0], T + 100) == ("ALLOW", [])
    assert act(bank, copies[0], T + 99) == ("BLOCK", ["work-1"])
    assert act(bank, copies[0], T + 50) == ("BLOCK", ["work-1"])
    assert bank.interval("work-1") == (T, T + 100) and len(bank) == 1  # kept in memory


def test_a_re_registration_replaces_the_version(media):
    fps, copies = media
    bank = VersionedReferenceBank()
    bank.apply(reference("work-2", "REGISTER", T + 10, fps[1], title="first cut"))
    bank.apply(reference("work-2", "REGISTER", T + 20, fps[2], title="second cut",
                         policy="RESTRICT"))
    assert act(bank, copies[1], T + 15) == ("BLOCK", ["work-2"])
    assert act(bank, copies[2], T + 15) == ("ALLOW", [])
    assert act(bank, copies[1], T + 25) == ("ALLOW", [])
    assert act(bank, copies[2], T + 25) == ("RESTRICT", ["work-2"])
    assert bank.decision_for_file(copies[2], T + 25).matches[0].title == "second cut"
    assert [v.version_id for v in bank] == ["work-2", "work-2~1"]
    assert bank.interval("work-2") == (T + 10, T + 20)
    assert bank.interval("work-2~1") == (T + 20, None)
    assert [v.version_id for v in bank.valid_at(T + 15)] == ["work-2"]
    # a re-registration that arrives later with an earlier event time takes its place in time
    bank.apply(reference("work-2", "REGISTER", T + 12, fps[3], title="late"))
    assert bank.interval("work-2") == (T + 10, T + 12)
    assert bank.interval("work-2~2") == (T + 12, T + 20)
    assert act(bank, copies[3], T + 15) == ("BLOCK", ["work-2"])
    assert act(bank, copies[1], T + 15) == ("ALLOW", [])


def test_a_media_uri_registration_is_fingerprinted_when_applied(media):
    from tests.unit.agent_harness import media_roots_for_tests

    _, copies = media
    bank = VersionedReferenceBank(resolve_media=media_roots_for_tests().resolve)
    bank.apply(reference("work-3", "REGISTER", T, media_uri=COCO[3].as_uri()))
    assert bank.skipped == 0 and bank.valid_at(T)[0].modality == "IMAGE"
    assert act(bank, copies[3], T) == ("BLOCK", ["work-3"])


def test_bad_events_are_logged_and_skipped_and_do_not_end_the_current_version(media, caplog):
    fps, copies = media
    bank = open_references(None, None)
    good = reference("work-1", "REGISTER", T, fps[0])
    bank.apply(good)
    bad_pdq = [{"kind": "PDQ", "offset_ms": 0, "value": b"short"}]
    for bad in [reference("work-1", "REGISTER", T + 5, bad_pdq),
                reference("work-1", "REGISTER", T + 6),  # neither fingerprints nor media_uri
                reference("work-1", "REGISTER", T + 7, media_uri="file:///nope/missing.jpg"),
                reference("work-1", "REGISTER", T + 8, media_uri="s3://bucket/x.jpg"),
                dict(reference("work-1", "REGISTER", T + 9, fps[0]), action="PURGE"),
                {"event_id": str(uuid.uuid4()), "action": "REGISTER"},  # no reference_id
                "not even a record"]:
        bank.apply(bad)  # never raises
    assert (bank.applied, bank.skipped, len(bank)) == (1, 7, 1)
    assert "skipped" in caplog.text
    assert act(bank, copies[0], T + 10) == ("BLOCK", ["work-1"])
    bank.apply(good)  # the same event again (event_id seen): ignored
    assert len(bank) == 1 and bank.interval("work-1") == (T, None)


def test_later_registrations_do_not_change_an_earlier_uploads_decision(media, tmp_path):
    """The decision at t is exactly that of a plain bank holding the references valid at t: a
    work registered later that matches the upload by PDQ must not stop the robust (ORB) stage
    from finding the work registered before."""
    from models.copyright import reference_fingerprints
    from models.fingerprints import hamming, hash_image

    fps, _ = media
    for i, p in enumerate(COCO[:4]):
        im = Image.open(p).convert("RGB")
        w, h = im.size
        ImageDraw.Draw(im).rectangle((0, int(h * 0.7), w, h), fill=(20, 30, 120))  # a logo bar
        if hamming(hash_image(im).pdq, hash_image(Image.open(p).convert("RGB")).pdq) > 47:
            break
    else:
        pytest.skip("no photo whose logo-bar copy defeats PDQ")
    copy = tmp_path / "logo.png"
    im.save(copy)
    plain = ReferenceBank()
    plain.register_fingerprints("work-a", "IMAGE", fps[i], title="work-a",
                                rights_holder_id="studio")
    expected = plain.decision_for_file(copy)
    assert expected.action == "BLOCK" and expected.matches[0].kind == "ORB"

    bank = VersionedReferenceBank()
    bank.apply(reference("work-a", "REGISTER", T - 10, fps[i]))
    bank.apply(reference("work-b", "REGISTER", T + 10, reference_fingerprints(copy)[1]))
    got = bank.decision_for_file(copy, T)
    assert _same(got, expected)
    later = bank.decision_for_file(copy, T + 10)
    assert {m.reference_id for m in later.matches if m.confirmed} >= {"work-b"}


def _same(a, b) -> bool:
    ja, jb = a.as_json(), b.as_json()
    ja.pop("latency_ms"), jb.pop("latency_ms")
    return ja == jb


# --- replay determinism through the engine --------------------------------------------------------


@pytest.fixture(scope="module")
def scenario(media, tmp_path_factory):
    """Reference events and uploads on one timeline (event time, then references first)."""
    fps, copies = media
    broken = tmp_path_factory.mktemp("broken") / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    refs = [reference("work-1", "REGISTER", T + 10, fps[0]),
            reference("work-2", "REGISTER", T + 20, fps[1], policy="RESTRICT"),
            reference("work-1", "WITHDRAW", T + 40),
            reference("work-2", "REGISTER", T + 50, fps[2], title="new cut"),
            reference("work-3", "REGISTER", T + 50, fps[3], policy="MONITOR",
                      rights_holder_id="u1")]
    ups = [upload("p0", copies[0], T + 9), upload("p1", copies[0], T + 10),
           upload("p2", copies[1], T + 30), upload("p3", copies[0], T + 39),
           upload("p4", copies[0], T + 40), upload("p5", copies[1], T + 60),
           upload("p6", copies[2], T + 60), upload("p7", copies[2], T + 49),
           upload("p8", copies[3], T + 70), upload("p9", None, T + 70, kind="TEXT"),
           upload("p10", broken, T + 80)]
    timeline = sorted([(r["event_time"], 0, i, "ref") for i, r in enumerate(refs)]
                      + [(u["event_time"], 1, i, "up") for i, u in enumerate(ups)])
    return refs, ups, timeline


def _codecs(tmp_path):
    from tests.unit.agent_harness import settings_for

    settings = settings_for(tmp_path)  # media roots: pytest's temporary directories, COCO
    cache = {}

    def codecs(topic):
        if topic not in cache:
            cache[topic] = codec_for(settings, topic_spec(topic).schema, topic)
        return cache[topic]
    return codecs, settings


def _runner(codecs, settings):
    side = {s.name: s.open(settings, None) for s in SPEC.side_inputs}
    return AgentRunner(SPEC, codecs, config=settings, models=load(settings), side=side)


def _messages(ups, codecs):
    c = codecs("uploads")
    return [RawMessage("uploads", 0, i, u["post_id"].encode(), c.encode(u))
            for i, u in enumerate(ups)]


def _by_cause(outputs):
    emits, views = {}, {}
    for out in outputs:
        for e in out.emits:
            emits.setdefault(e.cause.offset, []).append((e.topic, e.key, e.value))
        assert not out.dead_letters
        for v in out.views:
            views.setdefault(v.row.get("post_id"), []).append(v)
    return emits, views


def test_replay_and_live_give_byte_identical_emits(scenario, tmp_path):
    refs, ups, timeline = scenario
    codecs, settings = _codecs(tmp_path)
    ref_codec = codecs("copyright-references")
    decoded = [ref_codec.decode(ref_codec.encode(r)) for r in refs]  # as the runtime applies them
    msgs = _messages(ups, codecs)
    in_time_order = [msgs[i] for _, _, i, kind in timeline if kind == "up"]

    replay = _runner(codecs, settings)  # the whole topic first, then every upload in one batch
    for r in decoded:
        replay.side["references"].apply(r)
    replay_out = [replay.run(in_time_order)]

    live = _runner(codecs, settings)  # references applied before each batch, as they arrive
    live_out, batch = [], []
    for _, _, i, kind in timeline:
        if kind == "ref":
            if batch:
                live_out.append(live.run(batch))
                batch = []
            live.side["references"].apply(decoded[i])
        else:
            batch.append(msgs[i])
    live_out.append(live.run(batch))

    shuffled = _runner(codecs, settings)  # another partition order: uploads back and forth in time
    for r in decoded:
        shuffled.side["references"].apply(r)
    order = [9, 0, 6, 1, 10, 3, 7, 2, 5, 4, 8]
    shuffled_out = [shuffled.run([msgs[i]]) for i in order]

    emits, views = _by_cause(replay_out)
    assert len(emits) == len(ups)
    assert _by_cause(live_out) == (emits, views)
    assert _by_cause(shuffled_out) == (emits, views)
    assert [e for out in live_out for e in out.emits] and (
        [(e.topic, e.key, e.value) for e in replay_out[0].emits]
        == [(e.topic, e.key, e.value) for out in live_out for e in out.emits])

    verdicts = codecs("copyright-verdicts")
    got = {}
    for offset, es in emits.items():
        (v,) = [verdicts.decode(value) for topic, _, value in es if topic == "copyright-verdicts"]
        assert v["latency_ms"] is None
        got[v["post_id"]] = (v["action"], [m["reference_id"] for m in v["matches"]])
    assert got == {
        "p0": ("ALLOW", []),                    # before work-1 was registered
        "p1": ("BLOCK", ["work-1"]),            # at its registration
        "p2": ("RESTRICT", ["work-2"]),
        "p3": ("BLOCK", ["work-1"]),            # just before the withdrawal
        "p4": ("ALLOW", []),                    # at the withdrawal
        "p5": ("ALLOW", []),                    # work-2's first cut was replaced
        "p6": ("BLOCK", ["work-2"]),            # ... by this one (policy BLOCK)
        "p7": ("ALLOW", []),                    # before the new cut
        "p8": ("ALLOW", ["work-3"]),            # MONITOR (and the uploader's own work)
        "p9": ("ALLOW", []),
        "p10": ("REVIEW", []),                  # media that could not be checked
    }
