"""Crypto-shredding of personal fields (streams/contracts/personal.py): round trip, determinism,
ciphertext bound to its event type, field and subject, a shredded key read as erased, plaintext
of older events read as is, and the schema mark leaving every fingerprint unchanged."""
from __future__ import annotations

import json

import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings as hsettings, strategies as st

from streams.contracts.codec import AvroCodec, CodecError, codec_for
from streams.contracts.personal import (ATTRIBUTE, PREFIX, PersonalCodec, erased_fields, personal_fields,
                                        with_personal_data)
from streams.contracts.schemas import default_catalog
from streams.settings import Settings, SettingsError

T = 1_700_000_000_000


class DictKeys:
    """An in-memory SubjectKeys: a key per subject, made on first ``create``."""

    def __init__(self):
        self.keys: dict[str, bytes] = {}

    def key(self, subject, *, create):
        if subject not in self.keys and create:
            self.keys[subject] = bytes([len(self.keys) + 1]) * 32
        return self.keys.get(subject)


def upload(**kw):
    rec = {"event_id": "3b1f8c2e-4a5d-4e6f-8a9b-0c1d2e3f4a5b", "event_time": T, "producer": "t",
           "post_id": "p1", "creator_id": "ada", "kind": "TEXT", "content_type": "FOREVER", "media_uri": None,
           "caption": "my secret diary", "title": "Ada's title", "hashtags": ["qiskit"], "duration_ms": None,
           "size_bytes": None, "width": None, "height": None, "parent_post_id": None}
    rec.update(kw)
    return rec


def codec(keys=None, name="upload"):
    return PersonalCodec(AvroCodec(default_catalog(), name), keys or DictKeys())


def test_round_trip_hides_the_plaintext_on_the_wire():
    c = codec()
    data = c.encode(upload())
    assert b"secret diary" not in data and b"Ada's title" not in data and PREFIX.encode() in data
    plain = AvroCodec(default_catalog(), "upload").decode(data)  # what a reader without keys sees
    assert plain["caption"].startswith(PREFIX) and plain["creator_id"] == "ada"  # ids stay readable
    back = c.decode(data)
    assert back["caption"] == "my secret diary" and back["title"] == "Ada's title"
    assert erased_fields(back) == ()


def test_encryption_is_deterministic_per_event_and_field():
    keys = DictKeys()
    a, b = codec(keys).encode(upload()), codec(keys).encode(upload())
    assert a == b  # a replay emits the same bytes
    other = codec(keys).encode(upload(event_id="3b1f8c2e-4a5d-4e6f-8a9b-0c1d2e3f4a5c"))
    seal = lambda data: AvroCodec(default_catalog(), "upload").decode(data)  # noqa: E731
    assert seal(other)["caption"] != seal(a)["caption"]  # another event: another nonce
    same_text = codec(keys).seal(upload(title="my secret diary"))
    assert same_text["caption"] != same_text["title"]  # another field: another nonce and AAD


def test_a_ciphertext_moved_to_another_subject_or_field_does_not_decrypt():
    keys = DictKeys()
    c = codec(keys)
    sealed = c.seal(upload())
    keys.key("bob", create=True)
    raw = AvroCodec(default_catalog(), "upload")
    moved = raw.encode({**sealed, "creator_id": "bob"})
    with pytest.raises(CodecError, match="does not decrypt with subject 'bob'"):
        c.decode(moved)
    swapped = raw.encode({**sealed, "title": sealed["caption"]})
    with pytest.raises(CodecError, match="personal field title"):
        c.decode(swapped)
    tampered = raw.encode({**sealed, "caption": sealed["caption"][:-2] + ("A" if sealed["caption"][-2] != "A" else "B") + sealed["caption"][-1]})
    with pytest.raises(CodecError):
        c.decode(tampered)


def test_a_shredded_key_reads_as_erased_and_the_rest_still_decodes():
    keys = DictKeys()
    c = codec(keys)
    data = c.encode(upload())
    del keys.keys["ada"]  # crypto-shredding
    back = c.decode(data)
    assert back["caption"] == "" and back["title"] is None  # required -> "", nullable -> None
    assert erased_fields(back) == ("caption", "title")
    assert back["post_id"] == "p1" and back["hashtags"] == ["qiskit"]
    assert c.encode(back)  # an erased record still encodes (nothing to encrypt)


def test_plaintext_of_older_events_null_and_empty_values_are_read_as_they_are():
    c = codec()
    old = AvroCodec(default_catalog(), "upload").encode(upload(title=None, caption=""))
    assert c.decode(old)["caption"] == "" and c.decode(old)["title"] is None
    before = AvroCodec(default_catalog(), "upload").encode(upload())
    assert c.decode(before)["caption"] == "my secret diary"


def test_signup_interaction_and_review_task_fields():
    catalog = default_catalog()
    fields = {et.snake_name: personal_fields(et.current.schema) for et in catalog}
    assert fields["upload"] == {"caption": ("creator_id", False), "title": ("creator_id", True)}
    assert fields["user_signup"] == {"handle": ("user_id", False), "locale": ("user_id", True),
                                     "country": ("user_id", True), "about": ("user_id", True)}
    assert fields["interaction"] == {"comment_text": ("user_id", True), "report_reason": ("user_id", True)}
    assert fields["review_task"] == {"text": ("author_id", True)}
    assert {n for n, f in fields.items() if f} == {"upload", "user_signup", "interaction", "review_task"}
    plain = AvroCodec(catalog, "follow")
    assert with_personal_data(plain, DictKeys()) is plain  # nothing personal: no wrapper
    with pytest.raises(ValueError, match="must name another field"):
        personal_fields({"name": "X", "fields": [{"name": "a", "type": "string", ATTRIBUTE: "nobody"}]})


def test_the_mark_leaves_every_fingerprint_unchanged():
    catalog = default_catalog()
    for et in catalog:
        for v in et.versions:
            stripped = json.loads(json.dumps(v.schema))
            for f in stripped["fields"]:
                f.pop(ATTRIBUTE, None)
            assert to_parsing_canonical_form(stripped) == v.canonical_form, (et.name, v.version)
    # the fingerprints events were written with before the mark existed
    assert catalog.event_type("upload").version(2).fingerprint_hex == "0x107c058140ecea48"
    assert catalog.event_type("user_signup").version(1).fingerprint_hex == "0x758223aaa138a822"
    assert catalog.event_type("interaction").version(1).fingerprint_hex == "0x312b69b5cb283a4b"
    assert catalog.event_type("review_task").version(2).fingerprint_hex == "0xfdd10f66c13ec651"


def test_codec_for_wraps_only_with_keys():
    s = Settings.from_env({"PULSE_HOME": "/nonexistent-pulse-home"})
    assert isinstance(codec_for(s, "upload", "uploads"), AvroCodec)
    assert isinstance(codec_for(s, "upload", "uploads", keys=DictKeys()), PersonalCodec)


def test_the_setting_switch():
    env = {"PULSE_HOME": "/nonexistent-pulse-home"}
    assert Settings.from_env(env).personal_data_encryption is True
    assert Settings.from_env({**env, "PULSE_PERSONAL_DATA_ENCRYPTION": "off"}).personal_data_encryption is False
    with pytest.raises(SettingsError, match="PULSE_PERSONAL_DATA_ENCRYPTION"):
        Settings.from_env({**env, "PULSE_PERSONAL_DATA_ENCRYPTION": "maybe"})


@hsettings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=200), subject=st.text(min_size=1, max_size=20))
def test_any_text_of_any_subject_round_trips(text, subject):
    c = codec()
    back = c.decode(c.encode(upload(caption=text, creator_id=subject)))
    assert back["caption"] == text and back["creator_id"] == subject


def test_an_unreachable_key_store_fails_the_batch_instead_of_dead_lettering(tmp_path):
    from streams.contracts.agent import AgentSpec
    from streams.contracts.effects import Emit
    from streams.contracts.personal import KeyUnavailable
    from streams.runtime.binding import RuntimeContext
    from streams.runtime.engine import RawMessage

    class Down:
        def key(self, subject, *, create):
            raise KeyUnavailable("Cassandra is down")

    c = RuntimeContext(Settings.from_env({"PULSE_HOME": str(tmp_path)}), keys=Down())
    c.sinks = lambda needs: None
    echo = AgentSpec(name="echo", topics=("uploads",), outputs=("uploads",),
                     process=lambda s, e, cx: [Emit("uploads", e.record)])
    plain = AvroCodec(default_catalog(), "upload").encode(upload())
    with pytest.raises(KeyUnavailable):  # encrypting the emit needs the key
        c.run_batch(echo, [RawMessage("uploads", 0, 1, None, plain)])
    sealed = codec().encode(upload())
    with pytest.raises(KeyUnavailable):  # decrypting the source needs it too
        c.run_batch(echo, [RawMessage("uploads", 0, 2, None, sealed)])


class Batching(DictKeys):
    """DictKeys with the batch forms, recording what each call asked for (``fail``: the store is
    down: both raise KeyUnavailable)."""

    def __init__(self, inner=None, fail=False):
        super().__init__()
        if inner is not None:
            self.keys = inner.keys
        self.prefetched, self.ensured, self.fail = [], [], fail

    def prefetch(self, subjects):
        from streams.contracts.personal import KeyUnavailable

        self.prefetched.append(set(subjects))
        if self.fail:
            raise KeyUnavailable("Cassandra is down")
        return len(set(subjects) & set(self.keys))

    def ensure(self, subjects):
        from streams.contracts.personal import KeyUnavailable

        self.ensured.append(set(subjects))
        if self.fail:
            raise KeyUnavailable("Cassandra is down")
        for s in sorted(subjects):
            self.key(s, create=True)
        return len(subjects)


def eid(i):
    return f"3b1f8c2e-4a5d-4e6f-8a9b-0c1d2e3f4a{i:02x}"


def test_a_batch_reads_the_keys_its_sealed_fields_need_together_and_decodes_as_one_by_one():
    """decode_many (replay.reader, the runtime's batches): each message decoded once, the keys
    of encrypted fields only asked for at once; broken bytes come back in place as CodecError;
    the results equal decode() of each value; a failing store raises KeyUnavailable."""
    from streams.contracts.personal import KeyUnavailable, decode_many

    writer = codec()
    sealed = [writer.encode(upload(creator_id=c, post_id=f"{c}-p", event_id=eid(i)))
              for i, c in enumerate(("ada", "bob", "ada"))]
    plain = AvroCodec(default_catalog(), "upload").encode(upload(creator_id="cy", caption="", title=None))
    forged = bytearray(sealed[1])
    forged[-30] ^= 1  # inside bob's caption ciphertext
    keys = Batching(writer.keys)
    reader = PersonalCodec(AvroCodec(default_catalog(), "upload"), keys)
    assert reader.decode_sealed([sealed[1]]).subjects == {"bob"}
    assert (reader.decode_sealed([plain]).subjects, reader.decode_sealed([plain]).sealed) == (set(), [])
    values = sealed + [plain, b"not avro", bytes(forged)]
    out = decode_many(reader, values)
    assert keys.prefetched == [{"ada", "bob"}]
    assert [r["caption"] for r in out[:3]] == ["my secret diary"] * 3 and out[3]["caption"] == ""
    assert isinstance(out[4], CodecError) and isinstance(out[5], CodecError)
    one_by_one = []
    for v in values:
        try:
            one_by_one.append(reader.decode(v))
        except CodecError as exc:
            one_by_one.append(type(exc))
    assert [r if isinstance(r, dict) else type(r) for r in out] == one_by_one
    # without batch forms (or without a personal codec) each value is decoded alone, same results
    assert decode_many(PersonalCodec(AvroCodec(default_catalog(), "upload"), writer.keys), sealed) == out[:3]
    assert decode_many(AvroCodec(default_catalog(), "upload"), [plain])[0]["creator_id"] == "cy"
    with pytest.raises(KeyUnavailable):
        decode_many(PersonalCodec(AvroCodec(default_catalog(), "upload"), Batching(writer.keys, fail=True)), sealed)


def test_decode_batches_reads_a_batchs_keys_while_the_next_is_decoded_with_decode_manys_results():
    """decode_batches (the readers): batch N's keys are asked for before batch N+1 is taken,
    and batch N is opened only after N+1 was decoded sealed (one batch ahead); every result
    equals decode_many of its batch; a sealed value with no subject is still opened (read as
    erased); a store that fails raises KeyUnavailable when that batch is due."""
    from streams.contracts.personal import KeyUnavailable, decode_batches, decode_many

    writer = codec()
    values = [writer.encode(upload(creator_id=c, post_id=f"{c}-p{i}", event_id=eid(i)))
              for i, c in enumerate(("ada", "bob", "cy", "ada", "dee"))]
    no_subject = AvroCodec(default_catalog(), "upload").encode(
        upload(creator_id="", caption=PREFIX + "AAAA", event_id=eid(9)))
    batches = [("b0", values[:2]), ("b1", values[2:4] + [no_subject]), ("b2", values[4:])]
    log = []

    class Logged(Batching):
        def prefetch(self, subjects):
            log.append(("keys", frozenset(subjects)))  # in the reading thread
            return super().prefetch(subjects)

    keys = Logged(writer.keys)
    reader = PersonalCodec(AvroCodec(default_catalog(), "upload"), keys)

    def source():
        for tag, batch in batches:
            log.append(("taken", tag))
            yield tag, batch

    out = []
    for tag, records in decode_batches(reader, source()):
        log.append(("yielded", tag))
        out.append((tag, records))
    at = log.index
    assert at(("taken", "b1")) < at(("yielded", "b0")) and at(("taken", "b2")) < at(("yielded", "b1"))
    for tag, subjects in (("b0", {"ada", "bob"}), ("b1", {"cy", "ada"}), ("b2", {"dee"})):
        assert at(("taken", tag)) < at(("keys", frozenset(subjects))) < at(("yielded", tag))
    assert keys.prefetched == [{"ada", "bob"}, {"cy", "ada"}, {"dee"}]
    expected = [(tag, decode_many(PersonalCodec(AvroCodec(default_catalog(), "upload"), writer.keys), b))
                for tag, b in batches]
    assert out == expected
    assert out[1][1][2]["caption"] == "" and erased_fields(out[1][1][2]) == ("caption",)
    assert [r["caption"] for r in out[0][1]] == ["my secret diary"] * 2
    # a plain codec's batches are decode_many of each
    plain = AvroCodec(default_catalog(), "upload")
    assert list(decode_batches(plain, iter([("x", [values[0]])])))[0][1][0]["caption"].startswith(PREFIX)
    failing = PersonalCodec(AvroCodec(default_catalog(), "upload"), Batching(writer.keys, fail=True))
    with pytest.raises(KeyUnavailable):
        list(decode_batches(failing, iter(batches)))


def test_prepare_makes_a_batchs_missing_keys_at_once_and_encoding_then_needs_no_more():
    """Publisher.prepare -> PersonalCodec.prepare -> keys.ensure: the subjects of plaintext
    personal fields only (not empty ones, not already sealed ones), in one call."""
    keys = Batching()
    c = PersonalCodec(AvroCodec(default_catalog(), "upload"), keys)
    already = codec().seal(upload(creator_id="dee"))
    records = [upload(creator_id="ada"), upload(creator_id="bob", event_id=eid(1)),
               upload(creator_id="cy", caption="", title=None), already, "not a record"]
    c.prepare([r for r in records if isinstance(r, dict)])
    assert keys.ensured == [{"ada", "bob"}] and set(keys.keys) == {"ada", "bob"}
    made = dict(keys.keys)
    data = [c.encode(r) for r in records[:2]]
    assert keys.keys == made  # nothing created one by one afterwards
    assert [c.decode(d)["caption"] for d in data] == ["my secret diary"] * 2
    c.prepare([upload(creator_id="cy", caption="", title=None)])
    assert len(keys.ensured) == 1  # nothing to seal: no call


def test_the_runner_decodes_a_batch_per_topic_with_one_key_read_and_dead_letters_in_place():
    from streams.contracts.agent import AgentSpec
    from streams.runtime.engine import AgentRunner, RawMessage

    writer = codec()
    sealed = [writer.encode(upload(creator_id=c, post_id=f"{c}-p", event_id=eid(i)))
              for i, c in enumerate(("ada", "bob", "cy"))]
    keys = Batching(writer.keys)
    seen = []
    spec = AgentSpec(name="seer", topics=("uploads",), outputs=(),
                     process=lambda s, e, cx: seen.append((e.offset, e.record["caption"])) or [])
    from streams.contracts.topics import topic_spec

    runner = AgentRunner(spec, lambda t: PersonalCodec(AvroCodec(default_catalog(), "upload"), keys)
                         if t == "uploads" else AvroCodec(default_catalog(), topic_spec(t).schema))
    msgs = [RawMessage("uploads", 0, 0, None, sealed[0]), RawMessage("uploads", 0, 1, None, b"junk"),
            RawMessage("uploads", 0, 2, None, sealed[1]), RawMessage("uploads", 0, 3, None, sealed[2])]
    out = runner.run(msgs)
    assert keys.prefetched == [{"ada", "bob", "cy"}]
    assert seen == [(0, "my secret diary"), (2, "my secret diary"), (3, "my secret diary")]
    assert out.events == 4 and len(out.dead_letters) == 1


def test_prepare_events_makes_each_topics_keys_in_one_call(monkeypatch):
    """Publisher.prepare_events (a replayed history, the demo): one prepare per topic of the
    batch, with that topic's records in order; no broker is contacted."""
    from streams.producer import Publisher

    pub = Publisher(Settings.from_env({"PULSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"}), keys=None)
    asked = []

    class Codec:
        def __init__(self, topic):
            self.topic = topic

        def prepare(self, records):
            asked.append((self.topic, [r["n"] for r in records]))

    monkeypatch.setattr(pub, "_codec", Codec)
    pub.prepare_events([("uploads", {"n": 1}), ("signups", {"n": 2}), ("uploads", {"n": 3})])
    assert sorted(asked) == [("signups", [2]), ("uploads", [1, 3])]
