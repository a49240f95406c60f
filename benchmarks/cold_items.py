"""New items through their catalogue words: the default ranker with and without them.

The streaming evaluation's protocol (``evaluation/prequential.py``) with two rankers: the
default as it ships (cold items recalled by the catalogue's words, ``ranking/content.py``)
and the same ranker with ``w_content=0`` (no content recall). Prints each one's HR@10
and NDCG@10 over every scored event, HR@10 on the events whose item was first seen in
the scored half (``hr_at_10_new_items``), and the cost per event; the LAST line is JSON.
A data set without a catalogue beside it gives both the same lists.

    .venv/bin/python benchmarks/cold_items.py --input ../shared/datasets/ml-100k/u.data --format movielens-100k
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.settings import load_settings
from evaluation.prequential import load_stream, run_stream, summarise
from ranking import DefaultRanker


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
        print(f"cold_items: {exc}", file=sys.stderr)
        return 2
    shipped = DefaultRanker.from_settings(conf)
    rankers = {"default": shipped, "no_content": dataclasses.replace(shipped, w_content=0.0)}
    print(f"{len(stream):,} events, catalogue words for {len(stream.texts):,} items, "
          f"cold below {conf.ranking.cold_item_min} interactions", flush=True)
    summary = summarise(run_stream(stream, conf, rankers=rankers, progress=sys.stderr.isatty()))
    print(f"{summary['events_new_items']:,} of {summary['events_scored']:,} scored events are on new items")
    for name in rankers:
        new = summary["hr_at_10_new_items"][name]
        print(f"{name:10s} HR@10 {summary['hr_at_10'][name]:.4f}  NDCG@10 {summary['ndcg_at_10'][name]:.4f}  "
              f"HR@10 new items {'n/a' if new is None else f'{new:.4f}'}  {summary['us_per_event'][name]:.0f} us/event")
    print(json.dumps({"input": args.input, "events": len(stream), "catalogue": len(stream.texts),
                      **{k: summary[k] for k in ("events_scored", "events_new_items", "hr_at_10", "ndcg_at_10",
                                                 "hr_at_10_new_items", "us_per_event")},
                      "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
