"""Latency of ``POST /rerank/`` through the API: personalised order of 200 candidates at
100 requests/s.

A fresh local broker (``--engine``), ``--workers`` workers sharing the partitions (with
two, about half the requests reach a worker that forwards them to the user's owner, as a
load balancer in front of them would), a model of ``--items`` items with co-occurrence
lists and counts; ``--users`` users each rate 5 items first (their lists are out before
the clock starts). Then ``--rate`` requests/s for ``--seconds`` s, each for a random user
and ``--candidates`` random items (a search result), sent as a frontend would (aiohttp,
one connection pool); every answer must hold every candidate once. Prints p50/p99 ms of
the answers and the JSON last.

    .venv/bin/python benchmarks/rerank_bench.py                     # ~1 minute
    .venv/bin/python benchmarks/rerank_bench.py --workers 2 --engine kafka
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.settings import load_settings
from benchmarks.realtime_bench import produce_fast, read_all
from harness.demo import percentile_ms
from harness.failover import model
from harness.local import LocalDeployment


async def requests_at_rate(urls: list[str], users: list[str], items: list[str], args) -> dict:
    """``args.rate`` rerank requests/s for ``args.seconds`` s, round-robin over ``urls``."""
    from aiohttp import ClientSession, ClientTimeout

    rng = random.Random(7)
    latencies, bad, tasks = [], 0, []

    async def one(http, url: str, body: dict) -> None:
        nonlocal bad
        started = time.perf_counter()
        async with http.post(f"{url}/rerank/", json=body) as resp:
            answer = await resp.json()
        latencies.append((time.perf_counter() - started) * 1000.0)
        if resp.status != 200 or sorted(q for q, _s in answer["items"]) != sorted(body["items"]):
            bad += 1

    async with ClientSession(timeout=ClientTimeout(total=30)) as http:
        n = int(args.rate * args.seconds)
        start = time.perf_counter()
        for k in range(n):
            ahead = k / args.rate - (time.perf_counter() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
            body = {"user": rng.choice(users), "items": rng.sample(items, args.candidates)}
            tasks.append(asyncio.create_task(one(http, urls[k % len(urls)], body)))
        await asyncio.gather(*tasks)
        achieved = n / (time.perf_counter() - start)
    return {"requests": n, "bad_answers": bad, "achieved_rate": round(achieved, 1),
            "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99),
            "max_ms": round(max(latencies), 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("tansu", "kafka"), default="tansu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rate", type=float, default=100.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--candidates", type=int, default=200, help="items per request")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--users", type=int, default=500)
    args = p.parse_args(argv)
    if args.candidates > args.items:
        p.error("--candidates must not exceed --items")
    tmp = Path(tempfile.mkdtemp(prefix="recsys-rerankbench-"))
    rng = random.Random(3)
    try:
        with LocalDeployment(tmp, broker=args.engine, base=load_settings(), RECSYS_LOG_EVERY_S=10,
                             RECSYS_RANKER="default") as d:
            workers = [d.start_worker(ready=False) for _ in range(args.workers)]
            neighbours = model(args.items)
            d.publish_model(neighbours, "rerank-bench", related=neighbours,
                            counts={q: rng.randint(1, 500) for q in neighbours})
            d.wait_for_split(workers)
            items = sorted(neighbours)
            users = [f"u{n}" for n in range(args.users)]
            ratings = [(u.encode(), json.dumps({"user": u, "item": q, "rating": 4, "ts": 1_000_000 + j}).encode())
                       for u in users for j, q in enumerate(rng.sample(items, 5))]
            asyncio.run(produce_fast(d.conf, ratings))
            lists = asyncio.run(read_all(d.conf, d.conf.topics.recommendations, len(ratings), timeout=300))
            if len(lists) < len(ratings):
                raise RuntimeError(f"{len(lists)} of {len(ratings)} lists arrived")
            result = asyncio.run(requests_at_rate([w.url for w in workers], users, items, args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.update(engine=args.engine, workers=args.workers, candidates=args.candidates, rate=args.rate)
    print(f"{result['requests']:,} rerank requests of {args.candidates} candidates at {result['achieved_rate']}/s "
          f"({args.workers} worker(s), {args.engine}): p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
          f"max {result['max_ms']} ms; {result['bad_answers']} bad answers")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
