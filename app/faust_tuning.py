"""Two per-message costs of faust-streaming 0.15 removed (any broker, not only Tansu).

Measured with ``benchmarks/realtime_bench.py`` (one worker, 2 cores, 40,000 ratings):
the Monitor +7% (2,375 -> 2,551 ratings/s), both together 2,375 -> ~2,700-2,850;
cProfile showed both in every rating's path. Re-measured with bounded polls
(``Settings.max_poll_records``) and today's scoring, 60,000 ratings: without the fast
path ~2,920/s, without the quiet monitor ~3,240/s, with both ~3,360/s.

1. :class:`QuietMonitor`: Faust's default ``Monitor`` sensor keeps per-message
   statistics (message/event/table/send counters and timings) that only Faust's own
   ``/stats`` pages read. We serve our own counters and latencies (``app/metrics.py``,
   ``GET /metrics/``), so its per-message hooks are no-ops here; the rest of the
   Monitor (commit and end-offset tracking, rebalance timings) stays.
2. :func:`apply` patches ``Consumer.wait_first`` for the one call the fetch loop makes
   per message, ``wait_first(callback(message), suspend_flow.wait())`` (deliver the
   message, unless a rebalance suspends the flow first). mode's ``wait_first`` wraps
   each argument and the service's stopped/crashed events in tasks: four tasks and an
   ``asyncio.wait`` per message. The fast path starts only the delivery as a task and
   gives it one turn of the event loop; if it finished (the usual case: the stream's
   buffer had room, which bounded polls make the rule) that is the result; if not, it
   falls back to the original ``wait_first`` with the same task, so a rebalance still
   interrupts a blocked delivery exactly as before.
"""
from __future__ import annotations

import asyncio

from faust.sensors.monitor import Monitor
from faust.transport.consumer import Consumer
from mode.services import WaitResults

_original_wait_first = Consumer.wait_first


class QuietMonitor(Monitor):
    """Faust's Monitor without its per-message hooks (see the module docstring)."""

    def on_message_in(self, tp, offset, message) -> None:
        pass

    def on_stream_event_in(self, tp, offset, stream, event):
        return None

    def on_stream_event_out(self, tp, offset, stream, event, state=None) -> None:
        pass

    def on_message_out(self, tp, offset, message) -> None:
        pass

    def on_table_get(self, table, key) -> None:
        pass

    def on_table_set(self, table, key, value) -> None:
        pass

    def on_send_initiated(self, producer, topic, message, keysize, valsize):
        return None

    def on_send_completed(self, producer, state, metadata) -> None:
        pass


def _is_suspend_flow_wait(consumer: Consumer, coro) -> bool:
    """True for the not-yet-started coroutine ``consumer.suspend_flow.wait()``."""
    frame = getattr(coro, "cr_frame", None)
    return frame is not None and frame.f_locals.get("self") is consumer.suspend_flow


async def _wait_first(self: Consumer, *coros, timeout=None) -> WaitResults:
    if (len(coros) == 2 and timeout is None and asyncio.iscoroutine(coros[0])
            and _is_suspend_flow_wait(self, coros[1]) and not self.suspend_flow.is_set()):
        delivery = asyncio.ensure_future(coros[0])
        await asyncio.sleep(0)  # one loop turn: the delivery runs its first step
        if delivery.done():
            coros[1].close()  # never started: closing it just avoids a "never awaited" warning
            return WaitResults([coros[0]], [delivery.result()], False)
        coros = (delivery, coros[1])  # blocked: the original path, same task
    return await _original_wait_first(self, *coros, timeout=timeout)


def apply() -> None:
    """Install the fetch-loop fast path (idempotent). The monitor is an App setting."""
    Consumer.wait_first = _wait_first
