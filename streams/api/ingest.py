"""Writing through the API: ``POST /v1/events/{topic}`` and ``POST /v1/media``.

An event is validated against its topic's Avro schema by the same codec every producer uses
(:class:`~streams.producer.Publisher`), its ``producer`` set to the calling app's key name, and
answered 202 only once the broker has acknowledged it (``acks=all``, idempotent producer): a 202
means the event is in the log. An upload's (or a registration's) ``media_uri`` must already
resolve inside the media roots and name a stored file (422 otherwise, with the reason): the gates
check again whatever arrives straight onto Kafka.
"""
from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from fastapi import APIRouter, Depends, Request

from streams.api.app import ApiContext, authenticate, context
from streams.api.auth import PUBLIC_TOPICS, GrantError, Principal
from streams.api.errors import ApiError

router = APIRouter(prefix="/v1", tags=["write"])

ACK_TIMEOUT_S = 15.0
MEDIA_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
               "image/bmp": "bmp", "image/tiff": "tif", "video/mp4": "mp4", "video/quicktime": "mov",
               "video/webm": "webm", "video/x-matroska": "mkv", "audio/mpeg": "mp3", "audio/wav": "wav",
               "audio/x-wav": "wav", "audio/ogg": "ogg", "audio/flac": "flac", "audio/mp4": "m4a"}
"""Content types ``POST /v1/media`` stores, and the extension each gets."""


class EventIngest:
    """One Kafka producer for the process, its delivery callbacks served by a polling thread and
    turned into the requests' futures."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._pub = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publisher(self):
        with self._lock:
            if self._pub is None:
                from streams.producer import Publisher

                self._pub = Publisher(self.settings, producer_name="pulse-api", config={"linger.ms": 2})
                self._thread = threading.Thread(target=self._poll, name="pulse-api-producer", daemon=True)
                self._thread.start()
            return self._pub

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._pub.poll(0.05)

    async def publish(self, topic: str, record: dict[str, Any]) -> str:
        """Complete (``event_id``, ``event_time``), validate, encode and produce ``record``;
        returns its ``event_id`` once the broker acknowledged it.

        Raises :class:`ApiError` 422 (schema), 503 (broker unreachable or refusing).
        """
        from streams.contracts.codec import CodecError
        from streams.contracts.topics import TopicError
        from streams.stores.keys import KeyStoreError

        try:
            pub = self.publisher()
            record = pub.complete(record)
            # in a thread: a new data subject's key is made in Cassandra (crypto-shredding)
            key, value = await asyncio.to_thread(pub.encode, topic, record)
        except CodecError as exc:
            raise ApiError(422, f"the event does not match topic {topic}'s schema: {exc}") from None
        except (TopicError, KeyStoreError) as exc:
            raise ApiError(503, f"events cannot be published now: {exc}") from None
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def delivered(err, _msg) -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(err))

        pub.produce_raw(topic, key, value, on_delivery=delivered)
        try:
            err = await asyncio.wait_for(done, ACK_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ApiError(503, f"the broker did not acknowledge the event within {ACK_TIMEOUT_S:.0f} s; "
                                f"retry with the same event_id (consumers de-duplicate by it)") from None
        if err is not None:
            raise ApiError(503, f"the broker refused the event ({err}); retry with the same event_id")
        return str(record["event_id"])

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._pub is not None:
            try:
                self._pub.flush(10)
            except Exception:  # noqa: BLE001 - shutting down: what was not acknowledged was answered 503
                pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 past it, declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body of {int(declared):,} bytes is over the {limit:,} byte limit "
                            f"(PULSE_API_MAX_BODY_BYTES)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body over the {limit:,} byte limit (PULSE_API_MAX_BODY_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def check_media_uri(ctx: ApiContext, uri: Any) -> None:
    """422 unless ``uri`` resolves inside the media roots and names a stored file."""
    from streams.contracts.media import MediaRoots

    if uri is None:
        return
    try:
        path = MediaRoots.from_settings(ctx.settings).resolve(uri)
    except ValueError as exc:
        raise ApiError(422, f"field 'media_uri': {exc}") from None
    if not path.is_file():
        raise ApiError(422, f"field 'media_uri': no stored media at {uri!r}; store it first with POST /v1/media "
                            f"and use the media_uri it returns")


@router.post("/events/{topic}", status_code=202, summary="Publish one event on a topic.",
             responses={202: {"description": "In the log: `{\"event_id\": ..., \"topic\": ...}`"}})
async def post_event(topic: str, request: Request, principal: Principal = Depends(authenticate)) -> dict:
    """The body is one JSON object of the topic's event type (schemas/avro); ``event_id`` and
    ``event_time`` are filled in when missing, ``producer`` is always the calling app's key name."""
    from streams.contracts.topics import topic_catalog

    ctx = context(request)
    if topic not in topic_catalog():
        raise ApiError(404, f"no topic {topic!r}; apps publish to {', '.join(PUBLIC_TOPICS)}")
    if topic not in PUBLIC_TOPICS:
        raise ApiError(403, f"topic {topic!r} is written by Pulse itself; apps publish to {', '.join(PUBLIC_TOPICS)}")
    try:
        principal.may_publish(topic)
    except GrantError as exc:
        raise ApiError(403, str(exc)) from None
    if _media_type(request) != "application/json":
        raise ApiError(415, "send the event as JSON (Content-Type: application/json)")
    body = await read_body(request, ctx.settings.api_max_body_bytes)
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the body is not valid JSON: nested too deeply") from None
    if not isinstance(record, dict):
        raise ApiError(422, f"the body must be one JSON object (an event), not a {type(record).__name__}")
    record["producer"] = principal.name
    if topic in ("uploads", "copyright-references"):
        check_media_uri(ctx, record.get("media_uri"))
    event_id = await ctx.ingest.publish(topic, record)
    return {"event_id": event_id, "topic": topic}


@router.post("/media", status_code=201, summary="Store an upload's media; returns its media_uri.",
             responses={201: {"description": "`{\"media_uri\", \"sha256\", \"size_bytes\"}`"}})
async def post_media(request: Request, principal: Principal = Depends(authenticate)) -> dict:
    """The body is the file itself (Content-Type ``image/*``, ``video/*`` or ``audio/*``, see
    :data:`MEDIA_TYPES`), at most ``PULSE_MEDIA_MAX_BYTES``. Needs a key granted ``uploads`` or
    ``copyright-references``. The same bytes always get the same ``media_uri``."""
    from streams.stores.media import MediaStore, MediaTooLarge

    ctx = context(request)
    if principal.kind != "app" or not {"uploads", "copyright-references"} & set(principal.topics):
        raise ApiError(403, "storing media needs an app key granted the uploads or copyright-references topic")
    ext = MEDIA_TYPES.get(_media_type(request))
    if ext is None:
        raise ApiError(415, f"media type {_media_type(request) or 'none'!r} is not stored; send one of "
                            f"{', '.join(sorted(MEDIA_TYPES))}")
    store = MediaStore.from_settings(ctx.settings)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > store.max_bytes:
        raise ApiError(413, f"media of {int(declared):,} bytes is over the {store.max_bytes:,} byte limit "
                            f"(PULSE_MEDIA_MAX_BYTES)")
    incoming = store.writer(ext)
    try:
        async for chunk in request.stream():
            incoming.write(chunk)
        stored = incoming.finish()
    except MediaTooLarge as exc:
        raise ApiError(413, str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    finally:
        incoming.discard()
    return {"media_uri": stored.uri, "sha256": stored.sha256, "size_bytes": stored.size_bytes}
