"""Process-local counters and latency percentiles, served by ``GET /metrics``.

Kept deliberately small: counters by name (accepted/rejected per reason, lists sent)
and a bounded reservoir of recent worker-side latencies per path.
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
_rate_marks: dict[str, tuple[float, int]] = {}


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


def rate(name: str) -> float:
    """Events per second of counter ``name`` since the previous call (or start)."""
    now, total = time.time(), counters[name]
    then, before = _rate_marks.get(name, (_started, 0))
    _rate_marks[name] = (now, total)
    return (total - before) / max(now - then, 1e-9)


def snapshot() -> dict:
    with _lock:
        data = dict(counters)
    return {
        "uptime_s": round(time.time() - _started, 1),
        "counters": data,
        "latency": {path: percentiles(path) for path in list(_latencies)},
    }


def reset() -> None:
    with _lock:
        counters.clear()
        _latencies.clear()
        _rate_marks.clear()
