"""A worker's counters and latency percentiles, served by ``GET /metrics/``.

Kept deliberately small: counters by name (accepted/rejected per reason, lists sent),
their rates over the last ~10 seconds, and a bounded reservoir of recent latencies.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np


class Metrics:
    """One process's counters, rates and latency reservoirs (the worker holds one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: collections.Counter = collections.Counter()
        self._latencies: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=10_000))
        self._started = time.time()
        #: (time, counters) samples taken every second by :meth:`tick`, for rates over ~10 s.
        self._samples: collections.deque = collections.deque(maxlen=11)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def observe_ms(self, path: str, ms: float) -> None:
        self._latencies[path].append(ms)

    def percentiles(self, path: str) -> dict[str, float]:
        if not self._latencies[path]:
            return {}
        values = np.fromiter(self._latencies[path], dtype=float)
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3),
                "samples": int(values.size)}

    def tick(self) -> None:
        """Take a sample of the counters (called every second by a worker timer)."""
        with self._lock:
            self._samples.append((time.time(), dict(self.counters)))

    def rates(self) -> dict[str, float]:
        """Per-second rate of every counter over the last ~10 seconds of samples."""
        if len(self._samples) < 2:
            return {}
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        span = max(t1 - t0, 1e-9)
        return {name: round((value - first.get(name, 0)) / span, 2) for name, value in last.items()}

    def snapshot(self) -> dict:
        with self._lock:
            data = dict(self.counters)
        return {
            "uptime_s": round(time.time() - self._started, 1),
            "counters": data,
            "per_second": self.rates(),
            "latency": {path: self.percentiles(path) for path in list(self._latencies)},
        }
