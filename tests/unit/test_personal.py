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


class Msg:
    """A consumed message as confluent-kafka gives it (value and error)."""

    def __init__(self, value, error=None):
        self._value, self._error = value, error

    def value(self):
        return self._value

    def error(self):
        return self._error


def test_a_batch_prefetches_the_keys_its_sealed_fields_need_and_never_changes_a_result():
    """replay.reader reads a batch's keys together (one round trip per subject, taken one message
    at a time, made exports ten times slower): the subjects are those of encrypted fields only;
    broken messages, tombstones, plaintext and a failing store are left to the per-message decode."""
    from replay.reader import _prefetch_keys

    writer = codec()
    sealed = [writer.encode(upload(creator_id=c, post_id=f"{c}-p", event_id=f"3b1f8c2e-4a5d-4e6f-8a9b-0c1d2e3f4a{i:02x}"))
              for i, c in enumerate(("ada", "bob", "ada"))]
    plain = AvroCodec(default_catalog(), "upload").encode(upload(creator_id="cy", caption="", title=None))

    class Prefetching(DictKeys):
        def __init__(self, inner, fail=False):
            super().__init__()
            self.keys, self.asked, self.fail = inner.keys, [], fail

        def prefetch(self, subjects):
            self.asked.append(set(subjects))
            if self.fail:
                raise RuntimeError("Cassandra is down")
            return len(subjects)

    keys = Prefetching(writer.keys)
    reader = PersonalCodec(AvroCodec(default_catalog(), "upload"), keys)
    assert reader.sealed_subjects(reader.inner.decode(sealed[1])) == {"bob"}
    assert reader.sealed_subjects(reader.inner.decode(plain)) == set()
    batch = [Msg(v) for v in sealed] + [Msg(plain), Msg(b"not avro"), Msg(None), Msg(None, error="EOF")]
    _prefetch_keys(reader, keys, batch)
    assert keys.asked == [{"ada", "bob"}]
    failing = Prefetching(writer.keys, fail=True)
    _prefetch_keys(PersonalCodec(AvroCodec(default_catalog(), "upload"), failing), failing, batch)  # no raise
    assert [PersonalCodec(AvroCodec(default_catalog(), "upload"), failing).decode(v)["caption"] for v in sealed] \
        == ["my secret diary"] * 3
    _prefetch_keys(AvroCodec(default_catalog(), "upload"), keys, batch)  # no personal codec: nothing asked
    assert len(keys.asked) == 1
