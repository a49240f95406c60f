"""``recsys train-als``: train ALS once on a ratings file, measure it, optionally publish.

The last stdout line is one JSON object (see ``--help``); progress bars and logs go to
stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from app.settings import Settings, load_settings
from datatools.datasets import FORMATS, SCALES, load_ratings

from .als import ALS, ratings_to_csr
from .ids import IdMap
from .model import times_csr, train_and_similar
from .split import train_test_split

log = logging.getLogger("offline_als.train_cli")

RATING_FORMATS = [name for name, info in FORMATS.items() if info.kind == "ratings"]

EPILOG = """\
Output: the last stdout line is one JSON object with n_train, n_test, users, items (of
the training set), fit_s (wall seconds of the ALS fit alone), sim_s (wall seconds of the
item-item top-M similarity), rmse (on the test set), load_s, train_rmse, the
parameters, the model path and, with --publish, the version and message count.

RMSE: predictions are clipped to the rating scale (the format's scale, or the data's
min/max for csv). Test users or items that do not occur in the training set (cold
start) are predicted from the biases / global mean: an unseen user gets
global_mean + item_bias, an unseen item global_mean + user_bias, both unseen the
global mean (without biases: the global mean). Their counts are reported as
cold_users / cold_items (test ratings concerned). Duplicate (user, item) pairs in the
training set: the latest (by timestamp) wins.
"""


def _parser(conf: Settings) -> argparse.ArgumentParser:
    """Options default to the RECSYS_ALS_* settings the ALS worker trains with."""
    p = argparse.ArgumentParser(prog="recsys train-als", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="ratings file (plain or gzip)")
    p.add_argument("--format", dest="fmt", required=True, choices=RATING_FORMATS,
                   help="input format (csv = user,item,rating[,ts] without header)")
    p.add_argument("--test", default=None, help="test set file (same format); default: a random split of --input")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of --input held out for testing when --test is not given (default 0.2)")
    p.add_argument("--seed", type=int, default=conf.als.seed,
                   help=f"seed of the split and of ALS (RECSYS_ALS_SEED={conf.als.seed})")
    p.add_argument("--rank", type=int, default=conf.als.rank, help=f"RECSYS_ALS_RANK={conf.als.rank}")
    p.add_argument("--reg", type=float, default=conf.als.reg, help=f"RECSYS_ALS_REG={conf.als.reg:g}")
    p.add_argument("--reg-offset", type=float, default=conf.als.reg_offset,
                   help="pseudo-ratings in the weighted-lambda penalty reg*(n+offset); 0 = Spark/Zhou exactly "
                        f"(RECSYS_ALS_REG_OFFSET={conf.als.reg_offset:g})")
    p.add_argument("--iters", type=int, default=conf.als.iters, help=f"RECSYS_ALS_ITERS={conf.als.iters}")
    p.add_argument("--no-biases", action="store_true", default=not conf.als.biases,
                   help=f"fit no user/item biases (RECSYS_ALS_BIASES={int(conf.als.biases)})")
    p.add_argument("--similar", type=int, default=conf.als.similar,
                   help=f"neighbours per item (top-M, RECSYS_ALS_SIMILAR={conf.als.similar})")
    p.add_argument("--min-similarity", type=float, default=conf.als.min_similarity,
                   help=f"keep only neighbours with a cosine above this (RECSYS_ALS_MIN_SIMILARITY="
                        f"{conf.als.min_similarity:g})")
    p.add_argument("--out", default="model.npz", help="model file to write (default model.npz; '' = none)")
    p.add_argument("--publish", action="store_true",
                   help="send the similarities to the item-similarity topic of the configured broker "
                        "(RECSYS_BROKER; unset = the embedded one, which must be running)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


async def _publish(conf, trained) -> int:
    from broker.topics import create_topics

    from .publish import publish_similarity

    await create_topics(conf)
    return await publish_similarity(trained.neighbours, trained.version, conf=conf, **trained.publication())


def main(argv: list[str] | None = None, conf: Settings | None = None) -> int:
    conf = conf or load_settings()
    args = _parser(conf).parse_args(argv)
    if args.rank < 1 or args.iters < 0 or args.reg <= 0 or args.similar < 0:
        print("error: need --rank >= 1, --iters >= 0, --reg > 0, --similar >= 0", file=sys.stderr)
        return 2
    if not 0.0 <= args.test_fraction < 1.0:
        print("error: --test-fraction must be in [0, 1)", file=sys.stderr)
        return 2
    if args.publish:
        from broker.detect import BrokerUnreachable, require_broker

        try:
            require_broker(conf, wait_s=0)
        except BrokerUnreachable as exc:  # checked before training, so a missing broker costs nothing
            print(f"--publish: {exc}", file=sys.stderr)
            return 2
    progress = not args.no_progress

    t0 = time.perf_counter()
    try:
        data = load_ratings(args.input, args.fmt, progress=progress)
        test_data = load_ratings(args.test, args.fmt, progress=progress) if args.test else None
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    load_s = time.perf_counter() - t0
    if len(data) == 0:
        print(f"error: no valid ratings in {args.input} (skipped: {dict(data.skipped)})", file=sys.stderr)
        return 2

    # Time order first, so that the latest rating of a duplicate pair wins in the CSR.
    data = data.sorted_by_time()
    if test_data is not None:
        train = (data.users, data.items, data.ratings)
        test = (test_data.users, test_data.items, test_data.ratings)
    else:
        train, test = train_test_split(data.users, data.items, data.ratings, args.test_fraction, args.seed)

    scale = SCALES.get(args.fmt)
    if scale is None:
        all_r = data.ratings if test_data is None else np.concatenate([data.ratings, test_data.ratings])
        scale = (float(all_r.min()), float(all_r.max()))

    users, items = IdMap(), IdMap()
    u_idx = users.add_many(train[0])
    i_idx = items.add_many(train[1])
    R = ratings_to_csr(u_idx, i_idx, train[2], shape=(len(users), len(items)))
    model = ALS(rank=args.rank, reg=args.reg, reg_offset=args.reg_offset, iterations=args.iters,
                biases=not args.no_biases, seed=args.seed, progress=progress)
    trained = train_and_similar(R, users.to_array(), items.to_array(), conf=conf, m=args.similar,
                                min_similarity=args.min_similarity, als=model,
                                times=times_csr(u_idx, i_idx, R.shape))  # the triples are in time order
    fit_s, sim_s = trained.fit_s, trained.sim_s
    n_with_neighbours = sum(1 for neigh in trained.neighbours.values() if neigh)

    n_test = len(test[2])
    rmse = None
    cold_users = cold_items = 0
    if n_test:
        tu, ti = users.lookup(test[0]), items.lookup(test[1])
        pred = model.predict(tu, ti, clip=scale)
        err = pred.astype(np.float64) - np.asarray(test[2], dtype=np.float64)
        rmse = float(np.sqrt(np.mean(err * err)))
        cold_users, cold_items = int((tu < 0).sum()), int((ti < 0).sum())

    version = trained.version
    result = {
        "input": str(args.input), "format": args.fmt, "test_file": args.test,
        "test_fraction": None if args.test else args.test_fraction, "seed": args.seed,
        "rank": args.rank, "reg": args.reg, "reg_offset": args.reg_offset, "iters": args.iters, "biases": not args.no_biases,
        "similar": args.similar, "min_similarity": args.min_similarity,
        "n_loaded": len(data), "skipped": dict(data.skipped),
        "n_train": len(train[2]), "n_train_pairs": int(R.nnz), "n_test": int(n_test),
        "users": len(users), "items": len(items), "scale": list(scale),
        "load_s": round(load_s, 3), "fit_s": round(fit_s, 3), "sim_s": round(sim_s, 3),
        "rmse": None if rmse is None else round(rmse, 4),
        "train_rmse": round(model.train_rmse_[-1], 4) if model.train_rmse_ else None,
        "cold_users": cold_users, "cold_items": cold_items,
        "items_with_neighbours": n_with_neighbours, "version": version, "model": None,
    }
    if args.out:
        metrics = {k: result[k] for k in ("n_train", "n_test", "rmse", "fit_s", "sim_s", "train_rmse", "version",
                                          "format", "input")}
        result["model"] = model.save(Path(args.out), user_ids=users.to_array(), item_ids=items.to_array(),
                                     metrics=metrics)
    if args.publish:
        try:
            result["published"] = asyncio.run(_publish(conf, trained))
        except Exception as exc:  # noqa: BLE001  reported in the command's JSON
            print(f"error: publishing to {conf.kafka.bootstrap_servers} failed: {exc}", file=sys.stderr)
            print(json.dumps(dict(result, published=None, error=str(exc))), flush=True)
            return 1
        result["topic"] = conf.topics.similarity
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
