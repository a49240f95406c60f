"""Recovery time of a killed worker holding the state of many users, on either engine.

One worker with a published model gets one rating from each of ``--users`` users (100k
by default), so ``user_state`` holds that many users. Then, twice:

1. kill -9 and restart on the same data dir (RocksDB kept; Faust replays only the
   changelog tail past its persisted offsets);
2. kill -9, wipe the data dir, restart (every user's state comes from the changelog).

Recovery time = from the restart to the first list for a probe rating of a user the
worker already knew (Faust processes no stream before its tables are recovered), and
the probe list must reflect that user's earlier rating. The last stdout line is JSON.

    .venv/bin/python benchmarks/recovery_bench.py --engine both          # ~10 minutes
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.records import Rating, to_message
from app.settings import load_settings
from benchmarks.realtime_bench import produce_fast
from broker.clients import KafkaClients
from harness.demo import log, topic_end_offsets
from harness.failover import expected_final_lists, model
from harness.local import LocalDeployment


async def count_lists(conf, want: int, timeout: float) -> int:
    """Messages on ``recommendations`` (end offsets), polled until ``want`` or ``timeout``."""
    deadline, count = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        count = (await topic_end_offsets(conf, [conf.topics.recommendations]))[conf.topics.recommendations]
        if count >= want:
            break
        await asyncio.sleep(1.0)
    return count


async def time_probe(conf, user: str, item: str, ts: float, timeout: float) -> tuple[float, dict]:
    """Send one rating of ``user`` and wait for its list; (seconds, the list)."""
    consumer = await KafkaClients(conf).consumer(conf.topics.recommendations, auto_offset_reset="latest")
    producer = await KafkaClients(conf).producer("latency")
    try:
        await asyncio.sleep(1.0)  # the consumer has its position before the probe is sent
        t0 = time.monotonic()
        key, value = to_message(Rating(user=user, item=item, rating=5.0, ts=ts))
        await producer.send_and_wait(conf.topics.ratings, key=key, value=value)
        while time.monotonic() - t0 < timeout:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.value is None:  # a tombstone (an expired user)
                        continue
                    data = json.loads(record.value)
                    if data["user"] == user and data["trigger_ts"] == ts:
                        return time.monotonic() - t0, data
        raise TimeoutError(f"no list for the probe of {user} in {timeout:.0f} s")
    finally:
        await producer.stop()
        await consumer.stop()


def run_engine(engine: str, args, root: Path, base) -> dict:
    work = root / engine
    with LocalDeployment(work, broker=engine, base=base, partitions=args.partitions,
                         kafka_config={"log.cleaner.min.compaction.lag.ms": 3_600_000}, RECSYS_LOG_EVERY_S=10,
                         RECSYS_SESSION_TIMEOUT_S=10, RECSYS_HEARTBEAT_INTERVAL_S=1) as d:
        conf = d.conf
        worker = d.start_worker()
        neighbours = model(args.items)
        d.publish_model(neighbours, "recovery-v1")
        items = sorted(neighbours)
        messages = [to_message(Rating(user=f"u{n}", item=items[n % len(items)], rating=5.0, ts=1.0 + n))
                    for n in range(args.users)]
        t0 = time.monotonic()
        asyncio.run(produce_fast(conf, messages))
        lists = asyncio.run(count_lists(conf, args.users, timeout=args.timeout))
        fill_s = time.monotonic() - t0
        log(f"[{engine}] {lists:,} lists for {args.users:,} users in {fill_s:.0f} s")
        data_dir = conf.data_dir
        result = {"engine": engine, "users": args.users, "lists": lists, "fill_s": round(fill_s, 1),
                  "data_dir_mb": round(sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file()) / 2**20, 1)}
        time.sleep(3)  # let the last commit and changelog flush happen
        for n, (name, wipe) in enumerate([("restart_on_data_dir_s", False), ("restart_from_changelog_s", True)]):
            worker.kill9()
            if wipe:
                shutil.rmtree(data_dir, ignore_errors=True)
            t_restart = time.monotonic()
            worker = d.restart_worker(worker, f"w1-{name}")
            # u<n> rated items[n] before the kill: the probe's list is right only if that
            # state was recovered (the replay of both ratings in-process says what it is).
            user, before, probe = f"u{n}", items[n % len(items)], items[(n + 7) % len(items)]
            took, data = asyncio.run(time_probe(conf, user, probe, 1e9 + n, timeout=args.timeout))
            total = time.monotonic() - t_restart
            want = expected_final_lists([(user, before, 5.0, 1.0 + n), (user, probe, 5.0, 1e9 + n)], neighbours,
                                        conf)[user]
            result[name] = round(total, 1)
            result[name.replace("_s", "_probe_ok")] = [e[0] for e in data["items"]] == [e[0] for e in want]
            log(f"[{engine}] {name}: {total:.1f} s (probe list in {took:.1f} s after sending)")
        result["probes_ok"] = all(result.get(f"{k}_probe_ok") for k in ("restart_on_data_dir", "restart_from_changelog"))
        return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("tansu", "kafka", "both"), default="both")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--timeout", type=float, default=900.0)
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="recsys-recovery-"))
    try:
        rows = [run_engine(e, args, root, load_settings()) for e in (["tansu", "kafka"] if args.engine == "both" else [args.engine])]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    keys = ["users", "fill_s", "data_dir_mb", "restart_on_data_dir_s", "restart_from_changelog_s",
            "restart_on_data_dir_probe_ok", "restart_from_changelog_probe_ok"]
    print(f"{'measure':<34}" + "".join(f"{r['engine']:>12}" for r in rows))
    for key in keys:
        print(f"{key:<34}" + "".join(f"{r.get(key)!s:>12}" for r in rows))
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
