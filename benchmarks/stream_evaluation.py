"""The streaming evaluation of every ranker on the four shared data sets, one table.

Runs ``recsys evaluate --protocol stream`` (``evaluation.prequential.evaluate_stream``)
on each data set under ``../shared/datasets/`` that is present, one after the other,
writes each report and its plots to ``evaluation/results/stream-<name>/`` (or ``--out``),
and prints a Markdown table of HR@10 / NDCG@10 per ranker and data set, then the default
ranker's difference to the best baseline with its 95% bootstrap interval. The last
stdout line is JSON.

    .venv/bin/python benchmarks/stream_evaluation.py                 # every data set, one after the other
    .venv/bin/python benchmarks/stream_evaluation.py --only ml-100k  # 12 minutes, the baselines' tuning included
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.settings import load_settings
from evaluation.prequential import RANKER_NAMES, evaluate_stream

SHARED = ROOT.parent / "shared" / "datasets"
DATASETS = {  # name -> (file under ../shared/datasets, format)
    "ml-100k": ("ml-100k/u.data", "movielens-100k"),
    "ml-latest-small": ("ml-latest-small/ratings.csv", "movielens-csv"),
    "renttherunway": ("renttherunway/renttherunway_ratings.jsonl.gz", "renttherunway"),
    "taobao-stream": ("taobao-userbehavior-stream/UserBehavior_timesorted_110k.csv.gz", "taobao"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", choices=sorted(DATASETS), help="default: every data set present")
    p.add_argument("--out", default=str(ROOT / "evaluation" / "results"), help="reports go to OUT/stream-<name>/")
    args = p.parse_args(argv)
    conf = load_settings()
    results = {}
    for name in args.only or list(DATASETS):
        rel, fmt = DATASETS[name]
        path = SHARED / rel
        if not path.is_file():
            print(f"skipping {name}: {path} is not there", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        print(f"== {name} ({fmt})", file=sys.stderr, flush=True)
        summary, paths = evaluate_stream(path, fmt, conf=conf, out_dir=Path(args.out) / f"stream-{name}",
                                         say=lambda msg, t0=t0: print(f"   {time.perf_counter() - t0:6.0f} s  {msg}",
                                                                      file=sys.stderr, flush=True))
        result = json.loads(Path(paths[0]).with_name("result.json").read_text())
        results[name] = {**summary, "comparison": result["comparison"], "seconds": round(time.perf_counter() - t0)}
        print(f"   {name}: {summary['events_scored']:,} events scored in {results[name]['seconds']} s; "
              f"report {paths[0]}", file=sys.stderr, flush=True)
    names = list(results)
    print("| ranker | " + " | ".join(f"{n} ({results[n]['events_scored']:,} events) HR@10 / NDCG@10" for n in names)
          + " |")
    print("|---" * (len(names) + 1) + "|")
    for ranker in RANKER_NAMES:
        cells = [f"{results[n]['hr_at_10'][ranker]:.4f} / {results[n]['ndcg_at_10'][ranker]:.4f}" for n in names]
        print(f"| {ranker} | " + " | ".join(cells) + " |")
    for n in names:
        for metric, c in results[n]["comparison"].items():
            lo, hi = c["ci95"]
            rel = "n/a" if c["relative"] is None else f"{100 * c['relative']:+.1f}%"
            noise = "; the interval holds 0: noise-level" if lo <= 0 <= hi else ""
            print(f"{n} {metric}: default {c['default']:.4f} vs {c['best_baseline']} {c['baseline']:.4f}, "
                  f"{rel} relative, difference 95% CI [{lo:+.4f}, {hi:+.4f}]{noise}")
    print(json.dumps({n: {k: results[n][k] for k in ("events_scored", "users", "hr_at_10", "ndcg_at_10",
                                                      "us_per_event", "comparison", "seconds")} for n in names},
                     default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
