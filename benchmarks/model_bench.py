"""The model worker's retrain, as it runs on a shop's data: time, peak memory, model size.

For each input, in a child process of its own (so its peak RSS is its own), one retrain
exactly as ``recsys als-worker`` does it (``offline_als.model.train_and_similar`` on the
store's pairs: each pair's latest rating and time): ALS and its factor neighbours, the
blend's selection on the newest events (``offline_als/selection.py``), the named
sources. Then the published model: its messages' bytes, and the peak RSS of another
process that holds it as a worker does (``tables.broadcast.SimilarityBroadcast`` fed
every message, one at a time, as its consumer reads them).

Inputs (each skipped when its file is missing):

- ``ml-100k``: ../shared/datasets/ml-100k/u.data
- ``taobao``: the Taobao behaviour stream (110k events, 85k items: RP3beta, not EASE)
- ``generated``: ``recsys generate --ratings 1000000 --users 100000 --items 20000``'s shop
- ``synthetic-100k-items``: 1,000,000 ratings over 100,000 items (the 100,000-item catalogue)

    .venv/bin/python benchmarks/model_bench.py                    # all four, ~10 minutes
    .venv/bin/python benchmarks/model_bench.py --only ml-100k

Prints a table; the last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "datasets"
INPUTS = {
    "ml-100k": ("file", SHARED / "ml-100k" / "u.data", "movielens-100k"),
    "taobao": ("file", SHARED / "taobao-userbehavior-stream" / "UserBehavior_timesorted_110k.csv.gz", "taobao"),
    "generated": ("generate", 100_000, 20_000, 1_000_000),
    "synthetic-100k-items": ("generate", 100_000, 100_000, 1_000_000),
}


def load(name: str, conf):
    """``(user_idx, item_idx, ratings, ts)`` in time order, as the model worker's store holds them."""
    kind, *spec = INPUTS[name]
    if kind == "generate":
        from datatools.generator import generate_ratings_arrays

        users, items, n = spec
        return generate_ratings_arrays(users, items, n, seed=7)
    from evaluation.prequential import load_stream

    stream = load_stream(spec[0], spec[1], conf=conf, progress=False)
    _u, uidx = np.unique(np.array(stream.users), return_inverse=True)
    _i, iidx = np.unique(np.array(stream.items), return_inverse=True)
    return uidx.ravel(), iidx.ravel(), stream.ratings.astype(np.float32), stream.ts


def retrain(name: str, messages_path: str) -> dict:
    """One retrain with selection; its messages go to ``messages_path`` (runs in a child)."""
    from app.settings import load_settings
    from offline_als.als import ratings_to_csr
    from offline_als.model import als_from_settings, times_csr, train_and_similar
    from offline_als.publish import similarity_messages
    from offline_als.worker import RETRAIN_BUDGET

    conf = load_settings()
    u, i, r, ts = load(name, conf)
    shape = (int(u.max()) + 1, int(i.max()) + 1)
    R = ratings_to_csr(u, i, r, shape=shape)
    t0 = time.perf_counter()
    trained = train_and_similar(R, np.arange(shape[0]).astype(str), np.array([f"i{j}" for j in range(shape[1])]),
                                conf=conf, als=als_from_settings(conf, behaviour=name == "taobao"),
                                times=times_csr(u, i, shape, ts),
                                budget_s=RETRAIN_BUDGET * conf.als.every_min * 60)  # as the worker runs it
    seconds = time.perf_counter() - t0
    rss_trained = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    messages = similarity_messages(trained.neighbours, trained.version, trained.trained_at,
                                   **{k: v for k, v in trained.publication().items() if k != "trained_at"})
    selection = trained.selection.as_dict() if trained.selection else {}
    del trained
    with open(messages_path, "wb") as f:
        for message in messages:
            pickle.dump(message, f)
    return {"input": name, "pairs": int(R.nnz), "users": shape[0], "items": shape[1], "retrain_s": round(seconds, 1),
            "selection_s": selection.get("selection_s"), "peak_rss_mb": round(rss_trained),
            "model_messages": len(messages), "model_mb": round(sum(len(k) + len(v or b"") for k, v in messages) / 2**20, 1),
            "blend": selection.get("name"), "validation": {k: selection.get(k) for k in ("hr_at_10", "ndcg_at_10")},
            "runner_up": selection.get("runner_up"), "note": selection.get("note"), "tried": selection.get("tried")}


def read(messages_path: str) -> dict:
    """The published model as a worker holds it, fed message by message (runs in a child)."""
    from tables.broadcast import SimilarityBroadcast

    reader = SimilarityBroadcast()
    with open(messages_path, "rb") as f:
        while True:
            try:
                key, value = pickle.load(f)
            except EOFError:
                break
            reader.apply(key, value, 0)
    return {"model_in_service": reader.index.blend.name, "items_in_service": len(reader.index.ids),
            "reader_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", choices=sorted(INPUTS))
    p.add_argument("--child", choices=sorted(INPUTS), help=argparse.SUPPRESS)
    p.add_argument("--reader", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--messages", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(retrain(args.child, args.messages)))
        return 0
    if args.reader:
        print(json.dumps(read(args.messages)))
        return 0
    results = []
    for name in args.only or list(INPUTS):
        kind, *spec = INPUTS[name]
        if kind == "file" and not spec[0].is_file():
            print(f"skipping {name}: {spec[0]} is not there", file=sys.stderr)
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            messages = str(Path(tmp) / "messages.pickle")
            result = {}
            for child in (["--child", name], ["--reader"]):
                out = subprocess.run([sys.executable, __file__, *child, "--messages", messages], check=False,
                                     capture_output=True, text=True, timeout=3600)
                if out.returncode != 0:
                    print(out.stderr[-2000:], file=sys.stderr)
                    return 1
                result.update(json.loads(out.stdout.strip().splitlines()[-1]))
        results.append(result)
        print(f"   {results[-1]}", file=sys.stderr, flush=True)
    print("| input | pairs | items | retrain s (selection s) | peak RSS MB | model MB (messages) | reader RSS MB | blend |")
    print("|---|---|---|---|---|---|---|---|")
    for x in results:
        print(f"| {x['input']} | {x['pairs']:,} | {x['items']:,} | {x['retrain_s']} ({x['selection_s']}) | "
              f"{x['peak_rss_mb']} | {x['model_mb']} ({x['model_messages']:,}) | {x['reader_peak_rss_mb']} | "
              f"{x['blend']} |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
