"""``benchmarks/realtime_bench.py``'s latency reader: what it keeps of each list must not
make its own garbage collector stop it (a stopped reader counts its stop as latency)."""
from __future__ import annotations

import asyncio
import csv
import gc
import json
from types import SimpleNamespace

from benchmarks.realtime_bench import LATENCY_FIELDS, CollectorPauses, fetch_received, write_latency_lists

LIST = {"user": "u1", "items": [[f"i{n}", 0.5] for n in range(20)], "model_version": "v1", "trigger_ts": 1.0,
        "produced_at": 2.0, "emitted_at": 2.01, "worker_ms": 0.4, "because": {"i1": "i9"}, "variant": "default"}


class OneFetch:
    """A consumer whose one ``getmany`` returns ``n`` lists on partition 3."""

    def __init__(self, n: int) -> None:
        self.records = [SimpleNamespace(value=json.dumps(LIST).encode(), timestamp=2_020, partition=3)
                        for _ in range(n)]

    async def getmany(self, timeout_ms, max_records=None):
        return {"tp": self.records}


def test_the_latency_reader_keeps_each_lists_times_and_nothing_the_collector_walks():
    kept = asyncio.run(fetch_received(OneFetch(3), timeout_ms=1, keep=LATENCY_FIELDS))
    assert [sorted(r) for r in kept] == [sorted([*LATENCY_FIELDS, "_received", "_sent", "_partition"])] * 3
    assert kept[0]["produced_at"] == 2.0 and kept[0]["_sent"] == 2.02 and kept[0]["_partition"] == 3
    assert not any(gc.is_tracked(r) for r in kept)  # CPython leaves dicts of scalars untracked (3.11)
    whole = asyncio.run(fetch_received(OneFetch(1), timeout_ms=1))  # the throughput phase reads whole lists
    assert whole[0]["items"] == LIST["items"] and gc.is_tracked(whole[0])


def test_collector_pauses_are_counted_while_in_use_and_only_then():
    with CollectorPauses() as pauses:
        assert gc.get_freeze_count() > 0
        gc.collect()
    gc.collect()
    assert pauses.summary()["client_gc_pauses"] == 1 and gc.get_freeze_count() == 0


def test_every_lists_times_are_written_in_production_order(tmp_path):
    lists = [{"produced_at": 2.25, "emitted_at": 2.5, "_sent": 2.5, "_received": 2.75, "worker_ms": 0.5, "_partition": 1,
              "user": "u,2"},
             {"produced_at": 1.0, "emitted_at": 1.5, "_sent": 1.5, "_received": 1.75, "worker_ms": 0.25, "_partition": 0,
              "user": "u1"}]
    write_latency_lists(tmp_path / "t.csv", lists)
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [(float(r["produced_at"]), float(r["received_at"]), r["user"]) for r in rows] == [(1.0, 1.75, "u1"),
                                                                                             (2.25, 2.75, "u,2")]
