"""The in-flight byte budget shared by the collector's receivers: holds, growth, waiting in order, timeouts."""

from __future__ import annotations

import asyncio

from otel_datasink.collector.server import ByteBudget


def test_holds_grow_and_shrink_within_the_limit_and_give_everything_back():
    budget = ByteBudget(100)
    first = budget.hold(60)
    assert budget.hold(50) is None  # refused at once: 110 > 100
    assert first.grow_to(90) and not first.grow_to(101)
    first.shrink_to(10)
    second = budget.hold(90)
    assert budget.used == 100
    first.release()
    second.release()
    second.release()  # twice gives nothing back twice
    assert budget.used == 0


def test_waiters_are_served_in_order_and_a_timed_out_one_holds_nothing():
    async def scenario() -> tuple[list[str], int, int]:
        budget = ByteBudget(100)
        held = budget.hold(100)
        order: list[str] = []

        async def wait(name: str, size: int, timeout: float) -> None:
            hold = await budget.wait_hold(size, timeout)
            order.append(name if hold is not None else f"{name} timed out")
            if hold is not None:
                await asyncio.sleep(0.01)
                hold.release()

        tasks = [
            asyncio.ensure_future(wait("big", 80, 1.0)),
            asyncio.ensure_future(wait("small", 10, 1.0)),
            asyncio.ensure_future(wait("late", 50, 0.05)),
        ]
        await asyncio.sleep(0.02)
        during = budget.hold(0) is not None and budget.hold(1) is None  # an empty body never waits; others queue
        await asyncio.sleep(0.1)
        held.release()
        await asyncio.gather(*tasks)
        return order, budget.used, during

    order, used, during = asyncio.run(scenario())

    assert order == ["late timed out", "big", "small"]
    assert used == 0
    assert during


def test_a_cancelled_waiter_gives_back_what_it_was_granted():
    async def scenario() -> int:
        budget = ByteBudget(100)
        held = budget.hold(100)
        task = asyncio.ensure_future(budget.wait_hold(50, 5.0))
        await asyncio.sleep(0.01)
        held.release()  # grants the waiter its 50 bytes...
        task.cancel()  # ...but it is cancelled before it runs again
        try:
            await task
        except asyncio.CancelledError:
            pass
        return budget.used

    assert asyncio.run(scenario()) == 0
