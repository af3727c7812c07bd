"""Slots shared fairly between tenants: who runs next when there are more callers than slots.

Two things use them: the submit-time checker processes (:mod:`service.jobs.validation_pool`)
and the server's admission of calls (:mod:`service.core.admission`). Each tenant may hold at
most ``slots - 1`` of the slots at once (one when there are two), and when a slot frees, it goes
to the waiting tenant that holds the fewest, and among those to the one served least recently;
one tenant's callers wait in the order they came.

Why a fixed share rather than letting a tenant take every idle slot until someone else asks:
a holder cannot be pre-empted, so a tenant that had taken every slot would make the next tenant
wait for one of its holders to finish (for a check, up to its whole time limit), each time.
With a share of ``slots - 1``, one tenant keeping every slot busy never delays another at all,
and several such tenants delay a newcomer by at most one holder (it is served first when a slot
frees). The price is that a single tenant's concurrent callers run ``slots - 1`` at a time.

A tenant may also have only so many callers waiting; more are refused at once instead of
holding a server thread each.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass

from service.core.errors import ResourceExhausted, Unavailable


@dataclass(eq=False)
class _Ticket:
    seq: int
    tenant: str


class FairSlots:
    def __init__(self, slots: int, *, max_waiting_per_tenant: int) -> None:
        if slots < 1:
            raise ValueError("a pool needs at least one slot")
        self.slots = slots
        self.tenant_share = max(1, slots - 1)
        self.max_waiting_per_tenant = max_waiting_per_tenant
        self._changed = threading.Condition()
        self._held: Counter[str] = Counter()
        self._waiting: list[_Ticket] = []
        self._served: dict[str, int] = {}
        self._seq = itertools.count()

    def acquire(
        self,
        tenant: str,
        wait_limit: float,
        *,
        busy: str = "the server is busy; try again shortly",
        too_many: str = "of this tenant's calls are already waiting; let them finish first",
        capped: bool = True,
    ) -> None:
        """Take a slot for ``tenant``. Raises ResourceExhausted with ``too_many`` at once if the
        tenant already has its most callers waiting (unless not ``capped``), Unavailable with
        ``busy`` if no slot came within ``wait_limit`` seconds."""
        deadline = time.monotonic() + wait_limit
        with self._changed:
            waiting = sum(1 for t in self._waiting if t.tenant == tenant)
            if capped and waiting >= self.max_waiting_per_tenant:
                raise ResourceExhausted(f"{waiting} {too_many}")
            ticket = _Ticket(next(self._seq), tenant)
            self._waiting.append(ticket)
            try:
                while self._next() is not ticket:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Unavailable(busy)
                    self._changed.wait(remaining)
            finally:
                self._waiting.remove(ticket)
                self._changed.notify_all()
            self._held[tenant] += 1
            self._served[tenant] = next(self._seq)

    def release(self, tenant: str) -> None:
        with self._changed:
            self._held[tenant] -= 1
            if not self._held[tenant]:
                del self._held[tenant]
            self._changed.notify_all()

    def held(self, tenant: str) -> int:
        with self._changed:
            return self._held[tenant]

    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    def _next(self) -> _Ticket | None:
        """The ticket a free slot goes to now, if any: fewest slots held, then the tenant served
        least recently, then first come."""
        if sum(self._held.values()) >= self.slots:
            return None
        eligible = [t for t in self._waiting if self._held[t.tenant] < self.tenant_share]
        return min(
            eligible,
            key=lambda t: (self._held[t.tenant], self._served.get(t.tenant, -1), t.seq),
            default=None,
        )
