"""Reading a user's notifications: what ``pulse notifications USER_ID`` shows, from the
``notifications`` view notification_generator materializes (one row per SEND, HOLD and DIGEST,
newest first; DROPs are only on the topic)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings
from streams.stores.cassandra import ViewStoreError


@dataclass
class NotificationRow:
    """One notification decision as the view holds it: when (UTC), what, the action (SEND or
    HOLD; a DIGEST is SEND), the probability the policy gave that action, the arm's posterior
    mean then, and the status (SENT, HELD, DIGESTED, DELIVERED, DISMISSED, OPENED, ACTED, MUTED)."""

    sent_at: datetime | None
    notification_id: str
    type: str
    action: str | None
    title: str | None
    status: str | None
    propensity: float | None
    expected_reward: float | None
    post_id: str | None
    actor_id: str | None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sent_at"] = self.sent_at.isoformat() if self.sent_at is not None else None
        return d


def read_notifications(source: Settings | ReadSide, user_id: str, *, limit: int = 20) -> list[NotificationRow]:
    """The newest ``limit`` notifications of ``user_id`` (empty when none).

    Raises ``streams.stores.cassandra.ViewStoreError`` when Cassandra cannot be reached or the
    keyspace has no ``notifications`` table.
    """
    from cassandra import InvalidRequest

    rs = read_side_of(source)
    ks = rs.active_keyspace()
    try:
        rows = list(rs.execute("SELECT * FROM {ks}.notifications WHERE user_id = ? LIMIT ?",
                               (user_id, int(limit)), keyspace=ks))
    except InvalidRequest as exc:
        raise ViewStoreError(f"keyspace {ks} has no notifications view with this schema "
                             f"({exc.args[0] if exc.args else exc}); `pulse up` applies "
                             f"infra/cassandra/schema.cql") from None
    return [NotificationRow(sent_at=r.sent_at, notification_id=r.notification_id, type=r.type,
                            action=getattr(r, "action", None), title=r.title, status=r.status,
                            propensity=r.propensity, expected_reward=getattr(r, "expected_reward", None),
                            post_id=r.post_id, actor_id=r.actor_id) for r in rows]
