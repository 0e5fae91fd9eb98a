"""The fair share of the server's slots (dnn.serve.slots), on an event loop without HTTP: a client alone may use
every slot; once another waits, the first gets no more than its share and the freed slot goes to the one holding
fewest; a wait is bounded and a waiter that gives up leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from dnn.serve.slots import FairSlots, Full


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_one_client_alone_may_use_every_slot_and_no_more():
    async def go():
        slots = FairSlots(4)
        for _ in range(4):
            await slots.acquire("a", wait_s=5)
        with pytest.raises(Full, match="limit 4; this client has 4"):
            await slots.acquire("a", wait_s=5)  # at once: nobody else is waiting
        assert slots.in_use == 4 and slots.held["a"] == 4 and not slots.waiting

    run(go())


def test_a_flooding_client_keeps_its_share_once_another_waits_and_the_freed_slot_goes_to_the_other():
    async def go():
        slots = FairSlots(4)
        for _ in range(4):
            await slots.acquire("flood", wait_s=5)
        normal = asyncio.create_task(slots.acquire("normal", wait_s=5))
        await asyncio.sleep(0)
        assert not normal.done() and len(slots.waiting) == 1  # waits: it holds less than its share (2)
        with pytest.raises(Full, match="others are waiting"):
            await slots.acquire("flood", wait_s=5)  # holds 4 ≥ its share of 2 while another waits
        slots.release("flood")
        await asyncio.wait_for(normal, 1)  # the freed slot went to the waiting client, not to the flood
        assert slots.held == {"flood": 3, "normal": 1} and slots.in_use == 4
        with pytest.raises(Full):
            await slots.acquire("flood", wait_s=5)  # still over its share
        second = asyncio.create_task(slots.acquire("normal", wait_s=5))  # 1 < its share of 2: waits
        await asyncio.sleep(0)
        slots.release("flood")
        await asyncio.wait_for(second, 1)
        assert slots.held == {"flood": 2, "normal": 2}

    run(go())


def test_a_freed_slot_goes_to_the_waiter_holding_fewest_then_the_longest_waiting():
    async def go():
        slots = FairSlots(3)
        for client in ("a", "a", "b"):
            await slots.acquire(client, wait_s=5)
        order = []

        async def wait(client):
            await slots.acquire(client, wait_s=5)
            order.append(client)

        c1 = asyncio.create_task(wait("c"))
        await asyncio.sleep(0)
        d1 = asyncio.create_task(wait("d"))
        await asyncio.sleep(0)
        slots.release("a")
        slots.release("a")
        await asyncio.gather(c1, d1)
        assert order == ["c", "d"] and slots.held == {"b": 1, "c": 1, "d": 1}

    run(go())


def test_a_wait_is_bounded_and_a_waiter_that_gives_up_leaves_no_trace():
    async def go():
        slots = FairSlots(1)
        await slots.acquire("a", wait_s=5)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(Full, match="every slot stayed busy for 0.2 s"):
            await slots.acquire("b", wait_s=0.2)
        assert 0.15 <= loop.time() - start < 2 and not slots.waiting and "b" not in slots.held
        cancelled = asyncio.create_task(slots.acquire("c", wait_s=5))
        await asyncio.sleep(0)
        cancelled.cancel()  # the request went away
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert not slots.waiting
        slots.release("a")
        assert slots.in_use == 0 and not slots.held

    run(go())


def test_many_clients_each_get_at_least_one_slot_in_turn():
    async def go():
        slots = FairSlots(2)
        await slots.acquire("x", wait_s=5)
        await slots.acquire("x", wait_s=5)
        waiters = [asyncio.create_task(slots.acquire(f"c{i}", wait_s=5)) for i in range(5)]
        await asyncio.sleep(0)
        assert slots.share("x") == 1 and len(slots.waiting) == 5
        for holder in ("x", "x", "c0", "c1", "c2"):
            slots.release(holder)
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*waiters), 1)
        assert slots.held == {"c3": 1, "c4": 1} and slots.in_use == 2

    run(go())
