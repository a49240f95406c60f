"""Topic -> browser delay of ``recsys web``: how long after the worker emits a list the
page's Server-Sent Events stream delivers it (and after the rating was produced).

A fresh local broker (``--engine``), one worker with a small model, one ``recsys web``;
``--watchers`` SSE clients (aiohttp, reading ``/api/stream/{user}`` exactly as a
browser's EventSource does) each watch one user; ``--rate`` ratings/s for those users
for ``--seconds`` s. Every list must arrive on its user's stream (counted); the delays
are percentiles of ``received - emitted_at`` (frontend path: topic, web consumer, SSE)
and ``received - produced_at`` (the whole pipeline). The last stdout line is JSON.

    .venv/bin/python benchmarks/web_bench.py                       # ~1 minute
    .venv/bin/python benchmarks/web_bench.py --engine kafka --rate 200 --watchers 50
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
from benchmarks.realtime_bench import paced_run
from harness.demo import percentile_ms
from harness.failover import model
from harness.local import LocalDeployment


async def watch(url: str, user: str, got: list, ready: asyncio.Event, stop: asyncio.Event) -> None:
    """Read one user's SSE stream; every ``list`` event's ``(arrival, emitted_at, produced_at)`` is appended."""
    from aiohttp import ClientSession, ClientTimeout

    async with (ClientSession(timeout=ClientTimeout(total=None, sock_read=None)) as http,
                http.get(f"{url}/api/stream/{user}") as resp):
        event, data = None, None
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and event:
                if event == "current":
                    ready.set()
                elif event == "list":  # its times only: lists kept whole would make this client's collector stop it
                    rec = json.loads(data)
                    got.append((time.time(), rec["emitted_at"], rec.get("produced_at")))
                event, data = None, None
            if stop.is_set():
                return


async def run(conf, web_url: str, users: list[str], items: list[str], rate: float, seconds: float) -> dict:
    got = {u: [] for u in users}
    readies = [asyncio.Event() for _ in users]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(watch(web_url, u, got[u], r, stop)) for u, r in zip(users, readies, strict=False)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    msgs = [to_message(Rating(user=users[n % len(users)], item=items[n % len(items)], rating=4.0, ts=1.0 + n))
            for n in range(int(rate * seconds))]
    sent, _took = await paced_run(conf, msgs, rate, seconds)
    deadline = time.monotonic() + 30
    while sum(len(v) for v in got.values()) < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    arrivals = [arrival for v in got.values() for arrival in v]
    front = [(at - emitted) * 1000 for at, emitted, _produced in arrivals]
    whole = [(at - produced) * 1000 for at, _emitted, produced in arrivals if produced]
    return {"sent": sent, "delivered": len(arrivals), "watchers": len(users), "rate": rate, "seconds": seconds,
            "emitted_to_browser_p50_ms": percentile_ms(front, 50), "emitted_to_browser_p99_ms": percentile_ms(front, 99),
            "produced_to_browser_p50_ms": percentile_ms(whole, 50), "produced_to_browser_p99_ms": percentile_ms(whole, 99)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("tansu", "kafka"), default="tansu")
    p.add_argument("--rate", type=float, default=100.0, help="ratings per second")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--watchers", type=int, default=20, help="SSE clients, one user each")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="recsys-webbench-"))
    try:
        with LocalDeployment(tmp, broker=args.engine, base=load_settings(), RECSYS_LOG_EVERY_S=10) as d:
            worker = d.start_worker()
            neighbours = model(200)
            d.publish_model(neighbours, "web-bench")
            web = d.start_web(worker)
            web.wait_ready()
            result = asyncio.run(run(d.conf, web.url, [f"w{n}" for n in range(args.watchers)], sorted(neighbours),
                                     args.rate, args.seconds))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["engine"] = args.engine
    print(f"{result['delivered']:,} of {result['sent']:,} lists reached their SSE stream; topic -> browser p50 "
          f"{result['emitted_to_browser_p50_ms']} ms, p99 {result['emitted_to_browser_p99_ms']} ms; produce -> "
          f"browser p50 {result['produced_to_browser_p50_ms']} ms, p99 {result['produced_to_browser_p99_ms']} ms")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
