"""Slots shared fairly between tenants (service/core/fair_slots.py), as the submit-time checks and
the admission of calls use them: no tenant holds every slot, a freed slot goes to the tenant
holding the fewest, and a tenant's backlog of waiting callers is bounded."""

from __future__ import annotations

import threading
import time

import pytest

from service.core.errors import ResourceExhausted, Unavailable
from service.core.fair_slots import FairSlots

SHORT = 0.2


def take_in_background(slots: FairSlots, tenant: str, taken: list[str]) -> threading.Thread:
    def take() -> None:
        slots.acquire(tenant, wait_limit=5)
        taken.append(tenant)

    thread = threading.Thread(target=take)
    thread.start()
    return thread


def wait_for_waiters(slots: FairSlots, count: int) -> None:
    deadline = time.monotonic() + 5
    while slots.waiting() < count:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_one_tenant_holds_at_most_all_slots_but_one() -> None:
    slots = FairSlots(3, max_waiting_per_tenant=4)
    slots.acquire("alice", wait_limit=SHORT)
    slots.acquire("alice", wait_limit=SHORT)

    with pytest.raises(Unavailable):
        slots.acquire("alice", wait_limit=SHORT)
    slots.acquire("bob", wait_limit=SHORT)

    assert (slots.held("alice"), slots.held("bob")) == (2, 1)


def test_with_two_slots_each_tenant_holds_one() -> None:
    slots = FairSlots(2, max_waiting_per_tenant=4)
    slots.acquire("alice", wait_limit=SHORT)

    with pytest.raises(Unavailable):
        slots.acquire("alice", wait_limit=SHORT)
    slots.acquire("bob", wait_limit=SHORT)


def test_a_single_slot_is_shared_by_taking_turns() -> None:
    slots = FairSlots(1, max_waiting_per_tenant=4)
    slots.acquire("alice", wait_limit=SHORT)

    with pytest.raises(Unavailable):
        slots.acquire("bob", wait_limit=SHORT)
    slots.release("alice")
    slots.acquire("bob", wait_limit=SHORT)


def test_a_freed_slot_goes_to_a_newcomer_before_a_tenant_already_served() -> None:
    slots = FairSlots(2, max_waiting_per_tenant=4)
    slots.acquire("alice", wait_limit=SHORT)
    slots.acquire("carol", wait_limit=SHORT)
    taken: list[str] = []
    alices_next = take_in_background(slots, "alice", taken)
    wait_for_waiters(slots, 1)
    bobs = take_in_background(slots, "bob", taken)
    wait_for_waiters(slots, 2)

    slots.release("alice")
    bobs.join(timeout=5)
    slots.release("carol")
    alices_next.join(timeout=5)

    assert taken == ["bob", "alice"]


def test_a_tenant_with_its_most_checks_waiting_is_refused_at_once() -> None:
    slots = FairSlots(2, max_waiting_per_tenant=1)
    slots.acquire("alice", wait_limit=SHORT)
    taken: list[str] = []
    waiter = take_in_background(slots, "alice", taken)
    wait_for_waiters(slots, 1)

    started = time.monotonic()
    with pytest.raises(ResourceExhausted, match="already waiting"):
        slots.acquire("alice", wait_limit=5)
    refused_after = time.monotonic() - started
    slots.release("alice")
    waiter.join(timeout=5)

    assert refused_after < 1
    assert taken == ["alice"]


def test_a_wait_that_times_out_leaves_no_trace() -> None:
    slots = FairSlots(2, max_waiting_per_tenant=1)
    slots.acquire("alice", wait_limit=SHORT)

    with pytest.raises(Unavailable, match="busy"):
        slots.acquire("alice", wait_limit=SHORT)
    slots.release("alice")
    slots.acquire("alice", wait_limit=SHORT)

    assert slots.held("alice") == 1


def test_an_uncapped_wait_is_not_refused_for_the_tenants_backlog() -> None:
    slots = FairSlots(2, max_waiting_per_tenant=1)
    slots.acquire("alice", wait_limit=SHORT)
    taken: list[str] = []
    waiter = take_in_background(slots, "alice", taken)
    wait_for_waiters(slots, 1)

    with pytest.raises(Unavailable):
        slots.acquire("alice", wait_limit=SHORT, capped=False)
    slots.release("alice")
    waiter.join(timeout=5)

    assert taken == ["alice"]
