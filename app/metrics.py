"""Process-local counters and latency percentiles, served by ``GET /metrics``.

Kept deliberately small: counters by name (accepted/rejected per reason, lists sent),
their rates over the last ~10 seconds, and a bounded reservoir of recent latencies.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np

_lock = threading.Lock()
counters: collections.Counter = collections.Counter()
_latencies: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=10_000))
_started = time.time()
#: (time, counters) samples taken every second by :func:`tick`, for rates over ~10 s.
_samples: collections.deque = collections.deque(maxlen=11)


def count(name: str, n: int = 1) -> None:
    with _lock:
        counters[name] += n


def observe_ms(path: str, ms: float) -> None:
    _latencies[path].append(ms)


def percentiles(path: str) -> dict[str, float]:
    values = np.fromiter(_latencies[path], dtype=float) if _latencies[path] else None
    if values is None:
        return {}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3),
            "samples": int(values.size)}


def tick() -> None:
    """Take a sample of the counters (called every second by a worker timer)."""
    with _lock:
        _samples.append((time.time(), dict(counters)))


def rates() -> dict[str, float]:
    """Per-second rate of every counter over the last ~10 seconds of samples."""
    if len(_samples) < 2:
        return {}
    (t0, first), (t1, last) = _samples[0], _samples[-1]
    span = max(t1 - t0, 1e-9)
    return {name: round((value - first.get(name, 0)) / span, 2) for name, value in last.items()}


def snapshot() -> dict:
    with _lock:
        data = dict(counters)
    return {
        "uptime_s": round(time.time() - _started, 1),
        "counters": data,
        "per_second": rates(),
        "latency": {path: percentiles(path) for path in list(_latencies)},
    }
