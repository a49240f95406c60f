"""The learned ranker against the default on one data set's stream, without the baselines.

The streaming evaluation's protocol (``evaluation/prequential.py``: the same warm-up,
retrains and scored half as ``recsys evaluate --protocol stream``), run with only the
``default`` and ``learned`` rankers: a quick look while working on the learned ranker
(the full evaluation also tunes and runs nine baselines). Prints each ranker's HR@10,
NDCG@10 and cost per event, the ratio learned / default with the bootstrap interval of
the difference, and what the learner did; the LAST line is JSON.

    .venv/bin/python benchmarks/learned_stream.py --input ../shared/datasets/ml-100k/u.data --format movielens-100k
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.settings import load_settings
from evaluation.baselines import make_rankers
from evaluation.prequential import compare_to_best, load_stream, run_stream, summarise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True)
    p.add_argument("--format", required=True)
    args = p.parse_args(argv)
    conf = load_settings()
    t0 = time.perf_counter()
    try:
        stream = load_stream(args.input, args.format, conf=conf, progress=False)
    except (ValueError, OSError) as exc:
        print(f"learned_stream: {exc}", file=sys.stderr)
        return 2
    all_rankers = make_rankers(conf, sum(stream.scale) / 2.0)
    raw = run_stream(stream, conf, rankers={name: all_rankers[name] for name in ("default", "learned")},
                     progress=sys.stderr.isatty())
    summary = summarise(raw)
    comparison = compare_to_best(raw, "learned")
    for name in ("default", "learned"):
        print(f"{name:8s} HR@10 {summary['hr_at_10'][name]:.4f}  NDCG@10 {summary['ndcg_at_10'][name]:.4f}  "
              f"{summary['us_per_event'][name]:.0f} us/event")
    for metric, c in comparison.items():
        print(f"learned / default {metric}: {c['ratio']:.4f} (difference {c['diff']:+.4f}, 95% interval "
              f"[{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}])")
    learner = raw["learners"]["learned"]
    print(f"learner: {learner['examples']} example rows, {learner['versions']} weight sets shipped, "
          f"{learner['rejected']} refused")
    print(json.dumps({"input": args.input, "events": len(stream), "hr_at_10": summary["hr_at_10"],
                      "ndcg_at_10": summary["ndcg_at_10"], "us_per_event": summary["us_per_event"],
                      "comparison": comparison, "learner": learner,
                      "seconds": round(time.perf_counter() - t0, 1)}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
