"""Kill drills, repeated: how many ratings a killed worker loses (the answer must be 0).

Runs each drill of ``harness/failover.py`` ``--runs`` times, each on a fresh local
broker (``--engine tansu|kafka``; the broker-restart drill on Kafka only; broker-kill on
a fresh three-node cluster, ``recsys broker --engine kafka --nodes 3``, topics replicated
three times), and prints one row per run and a total; the last stdout line is JSON. The
data dirs and logs of a run that lost anything are kept (their path is printed).

    .venv/bin/python benchmarks/failover_bench.py --runs 5            # ~10 minutes
    .venv/bin/python benchmarks/failover_bench.py --drill failover --rate 1000 --seconds 40 --kill-at 20
    .venv/bin/python benchmarks/failover_bench.py --drill broker-kill --runs 3 --seconds 30 --kill-at 10
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.settings import load_settings
from harness.cluster import SupervisedCluster
from harness.failover import DRILLS, Drill, run_drill


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drill", choices=DRILLS, action="append", help="default: every drill")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rate", type=float, default=1000.0, help="ratings per second")
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--kill-at", type=float, default=20.0)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--engine", choices=("tansu", "kafka"), default="tansu", help="the local broker of each run")
    p.add_argument("--guarantee", choices=("at_least_once", "exactly_once"), default="at_least_once",
                   help="RECSYS_PROCESSING_GUARANTEE of the workers")
    args = p.parse_args(argv)
    rows = []
    base = load_settings()  # this script's edge
    root = Path(tempfile.mkdtemp(prefix="recsys-failover-"))
    for kind in args.drill or [d for d in DRILLS if d not in ("broker-restart", "broker-kill") or args.engine == "kafka"]:
        for run in range(1, args.runs + 1):
            tmp = root / f"{kind}-{run}"
            drill = Drill(kind, rate=args.rate, seconds=args.seconds, kill_at=args.kill_at, users=args.users,
                          seed=run)
            say = lambda m, tag=f"{kind} {run}": print(f"  [{tag}] {m}", file=sys.stderr, flush=True)
            settings = {"RECSYS_PROCESSING_GUARANTEE": args.guarantee}
            cluster = None
            if kind == "broker-kill":
                cluster = SupervisedCluster(tmp / "cluster", nodes=3, restart_after=10)
                settings.update(RECSYS_REPLICATION=3, RECSYS_SESSION_TIMEOUT_S=10)
            try:
                result = run_drill(drill, cluster or args.engine, tmp / "drill", base=base, say=say, **settings)
            finally:
                if cluster is not None:
                    cluster.stop()
            row = {"run": run, **result.as_row()}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if result.missing or result.wrong_final:
                print(f"  kept {tmp} (lost {len(result.missing)}, e.g. {result.missing[:5]})", flush=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    total = {"guarantee": args.guarantee, "runs": len(rows), "sent": sum(r["sent"] for r in rows),
             "lost": sum(r["lost"] for r in rows), "duplicates": sum(r["duplicates"] for r in rows),
             "wrong_final_lists": sum(r["wrong_final_lists"] for r in rows),
             "runs_with_loss": sum(1 for r in rows if r["lost"] or r["wrong_final_lists"])}
    print(f"{'drill':<14} {'run':>3} {'sent':>6} {'lists':>6} {'lost':>5} {'dups':>5} {'wrong':>5} {'redelivered':>11}")
    for r in rows:
        print(f"{r['drill']:<14} {r['run']:>3} {r['sent']:>6} {r['lists']:>6} {r['lost']:>5} {r['duplicates']:>5} "
              f"{r['wrong_final_lists']:>5} {r.get('redelivered', 0):>11}")
    print(json.dumps({"rows": rows, "total": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
