"""The demo's real input as event records: Stack Exchange dump, scikit-image photos, media files.

The real dump tests read the gzipped quantumcomputing dump the repository ships
(``streams/demo/data/``, :data:`SAMPLE_DUMP`), so they always run; the check that it matches the
uncompressed dump, and the tests on the shared media, read ``../shared/data/`` (relative to the
repository root) and skip with the reason when it is absent. A small hand-written dump covers each
mapping rule everywhere.
"""
from __future__ import annotations

import gzip
import html
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from streams.demo.sources import media
from streams.demo.sources.media import (
    DEMO_CREATORS,
    NOT_PHOTOS,
    MediaToolMissing,
    demo_creator_signups,
    hashtags_from_caption,
    media_dir_uploads,
    scikit_image_uploads,
)
from streams.demo.sources.stackexchange import (
    ANONYMOUS_USER_ID,
    REQUIRED_FILES,
    SAMPLE_DUMP,
    DumpEvents,
    html_to_text,
    iter_events_in_time_order,
    load_dump,
    parse_location,
    parse_tags,
    parse_time_ms,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DUMP_DIR = SHARED_DATA / "stackexchange-quantumcomputing"
MEDIA_DIR = SHARED_DATA / "media"
DAY_MS = 86_400_000

FIELDS = {
    "user_signup": {"user_id", "handle", "declared_interests", "locale", "country", "about"},
    "upload": {"post_id", "creator_id", "kind", "content_type", "media_uri", "caption", "title",
               "hashtags", "duration_ms", "size_bytes", "width", "height", "parent_post_id"},
    "interaction": {"user_id", "post_id", "type", "dwell_ms", "comment_id", "comment_text",
                    "report_reason", "surface"},
    "follow": {"follower_id", "followee_id", "action"},
}
COMMON = {"event_id", "event_time", "producer"}


# --- shared checks ----------------------------------------------------------------------------


def all_records(dump: DumpEvents) -> list[tuple[str, dict]]:
    return ([("user_signup", r) for r in dump.signups] + [("upload", r) for r in dump.uploads]
            + [("interaction", r) for r in dump.interactions]
            + [("follow", r) for r in dump.follows])


def assert_referential_time_order(dump: DumpEvents) -> None:
    """Merged order is by event_time, and each record names only users and posts seen before."""
    users, posts, last_time, count = set(), set(), None, 0
    for event_type, record in iter_events_in_time_order(dump):
        count += 1
        assert last_time is None or record["event_time"] >= last_time
        last_time = record["event_time"]
        if event_type == "user_signup":
            users.add(record["user_id"])
        elif event_type == "upload":
            assert record["creator_id"] in users
            assert record["parent_post_id"] is None or record["parent_post_id"] in posts
            posts.add(record["post_id"])
        elif event_type == "interaction":
            assert record["post_id"] in posts
            assert record["user_id"] in users or record["user_id"] == ANONYMOUS_USER_ID
        else:
            assert record["follower_id"] in users and record["followee_id"] in users
    assert count == sum(map(len, (dump.signups, dump.uploads, dump.interactions, dump.follows)))


def assert_follows_well_formed(dump: DumpEvents) -> None:
    """No self-follows, each pair once, and each follow caused by an answer or a comment of the
    follower on a post of the followee at exactly that time."""
    pairs = [(f["follower_id"], f["followee_id"]) for f in dump.follows]
    assert len(pairs) == len(set(pairs))
    assert all(a != b for a, b in pairs)
    owner = {u["post_id"]: u["creator_id"] for u in dump.uploads}
    causes = {(u["creator_id"], owner[u["parent_post_id"]], u["event_time"])
              for u in dump.uploads if u["parent_post_id"]}
    causes |= {(i["user_id"], owner[i["post_id"]], i["event_time"])
               for i in dump.interactions if i["type"] == "COMMENT"}
    for follow in dump.follows:
        assert follow["action"] == "FOLLOW"
        assert (follow["follower_id"], follow["followee_id"], follow["event_time"]) in causes
        earlier = [t for a, b, t in causes
                   if (a, b) == (follow["follower_id"], follow["followee_id"])]
        assert follow["event_time"] == min(earlier)


def assert_shapes(event_type: str, records: list[dict]) -> None:
    for record in records:
        assert set(record) == COMMON | FIELDS[event_type], record
        assert isinstance(record["event_time"], int)


# --- a small hand-written dump: every rule, runs everywhere -------------------------------------


def _xml(root: str, rows: list[dict[str, str]]) -> str:
    body = "".join(
        "  <row " + " ".join(f'{k}="{html.escape(v)}"' for k, v in row.items()) + " />\n"
        for row in rows
    )
    return f'\ufeff<?xml version="1.0" encoding="utf-8"?>\n<{root}>\n{body}</{root}>\n'


@pytest.fixture
def tiny_dump(tmp_path: Path) -> Path:
    t = "2018-03-03T09:00:00.000"
    files = {
        "Users.xml": ("users", [
            {"Id": "1", "CreationDate": "2018-03-01T10:00:00.000", "DisplayName": "alice",
             "Location": "Seattle, WA", "AboutMe": "<p>Hi &amp; <b>welcome</b></p>"},
            {"Id": "2", "CreationDate": "2018-03-02T00:00:00.000", "DisplayName": "bob",
             "Location": "Berlin, Germany"},
            {"Id": "3", "CreationDate": "2018-03-05T12:00:00.000", "DisplayName": "carol",
             "Location": "Earth"},
        ]),
        "Posts.xml": ("posts", [
            {"Id": "10", "PostTypeId": "1", "CreationDate": t, "OwnerUserId": "1",
             "Title": "What is a qubit?", "Tags": "<qubit><entanglement>",
             "Body": "<p>What is a <b>qubit</b> &amp; why?</p>\n<ul><li>one</li></ul>"},
            {"Id": "11", "PostTypeId": "2", "ParentId": "10", "CreationDate": t,
             "OwnerUserId": "2", "Body": "<p>A two-level system.</p>"},
            {"Id": "12", "PostTypeId": "2", "ParentId": "10", "OwnerUserId": "1",
             "CreationDate": "2018-03-03T12:00:00.000", "Body": "<p>Self-answer</p>"},
            {"Id": "13", "PostTypeId": "1", "CreationDate": t, "OwnerDisplayName": "user99",
             "Title": "Orphan", "Tags": "<qubit>", "Body": "<p>Deleted owner</p>"},
            {"Id": "14", "PostTypeId": "2", "ParentId": "13", "OwnerUserId": "2",
             "CreationDate": "2018-03-03T10:00:00.000", "Body": "<p>To an orphan</p>"},
            {"Id": "15", "PostTypeId": "4", "OwnerUserId": "-1", "CreationDate": t,
             "Body": "tag wiki excerpt"},
            {"Id": "16", "PostTypeId": "1", "CreationDate": "2018-03-06T08:00:00.000",
             "OwnerUserId": "2", "Title": "Gates?", "Tags": "|qubit|gates|", "Body": "<p>?</p>"},
        ]),
        "Comments.xml": ("comments", [
            {"Id": "100", "PostId": "10", "UserId": "3", "Text": "before signup",
             "CreationDate": "2018-03-04T08:00:00.000"},
            {"Id": "101", "PostId": "10", "UserId": "3", "Text": "again",
             "CreationDate": "2018-03-07T08:00:00.000"},
            {"Id": "102", "PostId": "11", "UserId": "1", "Text": "thanks &lt;3",
             "CreationDate": "2018-03-03T13:00:00.000"},
            {"Id": "103", "PostId": "13", "UserId": "2", "Text": "on the orphan",
             "CreationDate": "2018-03-03T13:00:00.000"},
            {"Id": "104", "PostId": "10", "UserDisplayName": "gone", "Text": "no user",
             "CreationDate": "2018-03-03T13:00:00.000"},
            {"Id": "105", "PostId": "10", "UserId": "1", "Text": "too early",
             "CreationDate": "2018-03-03T08:00:00.000"},
        ]),
        "Votes.xml": ("votes", [
            {"Id": vote_id, "PostId": post, "VoteTypeId": vote_type, **user,
             "CreationDate": f"{day}T00:00:00.000"}
            for vote_id, post, vote_type, user, day in [
                ("1000", "10", "2", {}, "2018-03-03"),  # upvote: anonymous
                ("1001", "10", "5", {"UserId": "2"}, "2018-03-04"),  # bob's favourite
                ("1002", "11", "1", {}, "2018-03-03"),  # alice accepts bob's answer
                ("1003", "12", "1", {}, "2018-03-03"),  # alice accepts her own answer
                ("1004", "10", "3", {}, "2018-03-03"),  # downvote
                ("1005", "999", "2", {}, "2018-03-03"),  # on a deleted post
                ("1006", "10", "5", {"UserId": "1"}, "2018-03-05"),  # favourite of her own
            ]
        ]),
    }
    for name, (root, rows) in files.items():
        (tmp_path / name).write_text(_xml(root, rows), encoding="utf-8")
    return tmp_path


def test_tiny_dump_uploads_skip_ownerless_posts_and_what_hangs_off_them(tiny_dump):
    dump = load_dump(tiny_dump)
    assert [u["post_id"] for u in dump.uploads] == ["se-p10", "se-p11", "se-p12", "se-p16"]
    assert dump.skipped["post_without_owner"] == 1
    assert dump.skipped["answer_to_missing_or_skipped_question"] == 1
    assert dump.skipped["post_type_4"] == 1
    assert dump.skipped["comment_on_missing_or_skipped_post"] == 1
    assert dump.skipped["comment_without_user"] == 1
    by_id = {u["post_id"]: u for u in dump.uploads}
    question = by_id["se-p10"]
    assert question["caption"] == "What is a qubit & why?\n\n- one"
    assert question["title"] == "What is a qubit?"
    assert question["hashtags"] == ["qubit", "entanglement"]
    assert by_id["se-p16"]["hashtags"] == ["qubit", "gates"]
    assert by_id["se-p11"]["hashtags"] == [] and by_id["se-p11"]["title"] is None
    assert by_id["se-p11"]["parent_post_id"] == "se-p10"
    assert (question["kind"], question["content_type"], question["creator_id"]) == (
        "TEXT", "FOREVER", "se-u1")
    assert question["event_time"] == parse_time_ms("2018-03-03T09:00:00.000")
    assert_shapes("upload", dump.uploads)


def test_tiny_dump_clamps_children_after_their_post_and_signups_before_activity(tiny_dump):
    dump = load_dump(tiny_dump)
    q_time = parse_time_ms("2018-03-03T09:00:00.000")
    by_id = {u["post_id"]: u for u in dump.uploads}
    assert by_id["se-p11"]["event_time"] == q_time + 1  # posted in the same ms as its question
    comments = {i["comment_id"]: i for i in dump.interactions if i["type"] == "COMMENT"}
    assert comments["se-c105"]["event_time"] == q_time + 1  # dated before its post
    assert dump.adjusted == {"answer_not_after_question": 1, "comment_not_after_post": 1,
                             "signup_after_first_activity": 1}
    carol = next(s for s in dump.signups if s["user_id"] == "se-u3")
    assert carol["event_time"] == comments["se-c100"]["event_time"]
    assert_referential_time_order(dump)


def test_tiny_dump_votes_map_to_likes_within_their_day(tiny_dump):
    dump = load_dump(tiny_dump)
    likes = {i["event_id"]: i for i in dump.interactions if i["type"] == "LIKE"}
    got = sorted((i["user_id"], i["post_id"]) for i in likes.values())
    assert got == [("se-u-anonymous", "se-p10"), ("se-u1", "se-p11"), ("se-u2", "se-p10")]
    q_time = parse_time_ms("2018-03-03T09:00:00.000")
    for like in likes.values():
        assert like["event_time"] > q_time
    day_of_1001 = parse_time_ms("2018-03-04T00:00:00.000")
    bob_like = next(i for i in likes.values() if i["user_id"] == "se-u2")
    assert day_of_1001 <= bob_like["event_time"] < day_of_1001 + DAY_MS
    assert dump.skipped["vote_accepted_on_own_post"] == 1
    assert dump.skipped["vote_favorite_on_own_post"] == 1
    assert dump.skipped["vote_downvote"] == 1
    assert dump.skipped["vote_upvote_on_missing_or_skipped_post"] == 1

    without = load_dump(tiny_dump, include_anonymous_votes=False)
    assert all(i["user_id"] != ANONYMOUS_USER_ID for i in without.interactions)
    assert without.skipped["vote_upvote"] == 2


def test_tiny_dump_follows_first_answer_or_comment_once_never_self(tiny_dump):
    dump = load_dump(tiny_dump)
    got = [(f["follower_id"], f["followee_id"], f["event_time"]) for f in dump.follows]
    q_time = parse_time_ms("2018-03-03T09:00:00.000")
    assert got == [
        ("se-u2", "se-u1", q_time + 1),  # bob answers alice's question
        ("se-u1", "se-u2", parse_time_ms("2018-03-03T13:00:00.000")),  # alice comments on bob
        ("se-u3", "se-u1", parse_time_ms("2018-03-04T08:00:00.000")),  # carol's first comment
    ]
    assert_follows_well_formed(dump)
    assert_shapes("follow", dump.follows)


def test_tiny_dump_signups(tiny_dump):
    dump = load_dump(tiny_dump)
    by_user = {s["user_id"]: s for s in dump.signups}
    alice, bob, carol = by_user["se-u1"], by_user["se-u2"], by_user["se-u3"]
    assert (alice["handle"], alice["country"], alice["locale"]) == ("alice", "US", "en-US")
    assert alice["about"] == "Hi & welcome"
    assert alice["declared_interests"] == ["entanglement", "qubit"]  # her question + self-answer
    assert bob["declared_interests"] == ["qubit", "entanglement", "gates"]
    assert (bob["country"], bob["about"]) == ("DE", None)
    assert (carol["country"], carol["locale"], carol["declared_interests"]) == (None, None, [])
    assert_shapes("user_signup", dump.signups)


def test_not_a_dump_raises_value_error_naming_the_path(tmp_path):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        load_dump(tmp_path)
    file = tmp_path / "Posts.xml"
    file.write_text("<posts>")
    with pytest.raises(ValueError, match="not a directory"):
        load_dump(file)
    for name in ("Users.xml", "Comments.xml", "Votes.xml"):
        (tmp_path / name).write_text(f"<{name[:-4].lower()}></{name[:-4].lower()}>")
    with pytest.raises(ValueError, match=re.escape(str(file))):  # malformed Posts.xml
        load_dump(tmp_path)


def test_gzipped_dump_files_read_as_the_plain_ones(tiny_dump, tmp_path_factory):
    plain = load_dump(tiny_dump)
    gzipped = tmp_path_factory.mktemp("gzipped")
    for i, name in enumerate(REQUIRED_FILES):
        data = (tiny_dump / name).read_bytes()
        if i % 2:  # a mix of plain and gzipped files is a dump too
            (gzipped / name).write_bytes(data)
        else:
            (gzipped / f"{name}.gz").write_bytes(gzip.compress(data))
    assert all_records(load_dump(gzipped)) == all_records(plain)
    (gzipped / "Posts.xml.gz").write_bytes(b"not gzip")  # Posts.xml (plain) still wins
    assert all_records(load_dump(gzipped)) == all_records(plain)


def test_broken_or_missing_gzipped_file_raises_value_error_naming_it(tiny_dump):
    posts = tiny_dump / "Posts.xml"
    compressed = gzip.compress(posts.read_bytes())
    posts.unlink()
    broken = tiny_dump / "Posts.xml.gz"
    for data in (b"not gzip at all", compressed[: len(compressed) // 2]):  # not gzip; truncated
        broken.write_bytes(data)
        with pytest.raises(ValueError, match=re.escape(str(broken))):
            load_dump(tiny_dump)
    broken.unlink()
    with pytest.raises(ValueError, match="missing Posts.xml"):
        load_dump(tiny_dump)


# --- parsers ------------------------------------------------------------------------------------

TAG = st.from_regex(r"[a-z0-9][a-z0-9#+.\-]{0,24}", fullmatch=True)


@given(st.lists(TAG, max_size=6))
def test_parse_tags_reads_both_dump_formats(tags):
    assert parse_tags("".join(f"<{t}>" for t in tags)) == tags
    assert parse_tags("|" + "|".join(tags) + "|" if tags else "") == tags


PLAIN = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=80)


@given(PLAIN)
def test_html_to_text_recovers_escaped_text(text):
    assert html_to_text(f"<p>{html.escape(text)}</p>") == " ".join(text.split())


def test_parse_location_to_iso_country():
    cases = {"Seattle, WA": "US", "Toronto, ON, Canada": "CA", "Montreal, QC": "CA",
             "London, United Kingdom": "GB", "UK": "GB", "U.S.": "US", "Bengaluru, Karnataka, "
             "India": "IN", "Madrid, España": "ES", "London": None, "Earth": None, "": None,
             None: None}
    assert {loc: parse_location(loc) for loc in cases} == cases


# --- the real dump ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_dump() -> DumpEvents:
    return load_dump(SAMPLE_DUMP)


def _sample_rows(name: str) -> list[dict[str, str]]:
    """Every row's attributes of one of the shipped sample's files, read with ElementTree."""
    with gzip.open(SAMPLE_DUMP / f"{name}.gz", "rb") as file:
        return [el.attrib.copy() for _, el in ET.iterparse(file) if el.tag == "row"]


def _count_rows(name: str, keep=lambda row: True) -> int:
    return sum(1 for row in _sample_rows(name) if keep(row))


def test_shipped_sample_is_the_gzipped_dump_with_its_attribution():
    assert sorted(p.name for p in SAMPLE_DUMP.iterdir()) == sorted(
        [f"{name}.gz" for name in REQUIRED_FILES] + ["ATTRIBUTION.md"])
    attribution = (SAMPLE_DUMP / "ATTRIBUTION.md").read_text()
    assert "quantumcomputing.stackexchange.com" in attribution and "CC BY-SA 3.0" in attribution
    sizes = sum(p.stat().st_size for p in SAMPLE_DUMP.iterdir())
    assert 1_000_000 < sizes < 3_000_000
    # the numbers ../shared/data/README.md gives for the whole dump
    assert {name: _count_rows(name) for name in REQUIRED_FILES} == {
        "Users.xml": 3461, "Posts.xml": 1986, "Comments.xml": 3413, "Votes.xml": 12560}


def test_shipped_sample_reads_as_the_uncompressed_dump(real_dump):
    if not all((DUMP_DIR / name).is_file() for name in REQUIRED_FILES):
        pytest.skip(f"uncompressed Stack Exchange dump absent: {DUMP_DIR} "
                    "(see ../shared/data/README.md)")
    for name in REQUIRED_FILES:
        assert gzip.decompress((SAMPLE_DUMP / f"{name}.gz").read_bytes()) == (
            DUMP_DIR / name).read_bytes(), f"{name}.gz is not {DUMP_DIR / name} gzipped"
    plain = load_dump(DUMP_DIR)
    counts = {kind: len(records) for kind, records in (
        ("signups", plain.signups), ("uploads", plain.uploads),
        ("interactions", plain.interactions), ("follows", plain.follows))}
    assert counts == {"signups": len(real_dump.signups), "uploads": len(real_dump.uploads),
                      "interactions": len(real_dump.interactions),
                      "follows": len(real_dump.follows)}
    assert (plain.skipped, plain.adjusted) == (real_dump.skipped, real_dump.adjusted)
    assert all_records(plain) == all_records(real_dump)


def test_real_dump_counts_match_the_files(real_dump):
    # what the demo publishes from it (tests/integration/test_demo.py counts the same on Kafka)
    assert (len(real_dump.signups), len(real_dump.uploads), len(real_dump.interactions),
            len(real_dump.follows)) == (3461, 1667, 14378, 1771)
    posts = _sample_rows("Posts.xml")
    ownerless_questions = {p["Id"] for p in posts
                           if p["PostTypeId"] == "1" and not p.get("OwnerUserId")}
    expected_uploads = sum(
        1 for p in posts
        if p["PostTypeId"] in ("1", "2") and p.get("OwnerUserId")
        and p.get("ParentId") not in ownerless_questions
    )
    assert len(real_dump.uploads) == expected_uploads
    assert len(real_dump.signups) == _count_rows("Users.xml")
    skipped = real_dump.skipped
    comments = [i for i in real_dump.interactions if i["type"] == "COMMENT"]
    assert len(comments) + sum(n for k, n in skipped.items() if k.startswith("comment_")) == (
        _count_rows("Comments.xml"))
    likes = [i for i in real_dump.interactions if i["type"] == "LIKE"]
    assert len(likes) + sum(n for k, n in skipped.items() if k.startswith("vote_")) == (
        _count_rows("Votes.xml"))
    assert len(real_dump.uploads) + sum(
        n for k, n in skipped.items() if k.startswith(("post_", "answer_"))) == len(posts)
    anonymous = sum(1 for i in likes if i["user_id"] == ANONYMOUS_USER_ID)
    assert 0 < anonymous <= _count_rows("Votes.xml", lambda row: row["VoteTypeId"] == "2")


def test_real_dump_is_deterministic(real_dump):
    again = load_dump(SAMPLE_DUMP)
    assert all_records(again) == all_records(real_dump)
    ids = [record["event_id"] for _, record in all_records(real_dump)]
    assert len(ids) == len(set(ids))


def test_real_dump_time_order_and_references(real_dump):
    for records in (real_dump.signups, real_dump.uploads, real_dump.interactions,
                    real_dump.follows):
        times = [r["event_time"] for r in records]
        assert times == sorted(times)
    assert_referential_time_order(real_dump)


def test_real_dump_follows(real_dump):
    assert len(real_dump.follows) > 1000
    assert_follows_well_formed(real_dump)


def test_real_dump_text_is_plain_and_hashtags_parsed(real_dump):
    tag = re.compile(r"</?(p|a|b|i|code|pre|strong|em|ul|ol|li|br|div|blockquote|img|h\d|hr|"
                     r"sup|sub)(\s[^<>]*)?/?>", re.IGNORECASE)  # not math such as <i,j>
    entity = re.compile(r"&(lt|gt|amp|quot|#x?[0-9a-f]+);", re.IGNORECASE)
    for upload in real_dump.uploads:
        assert not tag.search(upload["caption"]), upload["post_id"]
        assert not entity.search(upload["caption"]), upload["post_id"]
    first = next(u for u in real_dump.uploads if u["post_id"] == "se-p1")
    assert first["caption"].startswith("I know that a Turing machine1 can theoretically simulate")
    assert first["hashtags"] == ["simulation", "quantum-turing-machine"]
    assert first["title"] == "Can a Turing machine simulate a quantum computer?"
    questions = [u for u in real_dump.uploads if u["parent_post_id"] is None]
    assert all(q["hashtags"] for q in questions)
    assert not any(set("<>|") & set("".join(q["hashtags"])) for q in questions)
    assert_shapes("upload", real_dump.uploads)
    assert_shapes("interaction", real_dump.interactions)


# --- media ----------------------------------------------------------------------------------


def test_scikit_image_photos_exist_and_have_their_file_sizes():
    uploads = scikit_image_uploads(1_700_000_000_000)
    assert len(uploads) >= 5
    post_ids = {u["post_id"] for u in uploads}
    assert {"skimage-astronaut", "skimage-chelsea", "skimage-coffee"} <= post_ids
    assert not {f"skimage-{stem}" for stem in NOT_PHOTOS} & post_ids  # horse is a drawing
    for upload in uploads:
        path = Path(upload["media_uri"].removeprefix("file://"))
        assert upload["media_uri"].startswith("file:///") and path.is_file()
        with Image.open(path) as image:
            assert (upload["width"], upload["height"]) == image.size
        assert upload["size_bytes"] == path.stat().st_size > 0
        assert (upload["kind"], upload["duration_ms"]) == ("IMAGE", None)
        assert upload["creator_id"] in DEMO_CREATORS
        assert upload["hashtags"] == hashtags_from_caption(upload["caption"])
    astronaut = next(u for u in uploads if u["post_id"] == "skimage-astronaut")
    assert "Eileen Collins" in astronaut["caption"] and "astronaut" in astronaut["hashtags"]
    assert_shapes("upload", uploads)


def test_media_ids_do_not_depend_on_the_clock():
    first, later = scikit_image_uploads(0), scikit_image_uploads(10**12)
    assert [u["event_id"] for u in first] == [u["event_id"] for u in later]
    assert [u["event_time"] for u in later] == [10**12 + 1000 * i for i in range(len(later))]
    signups = demo_creator_signups(0)
    assert {s["user_id"] for s in signups} == set(DEMO_CREATORS)
    assert max(s["event_time"] for s in signups) < min(u["event_time"] for u in first)
    assert_shapes("user_signup", signups)


def test_media_dir_ids_follow_relative_paths_and_skips_are_counted(tmp_path):
    photo = media.skimage_data_dir() / "chelsea.png"
    for root in ("one", "two"):
        (tmp_path / root / "img").mkdir(parents=True)
        shutil.copy(photo, tmp_path / root / "img" / "cat.png")
        (tmp_path / root / "voice.wav").write_bytes(b"RIFF")
        (tmp_path / root / "notes.txt").write_text("x")
        (tmp_path / root / "broken.png").write_bytes(b"not a png")
    one, skipped = media_dir_uploads(tmp_path / "one", 5)
    two, _ = media_dir_uploads(tmp_path / "two", 5)
    assert [u["event_id"] for u in one] == [u["event_id"] for u in two]
    assert [u["post_id"] for u in one] == [u["post_id"] for u in two]
    assert skipped == {"audio": 1, "not_media": 1, "unreadable_image": 1}
    (cat,) = one
    assert (cat["kind"], cat["width"], cat["height"]) == ("IMAGE", 451, 300)
    assert cat["media_uri"] == (tmp_path / "one" / "img" / "cat.png").resolve().as_uri()
    with pytest.raises(ValueError, match="not a directory"):
        media_dir_uploads(tmp_path / "missing", 0)


def test_media_dir_without_ffprobe_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    import models.fingerprints.video as video

    monkeypatch.setattr(video.shutil, "which", lambda name: None)
    with pytest.raises(MediaToolMissing, match="apt-get install ffmpeg"):
        media_dir_uploads(tmp_path, 0)


needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None,
                                   reason="ffprobe absent: apt-get install ffmpeg")


@needs_ffprobe
def test_media_dir_counts_an_unreadable_video(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    assert media_dir_uploads(tmp_path, 0) == ([], {"unreadable_video": 1})


@needs_ffprobe
def test_shared_media_dir_videos(tmp_path):
    if not (MEDIA_DIR / "video").is_dir():
        pytest.skip(f"shared media absent: {MEDIA_DIR} (see ../shared/data/README.md)")
    uploads, skipped = media_dir_uploads(MEDIA_DIR, 0)
    videos = {Path(u["media_uri"]).name: u for u in uploads if u["kind"] == "VIDEO"}
    assert set(videos) >= {"bigbuckbunny.mp4", "carphone_pristine.mp4", "cityCC0.mpg"}
    bunny = videos["bigbuckbunny.mp4"]
    assert (bunny["width"], bunny["height"]) == (1280, 720)
    assert 5_000 <= bunny["duration_ms"] <= 5_600  # 5.3 s per the data README
    carphone = videos["carphone_pristine.mp4"]
    assert (carphone["width"], carphone["height"]) == (176, 144)
    audio = sum(1 for p in (MEDIA_DIR / "audio").rglob("*.wav"))
    assert skipped["audio"] == audio > 0
    assert_shapes("upload", uploads)


# --- the Avro contract, once the schemas exist -------------------------------------------------


def _latest_schema(name: str) -> Path | None:
    folder = REPO_ROOT / "schemas" / "avro"
    plain = folder / f"{name}.avsc"
    versions = sorted(folder.glob(f"{name}.v*.avsc"),
                      key=lambda p: int(re.sub(r"\D", "", p.name.split(".")[1]) or 0))
    return versions[-1] if versions else (plain if plain.is_file() else None)


@pytest.mark.parametrize("event_type", sorted(FIELDS))
def test_records_validate_against_the_avro_schema(event_type, tiny_dump):
    schema_path = _latest_schema(event_type)
    if schema_path is None:
        pytest.skip(f"no schemas/avro/{event_type}.avsc yet")
    from fastavro.schema import load_schema
    from fastavro.validation import validate

    schema = load_schema(str(schema_path))
    dump = load_dump(tiny_dump)
    records = {
        "user_signup": dump.signups + demo_creator_signups(0),
        "upload": dump.uploads + scikit_image_uploads(0)[:2],
        "interaction": dump.interactions,
        "follow": dump.follows,
    }[event_type]
    for record in records:
        assert validate(record, schema, raise_errors=True)
