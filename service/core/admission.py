"""How many calls run the server's Python at once, and whose run next.

The synchronous gRPC server has a thread per call, and every thread that has work competes for
the one interpreter lock: with a hundred calls of one tenant runnable, another tenant's GetJob
waits for the lock behind all of them, five milliseconds at a time (Python's switch interval),
and takes half a second instead of one millisecond. Admission keeps the number of calls running
small (``TEMPERING_GRPC_ACTIVE_CALLS``) and lets the rest wait without touching the lock, in
:class:`~service.core.fair_slots.FairSlots`: no tenant holds every slot, and a freed one goes to
the tenant holding the fewest. A call that waits for something else (a checker process, a job
to stop) steps aside (:func:`stepped_aside`), so that waiting costs nobody a slot.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass

from service.core.fair_slots import FairSlots

REJOIN_SECONDS = 60.0
"""Longest a call that stepped aside waits to run again."""


def active_calls(setting: int) -> int:
    """Calls admitted at once: the setting, or 0 for two per CPU plus two (at least four: on
    PostgreSQL a call spends part of its time waiting for the database, lock released)."""
    return setting if setting > 0 else max(4, 2 * (os.cpu_count() or 1) + 2)


@dataclass(frozen=True)
class _Admitted:
    admission: Admission
    tenant: str


_CURRENT: contextvars.ContextVar[_Admitted | None] = contextvars.ContextVar(
    "tempering_admitted", default=None
)


class Admission:
    def __init__(self, slots: int, *, max_waiting_per_tenant: int) -> None:
        self.slots = FairSlots(slots, max_waiting_per_tenant=max_waiting_per_tenant)

    @contextlib.contextmanager
    def admitted(self, tenant: str, wait_limit: float) -> Iterator[None]:
        """Run the body holding one of ``tenant``'s slots. Raises ResourceExhausted when the
        tenant already has its most calls waiting, Unavailable after ``wait_limit`` seconds."""
        self.slots.acquire(
            tenant,
            wait_limit,
            busy="the server is busy with other calls; retry with backoff",
            too_many="of your calls are already waiting on this server, the most one tenant"
            " may have waiting; let them finish, then retry",
        )
        token = _CURRENT.set(_Admitted(self, tenant))
        try:
            yield
        finally:
            holding = _CURRENT.get() is not None  # not when a rejoin failed
            _CURRENT.reset(token)
            if holding:
                self.slots.release(tenant)


@contextlib.contextmanager
def stepped_aside(rejoin_limit: float = REJOIN_SECONDS) -> Iterator[None]:
    """Give the current call's slot back while the body waits, and take one again after.

    Outside an admitted call (a worker, a test) this does nothing. Taking the slot back is not
    refused for the tenant's backlog: the call was admitted once already."""
    current = _CURRENT.get()
    if current is None:
        yield
        return
    slots = current.admission.slots
    slots.release(current.tenant)
    _CURRENT.set(None)
    try:
        yield
    finally:
        slots.acquire(
            current.tenant,
            rejoin_limit,
            busy="the server is busy with other calls; retry with backoff",
            capped=False,
        )
        _CURRENT.set(current)
