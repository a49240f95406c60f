"""A worker's counters and latencies, served by ``GET /metrics`` (Prometheus text, the
``prometheus_client`` library's exposition) and ``GET /metrics/json``.

Kept deliberately small: counters by name (accepted/rejected per reason, lists sent),
their rates over the last ~10 seconds, a bounded reservoir of recent latencies (the JSON
percentiles) and cumulative latency buckets (the Prometheus histograms).
"""
from __future__ import annotations

import bisect
import collections
import itertools
import math
import re
import threading
import time

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

#: The Content-Type of :func:`prometheus_text`'s answer.
PROMETHEUS_TYPE = CONTENT_TYPE_LATEST
#: Upper bounds (ms) of the latency histograms' buckets.
BUCKETS_MS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


class Metrics:
    """One process's counters, rates and latency reservoirs (the worker holds one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: collections.Counter = collections.Counter()
        self._latencies: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=10_000))
        self._started = time.time()
        self._buckets: dict[str, list] = {}
        #: (time, counters) samples taken every second by :meth:`tick`, for rates over ~10 s.
        self._samples: collections.deque = collections.deque(maxlen=11)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def observe_ms(self, path: str, ms: float) -> None:
        self._latencies[path].append(ms)
        counts = self._buckets.get(path)
        if counts is None:
            counts = self._buckets[path] = [0] * (len(BUCKETS_MS) + 1) + [0.0]  # per bucket, +Inf, then the sum
        counts[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        counts[-1] += ms

    def histograms(self) -> dict[str, tuple[list[tuple[float, int]], float]]:
        """path -> (cumulative ``[(upper bound in ms, count)]`` ending at +inf, sum in ms)."""
        out = {}
        for path, counts in list(self._buckets.items()):
            cumulative = list(itertools.accumulate(counts[:-1]))
            out[path] = (list(zip([*BUCKETS_MS, math.inf], cumulative, strict=True)), counts[-1])
        return out

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


#: Counter names with parts that are labels: ``rejected.<topic>.<reason>``, ``collect.rejected.<reason>``, ...
_LABELLED = ((re.compile(r"rejected\.(?P<topic>[^.]+)\.(?P<reason>.+)"), "rejected"),
             (re.compile(r"collect\.rejected\.(?P<reason>.+)"), "collect_rejected"),
             (re.compile(r"raw_logs\.forwarded\.(?P<topic>.+)"), "raw_logs_forwarded"),
             (re.compile(r"events_seen\.(?P<event>.+)"), "events_seen"),
             (re.compile(r"dead_letters_seen\.(?P<reason>.+)"), "dead_letters_seen"),
             (re.compile(r"invalid\.(?P<reason>.+)"), "invalid"),
             (re.compile(r"rerank\.rejected\.(?P<reason>.+)"), "rerank_rejected"))


def prometheus_text(metrics: Metrics, gauges: dict[str, tuple[str, list[tuple[dict, float]]]] | None = None,
                    prefix: str = "recsys") -> bytes:
    """``metrics`` in the Prometheus text format: every counter (``<prefix>_<name>_total``,
    the variable parts of a name as labels), every latency as a histogram in seconds
    (``<prefix>_<path>_seconds``), and ``gauges``: name -> (help, [(labels, value)])."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics, gauges or {}, prefix))
    return generate_latest(registry)


#: Latency paths as histograms: (metric name, help).
_HISTOGRAMS = {"ratings": ("inside_worker", "time inside the worker per rating (read to list staged)"),
               "ratings.end_to_worker": ("produce_to_worker", "from the rating's produce time to its list"),
               "list": ("produce_to_list", "from an input's produce time to its list's emission"),
               "frontend": ("produce_to_frontend", "from an input's produce time to its list reaching recsys web")}


def _family_of(counter: str) -> tuple[str, dict[str, str]]:
    """A counter's metric name and labels (``rejected.ratings.bad_json`` ->
    ``rejected``, ``{topic: ratings, reason: bad_json}``)."""
    for pattern, family in _LABELLED:
        match = pattern.fullmatch(counter)
        if match:
            return family, match.groupdict()
    return _name(counter), {}


def _name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text)


class _Collector:
    def __init__(self, metrics: Metrics, gauges: dict, prefix: str) -> None:
        self.metrics, self.gauges, self.prefix = metrics, gauges, prefix

    def collect(self):
        with self.metrics._lock:
            counters = dict(self.metrics.counters)
        families: dict[str, CounterMetricFamily] = {}
        for name, value in sorted(counters.items()):
            family, labels = _family_of(name)
            full = f"{self.prefix}_{family}"
            if full not in families:
                families[full] = CounterMetricFamily(full, f"{name.split('.')[0]} counter", labels=sorted(labels))
            families[full].add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()
        for path, (buckets, total_ms) in self.metrics.histograms().items():
            name, text = _HISTOGRAMS.get(path, (_name(path), f"latency of {path}"))
            yield HistogramMetricFamily(
                f"{self.prefix}_{name}_seconds", text,
                buckets=[("+Inf" if math.isinf(b) else repr(b / 1000.0), n) for b, n in buckets],
                sum_value=total_ms / 1000.0)
        for name, (text, samples) in self.gauges.items():
            labels = sorted({k for sample_labels, _v in samples for k in sample_labels})
            gauge = GaugeMetricFamily(f"{self.prefix}_{name}", text, labels=labels)
            for sample_labels, value in samples:
                gauge.add_metric([str(sample_labels.get(k, "")) for k in labels], value)
            yield gauge


def prefers_json(accept: str) -> bool:
    """Whether an ``Accept`` header ranks JSON above Prometheus text (plain text, or anything)."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        q = next((float(p[2:]) for p in params if p.startswith("q=") and _is_number(p[2:])), 1.0)
        best[kind.lower()] = max(q, best.get(kind.lower(), 0.0))
    text = max(best.get("text/plain", 0.0), best.get("application/openmetrics-text", 0.0), best.get("*/*", 0.0))
    return best.get("application/json", 0.0) > text


def wants_json(path: str, accept: str) -> bool:
    """Whether a metrics request asks for JSON: its path ends in ``/json`` (``/metrics/json``)
    or its ``Accept`` prefers JSON (:func:`prefers_json`)."""
    return path.rstrip("/").endswith("/json") or prefers_json(accept)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
