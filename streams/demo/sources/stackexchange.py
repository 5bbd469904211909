"""A Stack Exchange data dump as Pulse event records: the demo's real users, posts and reactions.

The dump format is Stack Exchange's public data dump (one XML file per table, one ``<row>``
element per record, attributes as columns; https://meta.stackexchange.com/q/2677); each file may
also be gzip-compressed (``Posts.xml.gz``), as in the sample the repository ships
(:data:`SAMPLE_DUMP`: the quantumcomputing.stackexchange.com dump, CC BY-SA 3.0). Files are read
with a streaming parser (:func:`xml.etree.ElementTree.iterparse`, clearing parsed rows), so the
XML tree is never held whole: memory is the records produced (about 75 MB peak for the 8 MB
quantumcomputing dump, loaded in about 0.5 s).

Mapping:

- ``Users.xml`` row -> ``user_signup``: ``user_id`` ``"se-u<Id>"`` (the Community bot, Id -1,
  becomes ``"se-u-1"``); ``handle`` = DisplayName; ``about`` = AboutMe as plain text;
  ``country`` = ISO 3166-1 alpha-2 code parsed from the free-text Location by
  :func:`~streams.demo.sources.locations.parse_location` (its last comma-separated part: a country
  name or common alias, a US state, a Canadian province; anything else gives None);
  ``locale`` = ``"en-<country>"`` when the country is known (the site is English-only, so the
  language is English and the region is the country), else None.
  ``declared_interests``: the dump has no declared interests, so as a stand-in they are the five
  tags the user posts most *over the whole dump* (questions count their own tags, answers the tags
  of the question they answer; ties by tag name). This looks into the user's future: never use it
  as ground truth when evaluating cold start.
  ``event_time`` = CreationDate, moved earlier to the user's first post or comment in the rare case
  that the dump dates that before the account (counted in ``adjusted``).
- ``Posts.xml`` question (PostTypeId 1) or answer (2) -> ``upload`` kind TEXT, content_type
  FOREVER: ``post_id`` ``"se-p<Id>"``, ``creator_id`` from OwnerUserId, ``caption`` = Body as
  plain text, ``title`` = Title (None for answers), ``hashtags`` = Tags (``<a><b>`` or ``|a|b|``)
  for questions and ``[]`` for answers (their authors did not tag them; the topic is reachable
  through ``parent_post_id``), ``parent_post_id`` = ``"se-p<ParentId>"`` for answers.
  Other post types (tag wikis and their excerpts) are skipped. Posts without an owner (deleted
  accounts: only OwnerDisplayName is left) are skipped rather than attributed to a made-up user,
  and so are the answers, comments and votes that hang off a skipped post; all counted in
  ``skipped``. An answer dated at or before its question (self-answered questions are posted in
  the same millisecond) is moved to 1 ms after it.
- ``Comments.xml`` row -> ``interaction`` COMMENT by ``"se-u<UserId>"`` on the post, ``comment_id``
  ``"se-c<Id>"``, ``comment_text`` = Text as written (comments are Markdown source, not HTML).
  A comment dated at or before its post is moved to 1 ms after it.
- ``Votes.xml`` (dates are day-level, always midnight UTC): each vote is placed at a deterministic
  instant within its day, ``lo + h mod (day_end - lo)`` where ``h`` is a hash (BLAKE2b) of the
  vote id and ``lo`` is the latest of midnight, 1 ms after the post, and the voter's signup
  (a vote whose day ends before ``lo`` is placed at ``lo`` and counted in ``adjusted``).
  VoteTypeId 5 (favourite; has UserId) -> LIKE by that user. VoteTypeId 1 (accepted answer) ->
  LIKE on the answer by the question's owner (who is the only one who can accept).
  VoteTypeId 2 (upvote) carries no UserId, so it cannot be attributed: with
  ``include_anonymous_votes`` (the default) it becomes a LIKE by the one shared id
  :data:`ANONYMOUS_USER_ID`, which has no signup (per-post like counts are right; unique-liker
  counts are not); without it, upvotes are skipped. A LIKE on one's own post is skipped.
  Every other vote type (downvotes: Pulse has no negative reaction that fits; moderation, bounty,
  edit-approval and close votes) is skipped and counted by type.
- Follows are derived: user A FOLLOWs user B the first time A answers one of B's questions or
  comments on one of B's posts, at that moment; no self-follows; each pair once.
- Not turned into events: ViewCount (there are no per-view records), Badges, PostLinks, Tags.
- ``surface`` is None: the dump does not say where (feed, search, profile...) a user met a post.

Ids: ``event_id`` = :func:`streams.demo.sources.stable_event_id` of ``"stackexchange"`` and
``"<type>:<natural key>"`` (``user_signup:se-u7``, ``upload:se-p1``, ``interaction:se-c13``,
``interaction:se-v<VoteId>``, ``follow:se-u7>se-u26``), so re-loading gives the same ids.
"""
from __future__ import annotations

import gzip
import hashlib
import heapq
import zlib
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

from streams.demo.sources import EVENT_TYPES, stable_event_id
from streams.demo.sources.locations import parse_location

PRODUCER = "demo.stackexchange"
SOURCE = "stackexchange"
ANONYMOUS_USER_ID = "se-u-anonymous"
"""The one user id every unattributable upvote is given (no signup exists for it)."""
REQUIRED_FILES = ("Users.xml", "Posts.xml", "Comments.xml", "Votes.xml")
"""The dump files :func:`load_dump` reads; each may be present as ``NAME.xml`` or ``NAME.xml.gz``."""
SAMPLE_DUMP = Path(__file__).resolve().parents[1] / "data" / "stackexchange-quantumcomputing"
"""The dump shipped in the repository (``streams/demo/data/``, see its ``ATTRIBUTION.md``): the
quantumcomputing.stackexchange.com data dump, March to September 2018, the four
:data:`REQUIRED_FILES` unmodified but gzipped (about 2 MB). ``pulse demo`` reads it by default."""

_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1)
_VOTE_TYPES = {
    "1": "accepted", "2": "upvote", "3": "downvote", "4": "offensive", "5": "favorite",
    "6": "close", "7": "reopen", "8": "bounty_start", "9": "bounty_close", "10": "deletion",
    "11": "undeletion", "12": "spam", "15": "moderator_review", "16": "approve_edit_suggestion",
}


@dataclass
class DumpEvents:
    """Everything one dump yields, each list sorted by ``event_time`` (UTC epoch ms).

    ``skipped`` counts the source rows that produced no record, by reason; ``adjusted`` counts
    records whose ``event_time`` was moved to keep referential order (a post before its answers,
    comments and votes; a signup before the user's first activity).
    """

    signups: list[dict] = field(default_factory=list)
    uploads: list[dict] = field(default_factory=list)
    interactions: list[dict] = field(default_factory=list)
    follows: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    adjusted: dict[str, int] = field(default_factory=dict)


# --- parsing helpers ------------------------------------------------------------------------


def parse_time_ms(value: str) -> int:
    """Stack Exchange ``CreationDate`` (ISO 8601, UTC, no zone, ms precision) -> UTC epoch ms."""
    return (datetime.fromisoformat(value) - _EPOCH) // timedelta(milliseconds=1)


def parse_tags(value: str | None) -> list[str]:
    """Tags column -> tag names, in order: ``"<a><b>"`` (older dumps) or ``"|a|b|"`` (newer)."""
    if not value:
        return []
    if value.startswith("|"):
        return [tag for tag in value.split("|") if tag]
    return re.findall(r"<([^<>]+)>", value)


_BLOCK_TAGS = frozenset("p div br hr ul ol pre blockquote h1 h2 h3 h4 h5 h6 table tr".split())


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # also unescapes &amp; &lt; &#x27; ...
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")

    def handle_endtag(self, tag):
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):
        self.parts.append(data)


def html_to_text(html: str | None) -> str:
    """HTML (a post Body, a user's AboutMe) -> plain text.

    Tags are dropped (their text kept), character references unescaped, block elements become
    line breaks, runs of spaces collapse to one and runs of blank lines to one blank line.
    """
    if not html:
        return ""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _rows(path: Path) -> Iterator[dict[str, str]]:
    """Attributes of each ``<row>`` of one dump file (``.xml``, or ``.xml.gz`` decompressed as it
    is read), streamed; parsed rows are freed."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as file:
            context = ET.iterparse(file, events=("start", "end"))
            _, root = next(context)
            for event, element in context:
                if event == "end" and element.tag == "row":
                    yield dict(element.attrib)
                    root.clear()
    except (ET.ParseError, gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a well-formed Stack Exchange dump file: {error}") from None


def dump_file(path: Path, name: str) -> Path | None:
    """The file of dump directory ``path`` holding table ``name`` (``"Posts.xml"``):
    ``path/Posts.xml`` if it exists, else ``path/Posts.xml.gz``, else None."""
    for candidate in (path / name, path / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _check_dump(path: Path) -> dict[str, Path]:
    """``{name: file}`` for each of :data:`REQUIRED_FILES`; ValueError naming what is missing."""
    if not path.is_dir():
        raise ValueError(f"{path} is not a Stack Exchange data dump: not a directory")
    files = {name: dump_file(path, name) for name in REQUIRED_FILES}
    missing = [name for name, file in files.items() if file is None]
    if missing:
        raise ValueError(
            f"{path} is not a Stack Exchange data dump: missing {', '.join(missing)} "
            "(plain or .gz)"
        )
    return files


def _vote_instant(vote_id: str, day_ms: int, not_before_ms: int) -> int:
    """A deterministic instant in the vote's day, no earlier than ``not_before_ms``."""
    lo = max(day_ms, not_before_ms)
    hi = day_ms + _DAY_MS
    if lo >= hi:
        return lo
    digest = hashlib.blake2b(f"se-vote:{vote_id}".encode(), digest_size=8).digest()
    return lo + int.from_bytes(digest, "big") % (hi - lo)


# --- loading --------------------------------------------------------------------------------


def load_dump(path: Path, *, include_anonymous_votes: bool = True) -> DumpEvents:
    """Read a Stack Exchange data dump directory into event records.

    Parameters
    ----------
    path
        The dump directory: ``Users.xml``, ``Posts.xml``, ``Comments.xml``, ``Votes.xml``, each
        plain or gzipped (``Posts.xml.gz``; plain wins when both exist); other files are ignored.
    include_anonymous_votes
        Turn upvotes, which carry no user id, into LIKEs by :data:`ANONYMOUS_USER_ID` (default),
        or skip them.

    Returns
    -------
    DumpEvents
        ``signups``, ``uploads``, ``interactions``, ``follows``: record dicts (shapes in the
        module docstring), each list sorted by ``event_time``; ``skipped`` and ``adjusted``
        counts by reason.

    Raises
    ------
    ValueError
        ``path`` is not a dump directory, or one of its files is not well-formed XML (or not valid
        gzip); the message names the path.
    """
    path = Path(path)
    files = _check_dump(path)
    skipped: Counter[str] = Counter()
    adjusted: Counter[str] = Counter()

    users = {row["Id"]: row for row in _rows(files["Users.xml"])}

    # Posts: questions first, so an answer can look up its question.
    questions, answers = {}, {}
    for row in _rows(files["Posts.xml"]):
        kind = row.get("PostTypeId")
        if kind not in ("1", "2"):
            skipped[f"post_type_{kind}"] += 1
        elif not row.get("OwnerUserId"):
            skipped["post_without_owner"] += 1
        elif row["OwnerUserId"] not in users:
            skipped["post_owner_not_in_users"] += 1
        else:
            (questions if kind == "1" else answers)[row["Id"]] = row

    uploads: dict[str, dict] = {}  # post Id -> upload record
    parent_of: dict[str, str] = {}  # answer Id -> question Id
    tags_of: dict[str, list[str]] = {}  # post Id -> its question's tags
    for post_id, row in sorted(questions.items(), key=lambda item: int(item[0])):
        tags_of[post_id] = parse_tags(row.get("Tags"))
        uploads[post_id] = _upload(row, parse_time_ms(row["CreationDate"]), tags_of[post_id])
    for post_id, row in sorted(answers.items(), key=lambda item: int(item[0])):
        parent = row.get("ParentId")
        if parent not in uploads:
            skipped["answer_to_missing_or_skipped_question"] += 1
            continue
        event_time = parse_time_ms(row["CreationDate"])
        if event_time <= uploads[parent]["event_time"]:
            event_time = uploads[parent]["event_time"] + 1
            adjusted["answer_not_after_question"] += 1
        parent_of[post_id] = parent
        tags_of[post_id] = tags_of[parent]
        uploads[post_id] = _upload(row, event_time, [])
    owner = {post_id: upload["creator_id"] for post_id, upload in uploads.items()}
    time_of = {post_id: upload["event_time"] for post_id, upload in uploads.items()}

    # (event_time, follower, followee): every answer and comment on someone's post
    follow_causes = [(time_of[answer], owner[answer], owner[question])
                     for answer, question in parent_of.items()]
    interactions: list[dict] = []
    for row in _rows(files["Comments.xml"]):
        post_id = row.get("PostId")
        if not row.get("UserId"):
            skipped["comment_without_user"] += 1
        elif row["UserId"] not in users:
            skipped["comment_user_not_in_users"] += 1
        elif post_id not in uploads:
            skipped["comment_on_missing_or_skipped_post"] += 1
        else:
            event_time = parse_time_ms(row["CreationDate"])
            if event_time <= time_of[post_id]:
                event_time = time_of[post_id] + 1
                adjusted["comment_not_after_post"] += 1
            user_id = f"se-u{row['UserId']}"
            interactions.append(_interaction(
                f"se-c{row['Id']}", user_id, post_id, "COMMENT", event_time,
                comment_id=f"se-c{row['Id']}", comment_text=row.get("Text", ""),
            ))
            follow_causes.append((event_time, user_id, owner[post_id]))

    signups = _signups(users, uploads, interactions, tags_of, adjusted)
    signup_time = {record["user_id"]: record["event_time"] for record in signups}

    for row in _rows(files["Votes.xml"]):
        vote_type = _VOTE_TYPES.get(row.get("VoteTypeId", ""), f"type_{row.get('VoteTypeId')}")
        post_id = row.get("PostId")
        if vote_type not in ("favorite", "accepted", "upvote") or (
            vote_type == "upvote" and not include_anonymous_votes
        ):
            skipped[f"vote_{vote_type}"] += 1
            continue
        if post_id not in uploads:
            skipped[f"vote_{vote_type}_on_missing_or_skipped_post"] += 1
            continue
        if vote_type == "favorite":
            if row.get("UserId") not in users:
                skipped["vote_favorite_user_not_in_users"] += 1
                continue
            user_id = f"se-u{row['UserId']}"
        elif vote_type == "accepted":
            if post_id not in parent_of:
                skipped["vote_accepted_not_on_answer"] += 1
                continue
            user_id = owner[parent_of[post_id]]
        else:
            user_id = ANONYMOUS_USER_ID
        if user_id == owner[post_id]:
            skipped[f"vote_{vote_type}_on_own_post"] += 1
            continue
        not_before = max(time_of[post_id] + 1, signup_time.get(user_id, 0))
        day_ms = parse_time_ms(row["CreationDate"][:10])
        if not_before >= day_ms + _DAY_MS:
            adjusted["vote_day_before_post_or_voter"] += 1
        event_time = _vote_instant(row["Id"], day_ms, not_before)
        interactions.append(
            _interaction(f"se-v{row['Id']}", user_id, post_id, "LIKE", event_time)
        )

    follows = _follows(follow_causes)
    interactions.sort(key=lambda record: (record["event_time"], record["event_id"]))
    return DumpEvents(
        signups=signups,
        uploads=sorted(uploads.values(), key=lambda record: record["event_time"]),
        interactions=interactions,
        follows=follows,
        skipped=dict(sorted(skipped.items())),
        adjusted=dict(sorted(adjusted.items())),
    )


def _upload(row: dict[str, str], event_time: int, hashtags: list[str]) -> dict:
    post_id = f"se-p{row['Id']}"
    return {
        "event_id": stable_event_id(SOURCE, f"upload:{post_id}"),
        "event_time": event_time,
        "producer": PRODUCER,
        "post_id": post_id,
        "creator_id": f"se-u{row['OwnerUserId']}",
        "kind": "TEXT",
        "content_type": "FOREVER",
        "media_uri": None,
        "caption": html_to_text(row.get("Body")),
        "title": row.get("Title"),
        "hashtags": hashtags,
        "duration_ms": None,
        "size_bytes": None,
        "width": None,
        "height": None,
        "parent_post_id": f"se-p{row['ParentId']}" if row.get("PostTypeId") == "2" else None,
    }


def _interaction(key: str, user_id: str, post_id: str, type_: str, event_time: int,
                 comment_id: str | None = None, comment_text: str | None = None) -> dict:
    return {
        "event_id": stable_event_id(SOURCE, f"interaction:{key}"),
        "event_time": event_time,
        "producer": PRODUCER,
        "user_id": user_id,
        "post_id": f"se-p{post_id}",
        "type": type_,
        "dwell_ms": None,
        "comment_id": comment_id,
        "comment_text": comment_text,
        "report_reason": None,
        "surface": None,
    }


def _signups(users: dict[str, dict], uploads: dict[str, dict], comments: list[dict],
             tags_of: dict[str, list[str]], adjusted: Counter) -> list[dict]:
    """One signup per user row, with the stand-in declared interests and first-activity clamp."""
    tag_counts: dict[str, Counter[str]] = {}
    first_activity: dict[str, int] = {}
    for post_id, upload in uploads.items():
        user_id = upload["creator_id"]
        tag_counts.setdefault(user_id, Counter()).update(tags_of[post_id])
        first_activity[user_id] = min(first_activity.get(user_id, upload["event_time"]),
                                      upload["event_time"])
    for comment in comments:
        user_id = comment["user_id"]
        first_activity[user_id] = min(first_activity.get(user_id, comment["event_time"]),
                                      comment["event_time"])
    signups = []
    for row in users.values():
        user_id = f"se-u{row['Id']}"
        event_time = parse_time_ms(row["CreationDate"])
        if user_id in first_activity and first_activity[user_id] < event_time:
            event_time = first_activity[user_id]
            adjusted["signup_after_first_activity"] += 1
        counts = tag_counts.get(user_id, Counter())
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:5]
        country = parse_location(row.get("Location"))
        signups.append({
            "event_id": stable_event_id(SOURCE, f"user_signup:{user_id}"),
            "event_time": event_time,
            "producer": PRODUCER,
            "user_id": user_id,
            "handle": row.get("DisplayName", ""),
            "declared_interests": [tag for tag, _ in top],
            "locale": f"en-{country}" if country else None,
            "country": country,
            "about": html_to_text(row.get("AboutMe")) or None,
        })
    signups.sort(key=lambda record: (record["event_time"], record["user_id"]))
    return signups


def _follows(causes: list[tuple[int, str, str]]) -> list[dict]:
    """First answer or comment by A on B's post -> A FOLLOWs B at that moment; once per pair."""
    follows, seen = [], set()
    for event_time, follower, followee in sorted(causes):
        if follower == followee or (follower, followee) in seen:
            continue
        seen.add((follower, followee))
        follows.append({
            "event_id": stable_event_id(SOURCE, f"follow:{follower}>{followee}"),
            "event_time": event_time,
            "producer": PRODUCER,
            "follower_id": follower,
            "followee_id": followee,
            "action": "FOLLOW",
        })
    return follows


def iter_events_in_time_order(dump: DumpEvents) -> Iterator[tuple[str, dict]]:
    """Every record of ``dump`` as ``(event_type, record)``, merged by ``event_time``.

    ``event_type`` is one of ``"user_signup"``, ``"upload"``, ``"interaction"``, ``"follow"``.
    At one ``event_time``, signups come first, then uploads, interactions and follows, so a user
    signs up before their first post and the answer or comment that causes a follow precedes it.
    Together with the clamps :func:`load_dump` applies (a post is strictly earlier than its
    answers, comments and votes), every record refers only to users and posts already yielded
    (except :data:`ANONYMOUS_USER_ID`, which never signs up).
    """
    streams = (dump.signups, dump.uploads, dump.interactions, dump.follows)
    tagged = [_tagged(rank, event_type, records)
              for rank, (event_type, records) in enumerate(zip(EVENT_TYPES, streams))]
    for _, event_type, record in heapq.merge(*tagged, key=lambda item: item[0]):
        yield event_type, record


def _tagged(rank: int, event_type: str, records: list[dict]) -> Iterator[tuple]:
    # ((event_time, rank), event_type, record); each list is sorted by event_time already
    for record in records:
        yield (record["event_time"], rank), event_type, record


def early_votes_and_scores(path: Path, horizon_ms: int
                           ) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """What ``pulse eval analytics`` ranks against: ``(final score, raw votes, net votes)`` by
    post id (``"se-p<Id>"``, questions and answers): the dump's ``Score`` (up minus down votes
    when the dump was taken), and the up- and downvotes (VoteTypeId 2 and 3) that fall within
    ``horizon_ms`` of the post, each placed in its day by the rule :func:`load_dump` uses for the
    votes it turns into events (:func:`_vote_instant`); ``raw`` counts them, ``net`` is up minus
    down.

    Raises
    ------
    ValueError
        ``path`` is not a dump directory, or a file is not well-formed XML.
    """
    files = _check_dump(Path(path))
    created, score = {}, {}
    for row in _rows(files["Posts.xml"]):
        if row.get("PostTypeId") in ("1", "2"):
            created[row["Id"]] = parse_time_ms(row["CreationDate"])
            score[f"se-p{row['Id']}"] = int(row.get("Score") or 0)
    raw: Counter[str] = Counter()
    net: Counter[str] = Counter()
    for row in _rows(files["Votes.xml"]):
        kind, post = row.get("VoteTypeId"), row.get("PostId")
        if kind not in ("2", "3") or post not in created:
            continue
        at = _vote_instant(row["Id"], parse_time_ms(row["CreationDate"][:10]), created[post] + 1)
        if at < created[post] + horizon_ms:
            raw[f"se-p{post}"] += 1
            net[f"se-p{post}"] += 1 if kind == "2" else -1
    return score, dict(raw), dict(net)
