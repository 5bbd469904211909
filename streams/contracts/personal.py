"""Crypto-shredding of personal fields: encrypted per data subject from the start, unreadable once
the subject's key is deleted (``docs/erasure.md``).

The log is immutable, so an erased user's caption, comment or handle cannot be deleted from it;
instead every personal field is written encrypted under a key of its own subject, and erasure
deletes the key ("crypto-shredding"). No later replay, export or training set can read the field
again, and every other field still decodes, so they keep running over the rest.

**Which fields.** A field of an ``.avsc`` file marked with the custom attribute
``"pulse.personal": "<field>"`` is personal, and ``<field>`` names the field holding its subject
(``"caption": ..., "pulse.personal": "creator_id"``). Avro ignores attributes it does not know,
and the Parsing Canonical Form keeps only ``name``, ``type``, ``fields``, ``symbols``, ``items``,
``values`` and ``size`` (Avro 1.11 specification, "Parsing Canonical Form for Schemas"), so the
mark changes no fingerprint: old events stay decodable (``tests/unit/test_personal.py``).

**Format.** The ciphertext travels in the same string field: ``"pii:1:"`` + base64url without
padding of ``nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)``. AES-256-GCM-SIV (RFC 8452) with

* the key: ``HMAC-SHA256(subject key, "pulse.pii.enc")`` (the subject key is 256 random bits);
* a **deterministic** nonce: the first 12 bytes of ``HMAC-SHA256(HMAC-SHA256(subject key,
  "pulse.pii.nonce"), event_id ‖ 0 ‖ field)``: the same event encrypts to the same bytes, so a
  replay emits byte-identical derived events (``pulse replay rebuild --verify``). GCM-SIV is
  nonce-misuse resistant: a nonce repeated with another plaintext (an upstream app reusing an
  event id) reveals only whether the two plaintexts are equal, where AES-GCM would lose its
  authenticity (NIST SP 800-38D, section 8: GCM requires unique nonces per key);
* associated data ``"pulse.pii.v1" ‖ 0 ‖ event type ‖ 0 ‖ field ‖ 0 ‖ subject``: a ciphertext
  moved to another event type, field or subject does not decrypt (each event type lives on one
  topic of the catalog, so the type binds the topic).

Null and empty values stay as they are (emptiness is not personal); a value with no subject (an
empty subject field) stays plaintext.

**Decoding.** A value without the prefix is plaintext (events written before encryption, or with
it switched off) and is returned as is. A value with the prefix whose subject has no key any
more (shredded) decodes to ``None`` (a nullable field) or ``""`` (a required one), and the record
is marked: :func:`erased_fields` names the fields. A ciphertext that does not authenticate with
an existing key is a :class:`~streams.contracts.codec_errors.CodecError` (dead-lettered).

The codec stays pure: :class:`PersonalCodec` wraps any codec with a :class:`SubjectKeys`
provider that the producer, the runtime and the readers inject (``streams/stores/keys.py``).
"""
from __future__ import annotations

import base64
import binascii
import functools
import hmac
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

from streams.contracts.codec_errors import CodecError

#: Prefix of an encrypted value, version 1 of the format (module docstring).
PREFIX = "pii:1:"
#: The custom schema attribute that marks a personal field (value: the subject's field).
ATTRIBUTE = "pulse.personal"
NONCE_BYTES = 12
TAG_BYTES = 16


class KeyUnavailable(RuntimeError):
    """The subjects' keys cannot be read or written now (the store is unreachable or refusing).
    Not a :class:`CodecError`: the event is not broken, so it must not be dead-lettered; the
    batch fails and is retried (``streams.stores.keys.KeyStoreError`` is the store's)."""


class SubjectKeys(Protocol):
    """Where the 256-bit key of each data subject is kept."""

    def key(self, subject: str, *, create: bool) -> bytes | None:
        """``subject``'s 32-byte key; with ``create``, made (once, agreed by every caller) when
        it has none; without, ``None`` when it has none (never made, or shredded).

        Raises :class:`KeyUnavailable` when the keys cannot be read."""
        ...


# A provider may also offer the batch forms ``prefetch(subjects)`` (read and cache the existing
# keys of many subjects at once) and ``ensure(subjects)`` (the same, creating the missing ones);
# :meth:`PersonalCodec.decode_many` and :meth:`PersonalCodec.prepare` use them when present
# (``streams.stores.keys.CassandraSubjectKeys`` has both).


class ErasedRecord(dict):
    """A decoded record some of whose personal fields were shredded; ``erased`` names them."""

    erased: tuple[str, ...] = ()


def erased_fields(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The personal fields of a decoded ``record`` whose subject's key was shredded (empty
    when none)."""
    return getattr(record, "erased", ())


def personal_fields(schema: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """``{field: (subject field, nullable)}`` of a record schema's fields marked
    :data:`ATTRIBUTE`.

    Raises
    ------
    ValueError
        A mark names a field the record does not have, or marks a field that is not a string.
    """
    names = {f["name"] for f in schema.get("fields", ())}
    out: dict[str, tuple[str, bool]] = {}
    for f in schema.get("fields", ()):
        subject = f.get(ATTRIBUTE)
        if subject is None:
            continue
        branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
        if subject not in names or not set(branches) <= {"null", "string"} or "string" not in branches:
            raise ValueError(f"{schema.get('name')}.{f['name']}: {ATTRIBUTE!r} must name another field "
                             f"of the record and mark a string or nullable string field")
        out[f["name"]] = (subject, "null" in branches)
    return out


@functools.lru_cache(maxsize=32768)
def _derive(key: bytes) -> tuple[Any, bytes]:
    """The AEAD and the nonce key of a subject key (cached for the most recent 32,768 subjects,
    a few MB: both are pure functions of the key)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

    enc = hmac.digest(key, b"pulse.pii.enc", "sha256")
    nonce_key = hmac.digest(key, b"pulse.pii.nonce", "sha256")
    return AESGCMSIV(enc), nonce_key


@functools.lru_cache(maxsize=1024)
def _aad_prefix(event_type: str, field: str) -> bytes:
    return b"\x00".join((b"pulse.pii.v1", event_type.encode(), field.encode(), b""))


def _aad(event_type: str, field: str, subject: str) -> bytes:
    return _aad_prefix(event_type, field) + subject.encode()


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def encrypt(key: bytes, event_type: str, field: str, subject: str, event_id: str, plaintext: str) -> str:
    """``plaintext`` as a :data:`PREFIX` value (deterministic: the same inputs give the same
    string)."""
    aead, nonce_key = _derive(key)
    nonce = hmac.digest(nonce_key, f"{event_id}\x00{field}".encode(), "sha256")[:NONCE_BYTES]
    sealed = nonce + aead.encrypt(nonce, plaintext.encode("utf-8"), _aad(event_type, field, subject))
    return PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")


def decrypt(key: bytes, event_type: str, field: str, subject: str, value: str) -> str:
    """The plaintext of a :data:`PREFIX` value.

    Raises
    ------
    CodecError
        Not valid base64url, too short, or it does not authenticate (another key, event type,
        field or subject, or altered bytes).
    """
    from cryptography.exceptions import InvalidTag

    body = value[len(PREFIX):]
    try:
        # base64.urlsafe_b64decode's steps without its per-call checks: same alphabet, same
        # non-strict handling of characters outside it
        sealed = binascii.a2b_base64((body + "=" * (-len(body) % 4)).encode("ascii").translate(_FROM_URLSAFE))
    except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
        raise CodecError(f"personal field {field}: not valid base64url after {PREFIX!r}") from None
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise CodecError(f"personal field {field}: {len(sealed)} bytes, too short for nonce and tag")
    aead, _ = _derive(key)
    try:
        return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                            _aad(event_type, field, subject)).decode("utf-8")
    except InvalidTag:
        raise CodecError(f"personal field {field} does not decrypt with subject {subject!r}'s key for "
                         f"{event_type}: altered, or copied from another event type, field or subject") from None


@dataclass
class SealedBatch:
    """A batch decoded with its personal fields still sealed (:meth:`PersonalCodec.decode_sealed`).

    Attributes
    ----------
    records:
        Each value's record, or the :class:`CodecError` its decoding raised, in order.
    sealed:
        Indexes of the records holding at least one sealed value (only those need opening).
    subjects:
        The subjects whose keys opening them needs.
    """

    records: list[dict[str, Any] | CodecError]
    sealed: list[int]
    subjects: set[str]


class PersonalCodec:
    """An :class:`~streams.contracts.codec.EventCodec` whose personal fields are encrypted on
    ``encode`` and decrypted on ``decode`` (module docstring); everything else is ``inner``'s.

    Parameters
    ----------
    inner:
        The wire-format codec (single-object encoding or Confluent).
    keys:
        The subjects' keys; ``encode`` creates a subject's key on first use.
    """

    def __init__(self, inner: Any, keys: SubjectKeys) -> None:
        self.inner = inner
        self.keys = keys
        self.event_type = inner.event_type
        self._name = inner.event_type.full_name
        self.fields = personal_fields(inner.event_type.current.schema)

    def validate(self, record: Mapping[str, Any]) -> None:
        self.inner.validate(record)

    def seal(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """``record`` with its personal fields encrypted (a copy; ``record`` is not changed).
        Values already encrypted, null or empty, or without a subject are kept."""
        out = None
        for field, (subject_field, _) in self.fields.items():
            value, subject = record.get(field), record.get(subject_field)
            if not value or not subject or not isinstance(value, str) or value.startswith(PREFIX):
                continue
            key = self.keys.key(str(subject), create=True)
            if out is None:
                out = dict(record)
            out[field] = encrypt(key, self._name, field, str(subject), str(record["event_id"]).lower(), value)
        return record if out is None else out

    def open(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with its personal fields decrypted in place; shredded ones emptied and
        named by :func:`erased_fields` (the record is then an :class:`ErasedRecord`)."""
        erased = []
        for field, (subject_field, nullable) in self.fields.items():
            value = record.get(field)
            if not isinstance(value, str) or not value.startswith(PREFIX):
                continue
            subject = str(record.get(subject_field) or "")
            key = self.keys.key(subject, create=False) if subject else None
            if key is None:
                record[field] = None if nullable else ""
                erased.append(field)
            else:
                record[field] = decrypt(key, self._name, field, subject, value)
        if erased:
            record = ErasedRecord(record)
            record.erased = tuple(erased)
        return record

    def unsealed_subjects(self, record: Mapping[str, Any]) -> set[str]:
        """The subjects whose keys :meth:`seal` needs for ``record``: those of its personal
        fields still in plaintext."""
        out = set()
        for field, (subject_field, _) in self.fields.items():
            value, subject = record.get(field), record.get(subject_field)
            if value and subject and isinstance(value, str) and not value.startswith(PREFIX):
                out.add(str(subject))
        return out

    def prepare(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Make the keys that sealing ``records`` needs at once (the provider's ``ensure``, when
        it has one), so that encoding a batch of events about new subjects costs a few round
        trips instead of two per subject. Optional: :meth:`encode` creates any key it lacks.

        Raises
        ------
        KeyUnavailable
            The keys cannot be read or written now.
        """
        ensure = getattr(self.keys, "ensure", None)
        if ensure is None:
            return
        subjects: set[str] = set()
        for record in records:
            subjects |= self.unsealed_subjects(record)
        if subjects:
            ensure(subjects)

    def decode_sealed(self, values: Sequence[bytes]) -> SealedBatch:
        """The first half of :meth:`decode_many`: each value decoded by ``inner``, its personal
        fields still sealed (:class:`SealedBatch`)."""
        records: list[dict[str, Any] | CodecError] = []
        sealed: list[int] = []
        subjects: set[str] = set()
        fields = tuple(self.fields.items())
        for value in values:
            try:
                record = self.inner.decode(value)
            except CodecError as exc:
                records.append(exc)
                continue
            needs_opening = False
            for field, (subject_field, _) in fields:
                v = record.get(field)
                if isinstance(v, str) and v.startswith(PREFIX):
                    needs_opening = True
                    subject = record.get(subject_field)
                    if subject:
                        subjects.add(str(subject))
            if needs_opening:
                sealed.append(len(records))
            records.append(record)
        return SealedBatch(records, sealed, subjects)

    def prefetch(self, subjects: set[str]) -> None:
        """Read the keys of ``subjects`` together (the provider's ``prefetch``, when it has one).

        Raises
        ------
        KeyUnavailable
            The keys cannot be read now.
        """
        prefetch = getattr(self.keys, "prefetch", None)
        if prefetch is not None and subjects:
            prefetch(subjects)

    def open_many(self, batch: SealedBatch) -> list[dict[str, Any] | CodecError]:
        """The second half of :meth:`decode_many`: the records of :meth:`decode_sealed` with
        their sealed ones opened (:meth:`open`), or the :class:`CodecError` opening raises, in
        place. The batch's keys should have been read (:meth:`prefetch`); a key not read is
        looked up one at a time."""
        out = batch.records
        for i in batch.sealed:
            try:
                out[i] = self.open(out[i])
            except CodecError as exc:
                out[i] = exc
        return out

    def decode_many(self, values: Sequence[bytes]) -> list[dict[str, Any] | CodecError]:
        """Decode a batch: each value's record, or the :class:`CodecError` it raises (in place,
        not raised). Every value is decoded once by ``inner``; the keys of all their sealed
        fields are then read together (the provider's ``prefetch``, when it has one), and each
        record is opened. The results equal ``decode`` of each value.

        Raises
        ------
        KeyUnavailable
            The keys cannot be read now (the whole batch is to be retried).
        """
        batch = self.decode_sealed(values)
        self.prefetch(batch.subjects)
        return self.open_many(batch)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encrypt the personal fields, then validate and encode (raises what ``inner.encode``
        raises; encryption keeps every field's type, so the messages name the same fields)."""
        return self.inner.encode(self.seal(record))

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode, then decrypt the personal fields (raises :class:`CodecError` for broken bytes
        or a ciphertext that does not authenticate)."""
        return self.open(self.inner.decode(data))

    def __repr__(self) -> str:
        return f"PersonalCodec({self.inner!r}, fields={sorted(self.fields)})"


def decode_many(codec: Any, values: Sequence[bytes]) -> list[dict[str, Any] | CodecError]:
    """``codec``'s decoding of each of ``values``: the record, or the :class:`CodecError` it
    raised, in place. A :class:`PersonalCodec` reads the batch's keys together
    (:meth:`PersonalCodec.decode_many`); any other codec decodes one value at a time.

    Raises
    ------
    KeyUnavailable
        The subjects' keys cannot be read now.
    """
    many = getattr(codec, "decode_many", None)
    if many is not None:
        return many(values)
    out: list[dict[str, Any] | CodecError] = []
    for value in values:
        try:
            out.append(codec.decode(value))
        except CodecError as exc:
            out.append(exc)
    return out


def decode_batches(codec: Any, batches: Iterable[tuple[Any, Sequence[bytes]]]
                   ) -> Iterator[tuple[Any, list[dict[str, Any] | CodecError]]]:
    """``(tag, decode_many(codec, values))`` of each ``(tag, values)`` of ``batches``, in order, with
    each batch's key reads running in a thread while the next batch is decoded: for readers of
    long histories, where waiting on the key store was a quarter of a personal topic's export.
    A :class:`PersonalCodec`'s batch is decoded sealed (:meth:`PersonalCodec.decode_sealed`),
    its keys' read is started, the next batch is taken and decoded sealed, and only then is the
    first opened; any other codec's batches are decoded one after another. ``batches`` is
    consumed one batch ahead of what has been yielded. The results equal
    :func:`decode_many` of each batch.

    Raises
    ------
    KeyUnavailable
        The keys of a batch cannot be read (raised when that batch is due).
    """
    if not isinstance(codec, PersonalCodec):
        for tag, values in batches:
            yield tag, decode_many(codec, values)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pulse-keys")
    pending = None  # (tag, sealed batch, future of its keys' read)
    try:
        for tag, values in batches:
            batch = codec.decode_sealed(values)
            ahead = (tag, batch, pool.submit(codec.prefetch, batch.subjects))
            if pending is not None:
                pending[2].result()
                yield pending[0], codec.open_many(pending[1])
            pending = ahead
        if pending is not None:
            pending[2].result()
            yield pending[0], codec.open_many(pending[1])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def with_personal_data(codec: Any, keys: SubjectKeys | None) -> Any:
    """``codec`` wrapped in a :class:`PersonalCodec` when ``keys`` is given and its event type
    has personal fields; else ``codec`` itself."""
    if keys is None or not personal_fields(codec.event_type.current.schema):
        return codec
    return PersonalCodec(codec, keys)
