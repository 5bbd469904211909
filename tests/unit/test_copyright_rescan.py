"""copyright_rescan through the engine (no broker, no store), on real media: Copyright Guard runs
over the uploads and emits their ContentFingerprint events (encoded and decoded by the real
codecs), which fill the rescan's fingerprint side input, as the runtime would; posts-published and
takedowns fill the others. Then a work is registered after publication and matched late."""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from PIL import Image

from agents import copyright_guard, copyright_rescan
from agents.registry import AGENTS
from agents.shared.posts import PublishedPosts, Takedowns
from models.copyright import ReferenceBank, from_fingerprints, reference_fingerprints
from models.copyright import late as late_module
from streams.contracts.effects import Upsert
from tests.unit.agent_harness import Harness, full_record

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
COCO = sorted((DATA / "coco-captions" / "images").glob("*.jpg"))
VIDEOS = DATA / "threatexchange" / "videos"
pytestmark = pytest.mark.skipif(len(COCO) < 10, reason=f"real media not found under {DATA}")
needs_video = pytest.mark.skipif(shutil.which("ffmpeg") is None or not VIDEOS.is_dir(),
                                 reason=f"ffmpeg or {VIDEOS} absent")

T0 = 1_700_000_000_000
HOUR = 3_600_000
T = T0 + 10 * HOUR  # the late registration


def eid() -> str:
    return str(uuid.uuid4())


def upload(post, path, at, creator="u1", kind="IMAGE"):
    return full_record("uploads", event_id=eid(), event_time=at, producer="app", post_id=post,
                       creator_id=creator, kind=kind, content_type="FOREVER",
                       media_uri=None if path is None else Path(path).resolve().as_uri(),
                       caption="look", hashtags=["photo"])


def published(post, at, creator="u1", uploaded=None, kind="IMAGE", content_type="FOREVER"):
    return full_record("posts-published", event_id=eid(), event_time=at, producer="publisher",
                       post_id=post, creator_id=creator, kind=kind, content_type=content_type,
                       distribution="FULL", uploaded_at=uploaded or at, hashtags=["photo"])


def takedown(post, at):
    return full_record("takedowns", event_id=eid(), event_time=at, producer="publisher",
                       post_id=post, creator_id="u1", gate="moderation", reasons=["x"])


def registration(rid, path=None, at=T, action="REGISTER", **kw):
    modality, fps = reference_fingerprints(path) if path is not None else ("IMAGE", [])
    return full_record("copyright-references", event_id=eid(), event_time=at,
                       producer="pulse-copyright", reference_id=rid,
                       rights_holder_id=kw.pop("rights_holder_id", "studio"), action=action,
                       title=kw.pop("title", rid), media_kind=modality, fingerprints=fps,
                       policy=kw.pop("policy", "BLOCK"), **kw)


def fingerprint_events(tmp_path, uploads):
    """Copyright Guard over ``uploads`` (no work registered): its decoded content-fingerprints."""
    h = Harness(copyright_guard.SPEC, tmp_path,
                side={"references": copyright_guard.open_references(None, None)})
    out = h.feed(*[("uploads", u) for u in uploads])
    assert not out.dead_letters
    return [h.decode(e) for e in out.emits if e.topic == "content-fingerprints"]


def side_for(tmp_path, uploads, pubs=(), downs=()):
    prints = copyright_rescan.open_fingerprints(None, None)
    for record in fingerprint_events(tmp_path, uploads):
        prints.apply(record)
    posts, gone = PublishedPosts(), Takedowns()
    for p in pubs:
        posts.apply(p)
    for d in downs:
        gone.apply(d)
    return {"fingerprints": prints, "published": posts, "takedowns": gone}


def verdicts(h, out):
    return {v["post_id"]: v for v in (h.decode(e) for e in out.emits
                                      if e.topic == "copyright-verdicts")}


def rows(out):
    return {e.row["post_id"]: e.row for e in out.views
            if isinstance(e, Upsert) and e.table == "copyright_matches"}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A work (COCO[0]), its re-encoded half-size copy, its 10 % crop (PDQ far: ORB finds it),
    and an unrelated photo."""
    d = tmp_path_factory.mktemp("media")
    im = Image.open(COCO[0]).convert("RGB")
    w, h = im.size
    copy, crop = d / "copy.jpg", d / "crop.jpg"
    im.resize((w // 2, h // 2)).save(copy, quality=40)
    im.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(crop, quality=60)
    return {"work": COCO[0], "copy": copy, "crop": crop, "other": COCO[1]}


def test_spec_reads_three_side_inputs_and_is_registered():
    spec = copyright_rescan.SPEC
    assert AGENTS["copyright_rescan"] is spec
    assert spec.topics == ("copyright-references",) and spec.blocking and spec.order_sensitive
    assert spec.outputs == ("copyright-verdicts", "review-queue") and spec.tables == ()
    assert [(s.name, s.topic) for s in spec.side_inputs] == [
        ("fingerprints", "content-fingerprints"), ("published", "posts-published"),
        ("takedowns", "takedowns")]
    assert "content-fingerprints" in copyright_guard.SPEC.outputs


def test_guard_emits_fingerprints_that_match_as_the_file_does(tmp_path, media):
    """The fingerprints Copyright Guard emits rebuild the features it matched: against a bank
    with the work, they give the decision the file gives. Text posts have none."""
    ups = [upload("p-copy", media["copy"], T0), upload("p-crop", media["crop"], T0 + 1),
           upload("p-text", None, T0 + 2, kind="TEXT")]
    events = {e["post_id"]: e for e in fingerprint_events(tmp_path, ups)}
    assert set(events) == {"p-copy", "p-crop"}
    e = events["p-copy"]
    assert e["cause_event_id"] == ups[0]["event_id"] and e["media_kind"] == "IMAGE"
    kinds = [f["kind"] for f in e["fingerprints"]]
    assert kinds.count("PDQ") == 8 and kinds.count("ORB") == 1 and kinds.count("PHASH") == 1
    assert [f["orientation"] for f in e["fingerprints"] if f["kind"] == "PDQ"] == list(range(8))
    bank = ReferenceBank()
    bank.register_file(media["work"], "work", rights_holder_id="studio")
    for post, path in (("p-copy", media["copy"]), ("p-crop", media["crop"])):
        f = events[post]
        got = bank.match_features(from_fingerprints(f["media_kind"], f["fingerprints"]))
        want = bank.match_file(path)
        assert (got.action, got.best.kind, got.best.hamming_distance) == (
            want.action, want.best.kind, want.best.hamming_distance) != ("ALLOW", None, None)
    assert bank.match_file(media["crop"]).best.kind == "ORB"  # the crop needs the robust stage


def test_a_work_registered_after_publication_blocks_its_published_copies(tmp_path, media):
    ups = [upload("p-copy", media["copy"], T0), upload("p-crop", media["crop"], T0 + 1),
           upload("p-other", media["other"], T0 + 2),
           upload("p-own", media["copy"], T0 + 3, creator="studio"),
           upload("p-down", media["copy"], T0 + 4),      # taken down before T
           upload("p-pending", media["copy"], T0 + 5),   # never published
           upload("p-after", media["copy"], T + 1)]      # uploaded after T: the gate's job
    pubs = [published(p, T0 + HOUR, creator="studio" if p == "p-own" else "u1")
            for p in ("p-copy", "p-crop", "p-other", "p-own", "p-down")]
    pubs.append(published("p-after", T + 2, uploaded=T + 1))
    side = side_for(tmp_path, ups, pubs, [takedown("p-down", T0 + 2 * HOUR)])
    h = Harness(copyright_rescan.SPEC, tmp_path, side=side)
    reg = registration("work-1", media["work"], title="A registered photo")
    out = h.feed(("copyright-references", reg))
    assert not out.dead_letters
    v = verdicts(h, out)
    assert set(v) == {"p-copy", "p-crop"}
    for post, kind in (("p-copy", "PDQ"), ("p-crop", "ORB")):
        x = v[post]
        assert x["action"] == "BLOCK" and x["cause_event_id"] == reg["event_id"]
        assert x["producer"] == "copyright_rescan" and x["latency_ms"] is None
        assert x["event_time"].timestamp() * 1000 == T and x["creator_id"] == "u1"
        assert x["reasons"][0].startswith("late match: reference work-1 registered at")
        assert "after the post was published" in x["reasons"][0]
        assert (x["matches"][0]["reference_id"], x["matches"][0]["kind"]) == ("work-1", kind)
    r = rows(out)
    assert set(r) == {"p-copy", "p-crop", "p-own"}  # the rights holder's own post: reported
    assert r["p-own"]["action"] == "ALLOW" and r["p-copy"]["action"] == "BLOCK"
    assert r["p-copy"]["matched_at"] == T
    # a replay (fresh side states, same events) writes the same bytes; a withdrawal nothing
    side2 = side_for(tmp_path, ups, pubs, [takedown("p-down", T0 + 2 * HOUR)])
    h2 = Harness(copyright_rescan.SPEC, tmp_path, side=side2)
    out2 = h2.feed(("copyright-references", reg))
    assert [(e.topic, e.key, e.value) for e in out2.emits] == [
        (e.topic, e.key, e.value) for e in out.emits]
    assert not h.feed(("copyright-references", dict(
        registration("work-1", at=T + HOUR, action="WITHDRAW"), fingerprints=[]))).emits


def test_policies_monitor_reports_and_an_earlier_registration_sees_nothing(tmp_path, media):
    ups = [upload("p-copy", media["copy"], T0)]
    side = side_for(tmp_path, ups, [published("p-copy", T0 + HOUR)])
    h = Harness(copyright_rescan.SPEC, tmp_path, side=side)
    out = h.feed(("copyright-references", registration("w-mon", media["work"], policy="MONITOR")))
    assert verdicts(h, out) == {} and rows(out)["p-copy"]["action"] == "ALLOW"
    out = h.feed(("copyright-references", registration("w-res", media["work"], policy="RESTRICT")))
    assert verdicts(h, out)["p-copy"]["action"] == "RESTRICT"
    # registered before the post was published (the gate's case): not a late match
    out = h.feed(("copyright-references", registration("w-early", media["work"], at=T0 + 1)))
    assert verdicts(h, out) == {} and rows(out) == {}


def test_a_flash_post_expired_by_registration_time_is_left_alone(tmp_path, media):
    ups = [upload("p-flash", media["copy"], T0)]
    flash = dict(published("p-flash", T0 + HOUR, content_type="FLASH"), expires_at=T0 + 24 * HOUR)
    side = side_for(tmp_path, ups, [flash])
    h = Harness(copyright_rescan.SPEC, tmp_path, side=side)
    out = h.feed(("copyright-references", registration("w", media["work"], at=T0 + 30 * HOUR)))
    assert verdicts(h, out) == {}
    out = h.feed(("copyright-references", registration("w2", media["work"], at=T0 + 2 * HOUR)))
    assert verdicts(h, out)["p-flash"]["action"] == "BLOCK"


def test_beyond_the_exhaustive_bound_only_pdq_near_posts_are_candidates(tmp_path, media,
                                                                        monkeypatch):
    """The documented limit: past RESCAN_ROBUST_MAX eligible posts, a crop whose PDQ is far is
    not verified by ORB any more; a PDQ-near copy still is."""
    ups = [upload("p-copy", media["copy"], T0), upload("p-crop", media["crop"], T0 + 1)]
    side = side_for(tmp_path, ups, [published(p, T0 + HOUR) for p in ("p-copy", "p-crop")])
    monkeypatch.setattr(late_module, "RESCAN_ROBUST_MAX", 1)
    h = Harness(copyright_rescan.SPEC, tmp_path, side=side)
    out = h.feed(("copyright-references", registration("w", media["work"])))
    assert set(verdicts(h, out)) == {"p-copy"}


def test_media_uri_registration_is_fingerprinted_and_bad_ones_dead_letter(tmp_path, media):
    ups = [upload("p-copy", media["copy"], T0)]
    side = side_for(tmp_path, ups, [published("p-copy", T0 + HOUR)])
    h = Harness(copyright_rescan.SPEC, tmp_path, side=side)
    by_uri = dict(registration("w-uri"), media_uri=Path(media["work"]).as_uri())
    assert verdicts(h, h.feed(("copyright-references", by_uri)))["p-copy"]["action"] == "BLOCK"
    out = h.feed(("copyright-references", registration("w-empty")))
    assert len(out.dead_letters) == 1 and not out.emits
    assert "neither fingerprints nor a media_uri" in h.decode(out.dead_letters[0])["reason"]


def test_fingerprint_side_state_keeps_the_first_copy_and_skips_corrupt_events(tmp_path, media):
    [event] = fingerprint_events(tmp_path, [upload("p", media["copy"], T0)])
    prints = copyright_rescan.open_fingerprints(None, None)
    later = dict(event, event_id=eid(), event_time=event["event_time"].replace(year=2030))
    prints.apply(later)
    prints.apply(event)
    prints.apply(later)
    assert prints.get("p").event_id == event["event_id"] and len(prints) == 1
    prints.apply(dict(event, post_id="bad", fingerprints=event["fingerprints"][:3]))
    assert (prints.applied, prints.skipped, "bad" in prints) == (3, 1, False)


@needs_video
def test_a_published_video_excerpt_of_a_longer_work_is_blocked(tmp_path):
    """The post (the HD clip) is an excerpt of the work (its longer cut): matched in the gate's
    direction, the share of the post's frames that match decides."""
    ups = [upload("p-vid", VIDEOS / "pattern-hd-no-bar.mp4", T0, kind="VIDEO")]
    side = side_for(tmp_path, ups, [published("p-vid", T0 + HOUR, kind="VIDEO")])
    assert side["fingerprints"].get("p-vid").modality == "VIDEO"
    h = Harness(copyright_rescan.SPEC, tmp_path, side=side)
    out = h.feed(("copyright-references",
                  registration("w-vid", VIDEOS / "pattern-longer-no-bar.mp4")))
    v = verdicts(h, out)["p-vid"]
    assert v["action"] == "BLOCK" and v["modality"] == "VIDEO"
    assert v["matches"][0]["reference_id"] == "w-vid"
