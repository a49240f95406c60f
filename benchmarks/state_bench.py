"""Bounded state: one worker, many distinct users, with and without ``RECSYS_USER_TTL_DAYS``.

One worker with a published model gets one rating from each of ``--users`` distinct users,
their event times ``--step-s`` apart (so the stream spans users x step seconds of event
time), in chunks paced to ``--rate`` ratings/s. Every ``--sample-s`` it samples the worker's
resident memory (``/proc/<pid>/status``), its data dir's size and the users its store holds
(RocksDB's estimate, ``recsys_user_state_keys``). With a TTL, users quiet for longer than it
(in event time) leave, so the store should stop growing once the stream spans the TTL.
Prints the samples' summary per run, writes a plot (``--plot``), and the LAST line is JSON.

    .venv/bin/python benchmarks/state_bench.py --users 200000 --ttl-days 1 --step-s 2
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
from harness.demo import log
from harness.failover import model
from harness.local import LocalDeployment


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


def expired_users(worker) -> float:
    try:
        text = worker.get("/metrics/json")
    except OSError:
        return float("nan")
    return float(text.get("counters", {}).get("users.expired", 0))


def run(args, root: Path, base, ttl_days: float) -> dict:
    label = f"ttl {ttl_days:g} d" if ttl_days else "no ttl"
    with LocalDeployment(root / label.replace(" ", "-"), broker=args.engine, base=base, partitions=args.partitions,
                         RECSYS_USER_TTL_DAYS=ttl_days, RECSYS_USER_EXPIRY_EVERY_S=args.expiry_every_s,
                         RECSYS_LOG_EVERY_S=10) as d:
        worker = d.start_worker()
        neighbours = model(args.items)
        d.publish_model(neighbours, "state-v1")
        items = sorted(neighbours)
        t0_event, samples, started = 1.7e9 - args.users * args.step_s, [], time.monotonic()
        chunk = max(1, int(args.rate * args.sample_s))
        for lo in range(0, args.users, chunk):
            msgs = [to_message(Rating(user=f"u{n}", item=items[n % len(items)], rating=5.0,
                                      ts=t0_event + n * args.step_s)) for n in range(lo, min(lo + chunk, args.users))]
            asyncio.run(produce_fast(d.conf, msgs))
            ahead = (lo + chunk) / args.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            samples.append({"t": round(time.monotonic() - started, 1), "sent": min(lo + chunk, args.users),
                            "rss_mb": round(rss_mb(worker.pid), 1), "data_dir_mb": round(dir_mb(d.conf.data_dir), 1),
                            "expired": expired_users(worker)})
            log(f"[{label}] {samples[-1]}")
        time.sleep(max(args.expiry_every_s * 2, 5))  # the last expiry pass
        final = {"t": round(time.monotonic() - started, 1), "sent": args.users, "rss_mb": round(rss_mb(worker.pid), 1),
                 "data_dir_mb": round(dir_mb(d.conf.data_dir), 1), "expired": expired_users(worker)}
        samples.append(final)
        held = args.users - final["expired"]
        return {"label": label, "ttl_days": ttl_days, "users": args.users, "samples": samples,
                "final_rss_mb": final["rss_mb"], "final_data_dir_mb": final["data_dir_mb"],
                "users_held": held, "expired": final["expired"],
                "span_days": round(args.users * args.step_s / 86400.0, 2)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for row in rows:
        sent = [s["sent"] for s in row["samples"]]
        axes[0].plot(sent, [s["rss_mb"] for s in row["samples"]], label=row["label"])
        axes[1].plot(sent, [s["data_dir_mb"] for s in row["samples"]], label=row["label"])
    axes[0].set(title="worker resident memory", xlabel="distinct users sent", ylabel="MB")
    axes[1].set(title="worker data dir", xlabel="distinct users sent", ylabel="MB")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=("tansu", "kafka"), default="tansu")
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--ttl-days", type=float, default=1.0, help="the run with a TTL (a run without one comes first)")
    p.add_argument("--step-s", type=float, default=1.0, help="event time between two users' ratings")
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--expiry-every-s", type=float, default=5.0)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--plot", default="state_bench.png")
    p.add_argument("--only-ttl", action="store_true", help="skip the run without a TTL")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="recsys-state-"))
    try:
        rows = [run(args, root, load_settings(), ttl) for ttl in ([] if args.only_ttl else [0.0]) + [args.ttl_days]]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    plot(rows, Path(args.plot))
    for row in rows:
        print(f"{row['label']:>10}: {row['users']:,} users over {row['span_days']} days of event time; held at the "
              f"end {row['users_held']:,.0f} (expired {row['expired']:,.0f}); RSS {row['final_rss_mb']} MB, "
              f"data dir {row['final_data_dir_mb']} MB")
    print(f"plot: {args.plot}")
    print(json.dumps({"rows": [{k: v for k, v in r.items() if k != "samples"} for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
