"""Reading an erasure's report: what ``pulse erasure-report REQUEST_ID`` and ``pulse erase
--wait`` show, from the ``erasure_log`` view the eraser and the stateful agents write (one
partition per request; ``docs/erasure.md``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.query.read_side import ReadSide, read_side_of
from streams.settings import Settings
from streams.stores.cassandra import ViewStoreError


@dataclass
class ErasureReport:
    """One request's report: the subject and scope (from the eraser's request row), and per
    component the items it removed with their counts. ``done``: the components that have
    finished (written their ``done`` row)."""

    request_id: str
    user_id: str | None = None
    scope: str | None = None
    detail: str | None = None
    erased_at: Any = None
    components: dict[str, dict[str, int]] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def missing(self, expected: list[str]) -> list[str]:
        """The components of ``expected`` that have not finished yet."""
        return [c for c in expected if c not in self.done]

    def as_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "user_id": self.user_id, "scope": self.scope,
                "detail": self.detail,
                "erased_at": self.erased_at.isoformat() if hasattr(self.erased_at, "isoformat") else self.erased_at,
                "components": self.components, "done": sorted(self.done)}


def read_erasure_report(source: Settings | ReadSide, request_id: str) -> ErasureReport:
    """The report of ``request_id`` as written so far (no components when none has reported).

    Raises ``streams.stores.cassandra.ViewStoreError`` when Cassandra cannot be reached or the
    keyspace has no ``erasure_log`` table.
    """
    from cassandra import InvalidRequest

    rs = read_side_of(source)
    ks = rs.active_keyspace()
    try:
        rows = list(rs.execute("SELECT * FROM {ks}.erasure_log WHERE request_id = ?", (request_id,),
                               keyspace=ks))
    except InvalidRequest as exc:
        raise ViewStoreError(f"keyspace {ks} has no erasure_log view ({exc.args[0] if exc.args else exc}); "
                             f"`pulse up` (or `pulse views create`) applies infra/cassandra/schema.cql") from None
    return fold_report(request_id, rows)


def fold_report(request_id: str, rows: Any) -> ErasureReport:
    """``erasure_log`` rows of one request (objects with ``component``, ``item``, ``count``,
    ``user_id``, ``scope``, ``detail``, ``erased_at``) -> its :class:`ErasureReport`."""
    report = ErasureReport(request_id)
    totals: dict[str, int] = {}
    for r in rows:
        if r.component == "eraser" and r.item == "request":
            report.user_id, report.scope, report.detail, report.erased_at = r.user_id, r.scope, r.detail, r.erased_at
        elif r.item == "done":
            totals[r.component] = int(r.count or 0)
            report.components.setdefault(r.component, {})
        else:
            report.components.setdefault(r.component, {})[r.item] = int(r.count or 0)
    # a component's rows are written by one sink batch but not atomically: it counts as done once
    # its done row and every item row it totals are visible (and, for the eraser, its request row)
    for component, total in totals.items():
        if sum(report.components.get(component, {}).values()) == total and \
                (component != "eraser" or report.user_id is not None):
            report.done.add(component)
    return report
