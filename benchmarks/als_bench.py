"""Benchmark of the offline ALS maths (fit time, RMSE, similarity time, memory).

Usage::

    .venv/bin/python benchmarks/als_bench.py                  # everything (~5 min)
    .venv/bin/python benchmarks/als_bench.py --skip-synthetic # Rent the Runway only

a. Rent the Runway (``../shared/datasets/renttherunway``): seeded 80/20 split of the
   rating rows (seed 42), rank 20, 10 iterations, reg 1.0; fit time, top-50
   similarity time and test RMSE (predictions clipped to 2..10) with biases on and off,
   plus a reg sweep. "all" RMSE covers every test row (unseen users/items are predicted
   from biases / global mean); "warm" only rows whose user and item are in the train
   part (what Spark reports with ``coldStartStrategy="drop"``).
b. Synthetic (skip with ``--skip-synthetic``): top-50 similarity of 100,000 random
   rank-20 item vectors, and an ALS fit on ~10M seeded ratings (1M users, 100k items,
   power-law popularity); each in a subprocess so its peak RSS is its own.

Times are wall-clock on a shared machine: the best of ``--repeat`` runs is shown.
Prints a table, then one JSON line with every figure. Nothing is written to disk.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.settings import load_settings

settings = load_settings()  # the edge of this script: read the environment once
from offline_als import ALS, IdMap, ratings_to_csr, top_similar, train_test_split

RTR = ROOT.parent / "shared" / "datasets" / "renttherunway" / "renttherunway_ratings.jsonl.gz"
SPARK_FIT_S, SPARK_RMSE, SURPRISE_RMSE = 12.6, 2.31, 1.40


# ---------------------------------------------------------------------- data
def load_rtr(path: Path):
    """(users, items, ratings) as arrays in time order (rows without rating skipped)."""
    from datatools.datasets import load_ratings  # the project's one parser

    arr = load_ratings(path, "renttherunway").sorted_by_time()
    return arr.users.astype(str), arr.items.astype(str), arr.ratings, dict(arr.skipped)


def best_of(repeat, fn):
    """(best seconds, last result) of ``repeat`` calls."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def rmse(pred, truth) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - truth) ** 2)))


# ---------------------------------------------------------------------- part a
def bench_rtr(args) -> dict:
    users, items, ratings, skipped = load_rtr(Path(args.dataset))
    (tu, ti, tr), (eu, ei, er) = train_test_split(users, items, ratings, 0.2, seed=42)
    umap, imap = IdMap(), IdMap()
    R = ratings_to_csr(umap.add_many(tu), imap.add_many(ti), tr)  # time order: last wins
    eu_idx, ei_idx = umap.lookup(eu), imap.lookup(ei)
    warm = (eu_idx >= 0) & (ei_idx >= 0)
    res = {"rows": len(ratings), "skipped": skipped, "train_nnz": int(R.nnz),
           "users": R.shape[0], "items": R.shape[1], "test_rows": len(er),
           "test_warm_rows": int(warm.sum())}

    def evaluate(model):
        p = model.predict(eu_idx, ei_idx, clip=(2.0, 10.0))
        return rmse(p, er), rmse(p[warm], er[warm])

    # The headline rows use the project's defaults (app/settings.py): reg 1.0 and
    # RECSYS_ALS_REG_OFFSET; the sweep below shows Spark's exact weighted lambda (offset 0).
    for biases in (True, False):
        def fit(biases=biases):
            return ALS(rank=20, reg=1.0, reg_offset=settings.als.reg_offset, iterations=10, biases=biases,
                       seed=42, progress=False, n_threads=args.threads).fit(R)
        t_fit, model = best_of(args.repeat, fit)
        t_sim, (idx, _) = best_of(args.repeat, lambda model=model: top_similar(model.item_factors, m=50))
        all_rmse, warm_rmse = evaluate(model)
        key = "biases_on" if biases else "biases_off"
        res[key] = {"fit_s": t_fit, "sim_s": t_sim, "rmse": all_rmse, "rmse_warm": warm_rmse,
                    "train_rmse": model.train_rmse_[-1],
                    "items_with_neighbours": int((idx[:, 0] >= 0).sum())}

    # Reg sweep. Weighted lambda (offset 0) penalises each row in proportion to its
    # rating count, so one-rating users (68% here) are fitted as confidently per
    # rating as heavy ones and overfit; reg_offset > 0 adds a constant prior on top.
    configs = [(reg, 0.0, b) for reg in args.regs for b in (True, False)]
    configs += [(reg, off, True) for off in args.offsets for reg in (0.3, 1.0)]
    sweep = {}
    for reg, off, biases in configs:
        m = ALS(rank=20, reg=reg, reg_offset=off, iterations=10, biases=biases,
                progress=False, n_threads=args.threads).fit(R)
        sweep[f"reg={reg:g} offset={off:g} biases={'on' if biases else 'off'}"] = evaluate(m)
    res["reg_sweep"] = sweep
    # Baselines without factors, to put the RMSEs in context.
    res["rmse_global_mean"] = rmse(np.clip(np.full(len(er), tr.mean()), 2, 10), er)
    return res


# ---------------------------------------------------------------------- part b
def synthetic_ratings(n_users=1_000_000, n_items=100_000, n_ratings=10_000_000, seed=42):
    """Seeded synthetic ratings 1..5 with power-law item popularity and user activity."""
    rng = np.random.default_rng(seed)
    # Zipf-like popularity: item of popularity rank r drawn with p ~ 1 / (r + 10).
    p_item = 1.0 / (np.arange(n_items) + 10.0)
    p_item /= p_item.sum()
    p_user = rng.lognormal(0.0, 1.0, n_users)  # a few heavy users, many light ones
    p_user /= p_user.sum()
    users = rng.choice(n_users, n_ratings, p=p_user).astype(np.int32)
    items = rng.permutation(n_items)[rng.choice(n_items, n_ratings, p=p_item)].astype(np.int32)
    # Ratings from a hidden rank-5 model plus noise, rounded to the 1..5 stars.
    U = rng.standard_normal((n_users, 5)).astype(np.float32) * 0.5
    V = rng.standard_normal((n_items, 5)).astype(np.float32) * 0.5
    ratings = np.empty(n_ratings, np.float32)
    for a in range(0, n_ratings, 1 << 20):
        s = slice(a, a + (1 << 20))
        ratings[s] = np.einsum("nk,nk->n", U[users[s]], V[items[s]])
    ratings += 3.5 + rng.normal(0, 0.5, n_ratings).astype(np.float32)
    np.clip(np.rint(ratings), 1, 5, out=ratings)
    return ratings_to_csr(users, items, ratings, shape=(n_users, n_items))


def child_sim(args) -> dict:
    F = np.random.default_rng(42).standard_normal((100_000, 20)).astype(np.float32)
    t = time.perf_counter()
    idx, _ = top_similar(F, m=50)
    return {"sim_100k_s": time.perf_counter() - t, "filled": float((idx >= 0).mean())}


def child_fit(args) -> dict:
    t = time.perf_counter()
    R = synthetic_ratings()
    gen = time.perf_counter() - t
    model = ALS(rank=20, reg=0.1, iterations=10, biases=True, progress=False,
                n_threads=args.threads).fit(R)
    return {"gen_s": gen, "fit_10m_s": model.fit_time_, "nnz": int(R.nnz),
            "train_rmse": model.train_rmse_[-1]}


def run_child(name: str, args) -> dict:
    """Run one synthetic measurement in a fresh interpreter; add its peak RSS."""
    cmd = [sys.executable, __file__, "--child", name]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default=str(RTR))
    ap.add_argument("--skip-synthetic", action="store_true", help="skip the slow 100k/10M part")
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing (best is kept)")
    ap.add_argument("--threads", type=int, default=None, help="ALS threads (default: all CPUs)")
    ap.add_argument("--regs", type=float, nargs="*", default=[0.3, 1.0, 2.0, 3.0, 10.0])
    ap.add_argument("--offsets", type=float, nargs="*", default=[5.0, 20.0],
                    help="reg_offset values swept (biases on, reg 0.3 and 1)")
    ap.add_argument("--child", choices=["sim", "fit"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        res = {"sim": child_sim, "fit": child_fit}[args.child](args)
        # ru_maxrss is in KiB on Linux: the child's own peak, the figure we want.
        res["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return

    res = {"cpus": len(os.sched_getaffinity(0)), "threads": args.threads or "all",
           "rtr": bench_rtr(args)}
    if not args.skip_synthetic:
        res["synthetic_sim"] = run_child("sim", args)
        res["synthetic_fit"] = run_child("fit", args)
    print_table(res)
    print(json.dumps(res, separators=(",", ":")))


def print_table(res: dict) -> None:
    r = res["rtr"]
    on, off = r["biases_on"], r["biases_off"]
    rows = [
        ("RTR rows / train nnz / test", (f"{r['rows']} / {r['train_nnz']} / {r['test_rows']} "
         f"({r['test_warm_rows']} warm)"), f"skipped {r['skipped']}"),
        ("RTR fit, biases off (s)", f"{off['fit_s']:.3f}",
         f"<= {SPARK_FIT_S / 10:.2f} (Spark local[2] {SPARK_FIT_S} / 10): "
         + ("OK" if off["fit_s"] <= SPARK_FIT_S / 10 else "MISSED")),
        ("RTR fit, biases on (s)", f"{on['fit_s']:.3f}",
         f"<= {SPARK_FIT_S / 10:.2f}: " + ("OK" if on["fit_s"] <= SPARK_FIT_S / 10 else "MISSED")),
        (f"RTR test RMSE, biases off, reg 1, offset {settings.als.reg_offset:g}", f"{off['rmse']:.4f} (warm {off['rmse_warm']:.4f})",
         f"<= {SPARK_RMSE} (Spark): " + ("OK" if off["rmse"] <= SPARK_RMSE else "MISSED")),
        (f"RTR test RMSE, biases on, reg 1, offset {settings.als.reg_offset:g}", f"{on['rmse']:.4f} (warm {on['rmse_warm']:.4f})",
         f"<= {SURPRISE_RMSE} (Surprise SVD): " + ("OK" if on["rmse"] <= SURPRISE_RMSE else "MISSED")),
        ("RTR test RMSE, global mean only", f"{r['rmse_global_mean']:.4f}", "baseline"),
        ("RTR top-50 sim, 5.8k items (s)", f"{on['sim_s']:.3f}", ""),
    ]
    rows.append(("RTR test RMSE, reg sweep (rank 20, 10 it):", "", ""))
    best = min((v[0], k) for k, v in r["reg_sweep"].items() if k.endswith("on"))
    for key, (a, w) in r["reg_sweep"].items():
        mark = f"<= {SURPRISE_RMSE}" if a <= SURPRISE_RMSE else ""
        rows.append((f"  {key}", f"{a:.4f} (warm {w:.4f})", mark + ("  best" if key == best[1] else "")))
    if "synthetic_sim" in res:
        s, f = res["synthetic_sim"], res["synthetic_fit"]
        rows += [
            ("100k x r20 top-50 sim (s)", f"{s['sim_100k_s']:.1f}",
             "< 60: " + ("OK" if s["sim_100k_s"] < 60 else "MISSED")),
            ("  peak RSS (MiB)", f"{s['peak_rss_mib']:.0f}",
             "< 4096: " + ("OK" if s["peak_rss_mib"] < 4096 else "MISSED")),
            (f"synthetic fit, {f['nnz'] / 1e6:.1f}M ratings (s)", f"{f['fit_10m_s']:.1f}",
             "< 120: " + ("OK" if f["fit_10m_s"] < 120 else "MISSED")),
            ("  peak RSS (MiB)", f"{f['peak_rss_mib']:.0f}", f"(incl. data generation {f['gen_s']:.1f} s)"),
        ]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    print(f"{'measure':<{w0}}  {'value':<{w1}}  target")
    print("-" * (w0 + w1 + 40))
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")


if __name__ == "__main__":
    main()
