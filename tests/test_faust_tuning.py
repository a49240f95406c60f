"""The fetch-loop fast path keeps mode's ``wait_first`` semantics (no broker needed)."""
from __future__ import annotations

import asyncio

import mode
import pytest
from mode.utils.locks import Event

from app import faust_tuning
from app.app import app


class FakeConsumer(mode.Service):
    """Just what the fetch loop's call touches: a Service with ``suspend_flow``."""

    def __post_init__(self) -> None:
        self.suspend_flow = Event()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_app_uses_the_patched_wait_first_and_the_quiet_monitor():
    from faust.transport.consumer import Consumer

    assert Consumer.wait_first is faust_tuning._wait_first
    assert isinstance(app.monitor, faust_tuning.QuietMonitor)
    assert app.monitor.on_stream_event_in(None, 0, None, None) is None
    assert "messages_received_total" in app.monitor.asdict()  # the rest of the Monitor still works


def test_a_delivery_that_finishes_at_once_takes_the_fast_path(monkeypatch):
    async def original(*args, **kwargs):
        raise AssertionError("fell back to mode's wait_first")

    monkeypatch.setattr(faust_tuning, "_original_wait_first", original)
    delivered = []

    async def deliver():
        delivered.append("m1")
        return "ok"

    async def main():
        consumer = FakeConsumer()
        return await faust_tuning._wait_first(consumer, deliver(), consumer.suspend_flow.wait())

    result = run(main())
    assert delivered == ["m1"]
    assert result.results == ["ok"] and not result.stopped


def test_a_blocked_delivery_still_finishes():
    async def main():
        consumer = FakeConsumer()
        gate = asyncio.Event()

        async def deliver():
            await gate.wait()
            return "late"

        asyncio.get_running_loop().call_later(0.05, gate.set)
        return await faust_tuning._wait_first(consumer, deliver(), consumer.suspend_flow.wait())

    assert run(main()).results == ["late"]


def test_suspending_the_flow_interrupts_a_blocked_delivery_as_before():
    """A rebalance (suspend_flow set) must not wait for a delivery blocked on a full buffer."""

    async def main():
        consumer = FakeConsumer()
        seen = []

        async def deliver():
            seen.append("started")
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        loop = asyncio.get_running_loop()
        loop.call_later(0.05, consumer.suspend_flow.set)
        result = await faust_tuning._wait_first(consumer, deliver(), consumer.suspend_flow.wait())
        await asyncio.sleep(0)  # let the cancellation land
        return seen, result

    seen, result = run(main())
    assert seen == ["started", "cancelled"]  # the blocked delivery was given up, like mode's own
    assert result.results == [True] and not result.stopped  # suspend_flow.wait() won


@pytest.mark.parametrize("suspended", [True, False])
def test_other_calls_use_mode_unchanged(monkeypatch, suspended):
    calls = []
    original = faust_tuning._original_wait_first

    async def spy(*args, **kwargs):
        calls.append(args)
        return await original(*args, **kwargs)

    monkeypatch.setattr(faust_tuning, "_original_wait_first", spy)

    async def main():
        consumer = FakeConsumer()
        if suspended:  # flow already suspended: the original path, even for the fetch loop's call
            consumer.suspend_flow.set()
            return await faust_tuning._wait_first(consumer, asyncio.sleep(0), consumer.suspend_flow.wait())
        other = Event()
        other.set()
        return await faust_tuning._wait_first(consumer, asyncio.sleep(0), other)

    run(main())
    assert len(calls) == 1
