"""Faust's ``Monitor`` sensor without its per-message statistics hooks.

The default Monitor keeps per-message counters and timings (messages, events, table
gets/sets, sends) that only Faust's own ``/stats`` pages read. We serve our own
counters and latencies (``app/metrics.py``, ``GET /metrics/``), so those hooks are
no-ops here; the rest of the Monitor (commit and end-offset tracking, rebalance
timings) stays. Measured with ``benchmarks/realtime_bench.py``: +4-7% ratings/s for
one worker (docs/RESULTS.md). A hook renamed upstream would silently count again: the
guard (``upstream.py``) checks their signatures.
"""
from __future__ import annotations

from faust.sensors.monitor import Monitor


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
