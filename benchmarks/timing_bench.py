"""ALS fit time and item-similarity time against data size (the paper's figures 3 and 4).

Two series:

* Rent the Runway subsamples (25/50/75/100% of the rating rows, seeded), when the
  shared file is there (``--rtr``; skipped otherwise);
* the project's synthetic generator (``datatools.generator.generate_ratings_arrays``), from
  250k up to a few million ratings.

Prints a table and writes ``timing.png`` (two panels: fit, similarity) into ``--out``.
A time budget (``--budget`` seconds, default 150) stops the synthetic series early, so
the whole run stays short on a shared machine; skipped sizes are listed.

    .venv/bin/python benchmarks/timing_bench.py --out bench-out
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datatools.generator import generate_ratings_arrays
from offline_als.als import ALS, ratings_to_csr
from offline_als.similarity import top_similar

DEFAULT_RTR = ROOT.parent / "shared" / "datasets" / "renttherunway" / "renttherunway_ratings.jsonl.gz"


def time_one(users, items, ratings, *, rank: int, iterations: int, m: int, seed: int) -> dict:
    n_u = int(users.max()) + 1
    n_i = int(items.max()) + 1
    R = ratings_to_csr(users, items, ratings, shape=(n_u, n_i))
    t0 = time.perf_counter()
    model = ALS(rank=rank, reg=1.0, iterations=iterations, seed=seed, progress=False).fit(R)
    t1 = time.perf_counter()
    top_similar(model.item_factors, m=m)
    t2 = time.perf_counter()
    return {"ratings": int(R.nnz), "users": int(np.count_nonzero(np.diff(R.indptr))),
            "items": int(np.count_nonzero(np.bincount(R.indices, minlength=n_i))),
            "fit_s": t1 - t0, "sim_s": t2 - t1}


def rtr_series(path: Path, fractions, *, rank, iterations, m, seed) -> list[dict]:
    from datatools.datasets import load_ratings

    data = load_ratings(path, "renttherunway").sorted_by_time()
    u, i, _, _ = data.encode()
    rows = []
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(data))
    for f in fractions:
        keep = np.sort(perm[: round(f * len(data))])
        # Re-index the kept rows densely so that absent users/items cost nothing.
        uu = np.unique(u[keep], return_inverse=True)[1].ravel()
        ii = np.unique(i[keep], return_inverse=True)[1].ravel()
        r = time_one(uu, ii, data.ratings[keep], rank=rank, iterations=iterations, m=m, seed=seed)
        rows.append({"series": "renttherunway", "fraction": f, **r})
        print(_row(rows[-1]), flush=True)
    return rows


def synthetic_series(sizes, *, rank, iterations, m, seed, budget_s, started) -> tuple[list[dict], list[int]]:
    rows, skipped = [], []
    for n in sizes:
        if time.perf_counter() - started > budget_s:
            skipped.append(n)
            continue
        # A shop whose users and catalogue grow with the data: ~25 ratings per user,
        # ~200 per item (items capped so the similarity stays a few seconds).
        n_users = max(1000, n // 25)
        n_items = min(max(500, n // 200), 20000)
        users, items, ratings, _ = generate_ratings_arrays(n_users, n_items, n, seed=seed)
        r = time_one(users, items, ratings, rank=rank, iterations=iterations, m=m, seed=seed)
        rows.append({"series": "synthetic", "fraction": None, **r})
        print(_row(rows[-1]), flush=True)
    return rows, skipped


HEADER = f"{'series':<14} {'ratings':>10} {'users':>9} {'items':>7} {'ALS fit s':>10} {'similarity s':>13}"


def _row(r: dict) -> str:
    name = r["series"] + (f" {int(r['fraction'] * 100)}%" if r.get("fraction") else "")
    return f"{name:<14} {r['ratings']:>10} {r['users']:>9} {r['items']:>7} {r['fit_s']:>10.2f} {r['sim_s']:>13.2f}"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for series, style in (("renttherunway", "-o"), ("synthetic", "-s")):
        pts = sorted((r for r in rows if r["series"] == series), key=lambda r: r["ratings"])
        if not pts:
            continue
        x = [r["ratings"] for r in pts]
        axes[0].plot(x, [r["fit_s"] for r in pts], style, label=series)
        axes[1].plot(x, [r["sim_s"] for r in pts], style, label=series)
    axes[0].set_title("ALS fit time (paper fig. 3)")
    axes[1].set_title("Item-similarity top-M time (paper fig. 4)")
    for ax in axes:
        ax.set_xlabel("ratings")
        ax.set_ylabel("seconds")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rtr", default=str(DEFAULT_RTR), help="Rent the Runway file (skipped when missing)")
    p.add_argument("--fractions", default="0.25,0.5,0.75,1.0")
    p.add_argument("--sizes", default="250000,500000,1000000,2000000,4000000", help="synthetic rating counts")
    p.add_argument("--rank", type=int, default=20)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--m", type=int, default=50, help="neighbours per item")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--budget", type=float, default=150.0, help="seconds after which bigger sizes are skipped")
    p.add_argument("--out", default="bench-out")
    args = p.parse_args(argv)

    started = time.perf_counter()
    print(f"rank {args.rank}, {args.iterations} ALS iterations, top-{args.m} neighbours")
    print(HEADER)
    rows: list[dict] = []
    rtr = Path(args.rtr)
    if rtr.exists():
        rows += rtr_series(rtr, [float(x) for x in args.fractions.split(",")], rank=args.rank,
                           iterations=args.iterations, m=args.m, seed=args.seed)
    else:
        print(f"(no {rtr}: Rent the Runway series skipped)")
    syn, skipped = synthetic_series([int(x) for x in args.sizes.split(",")], rank=args.rank,
                                    iterations=args.iterations, m=args.m, seed=args.seed,
                                    budget_s=args.budget, started=started)
    rows += syn
    if skipped:
        print(f"skipped (time budget {args.budget:.0f} s): {skipped}")
    out = Path(args.out) / "timing.png"
    plot(rows, out, f"rank {args.rank}, {args.iterations} iterations, top-{args.m}")
    print(f"plot: {out}")
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
