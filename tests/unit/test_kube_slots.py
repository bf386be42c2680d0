"""kube.Slots: at most `size` requests in flight; the others go in priority order (an older ScaledApp's
reconcile before a newer one's), then in arrival order; a cancelled waiter never leaks a slot."""

from __future__ import annotations

import asyncio

from scaledapp.kube import RECONCILE, URGENT, Slots, current_priority, reconcile_priority


def test_waiting_requests_go_by_priority_then_arrival() -> None:
    async def run() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        gate = asyncio.Event()

        async def request(label: str, priority: tuple[int, str, str]) -> None:
            async with slots.slot(priority):
                order.append(label)
                await gate.wait()

        first = asyncio.create_task(request("first", (RECONCILE, "b", "x")))
        await asyncio.sleep(0)  # it holds the only slot
        waiting = [asyncio.create_task(request(label, priority)) for label, priority in [
            ("newer", (RECONCILE, "c", "x")), ("older", (RECONCILE, "a", "x")),
            ("older-2", (RECONCILE, "a", "x")), ("guard", (URGENT, "", ""))]]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, *waiting)
        assert slots.busy == 0
        return order

    assert asyncio.run(run()) == ["first", "guard", "older", "older-2", "newer"]


def test_a_cancelled_waiter_does_not_keep_a_slot() -> None:
    async def run() -> int:
        slots = Slots(1)
        await slots.acquire((URGENT, "", ""))
        waiter = asyncio.create_task(slots.acquire((URGENT, "", "")))
        await asyncio.sleep(0)
        slots.release()  # handed to the waiter...
        waiter.cancel()  # ...which is cancelled before it runs
        await asyncio.gather(waiter, return_exceptions=True)
        cancelled_while_waiting = asyncio.create_task(slots.acquire((URGENT, "", "")))
        await asyncio.sleep(0)
        assert slots.busy == 1 or cancelled_while_waiting.done()
        await asyncio.wait_for(cancelled_while_waiting, 1)  # the slot came back and was handed on
        slots.release()
        return slots.busy

    assert asyncio.run(run()) == 0


def test_a_reconcile_and_the_tasks_it_starts_carry_its_scaledapps_place() -> None:
    owner = {"metadata": {"name": "shop", "namespace": "ns", "creationTimestamp": "2026-11-30T18:00:00Z"}}

    async def inner() -> tuple[int, str, str]:
        return current_priority()

    async def run() -> tuple[tuple[int, str, str], tuple[int, str, str]]:
        with reconcile_priority(owner):
            started = await asyncio.gather(inner())
        return started[0], current_priority()

    inside, after = asyncio.run(run())
    assert inside == (RECONCILE, "2026-11-30T18:00:00Z/ns", "shop")
    assert after == (URGENT, "", "")


def test_reconciles_under_way_are_bounded_and_the_oldest_scaledapp_goes_first() -> None:
    from scaledapp.kube import Kube

    def owner(name: str, created: str) -> dict[str, object]:
        return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created}}

    async def run() -> list[str]:
        kube = Kube(client=object())  # type: ignore[arg-type]
        kube.reconciles = Slots(1)
        order: list[str] = []
        gate = asyncio.Event()

        async def reconcile(name: str, created: str) -> None:
            async with kube.reconciling(owner(name, created)):
                order.append(name)
                await gate.wait()

        first = asyncio.create_task(reconcile("first", "2026-11-30T18:00:05Z"))
        await asyncio.sleep(0)
        later = [asyncio.create_task(reconcile(n, t)) for n, t in [("newest", "2026-11-30T18:00:09Z"),
                                                                    ("older", "2026-11-30T18:00:01Z")]]
        await asyncio.sleep(0)
        assert order == ["first"]  # the others wait for the one slot
        gate.set()
        await asyncio.gather(first, *later)
        return order

    assert asyncio.run(run()) == ["first", "older", "newest"]
