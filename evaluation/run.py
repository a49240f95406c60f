"""``recsys evaluate``: the paper's offline experiment, replayed with the agent's own code.

Usage::

    python -m evaluation.run --input ../shared/datasets/renttherunway/renttherunway_ratings.jsonl.gz \\
        --format renttherunway --users 100 --grid --out eval-out

Prints the report path(s), then (last stdout line) one JSON object with the numbers.
See ``evaluation/protocol.py`` for the protocol and ``evaluation/engine.py`` for the
methods; ``report.md`` in ``--out`` says which numbers are the paper's formula and
which are our improvements.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence

import numpy as np

from app.settings import Settings, load_settings
from datatools.datasets import FORMATS, SCALES, load_ratings
from ranking.paper import high_rating_cut

from . import engine
from .protocol import MIN_RATINGS, sample_cases, split_protocol

GRID_RANKS = (5, 10, 20, 40)
GRID_REGS = (0.01, 0.1, 1.0, 10.0)
THETAS = (0.0, 0.3, 0.6, 0.8)
TOP_N = 10


def _progress(it, progress: bool, **kw):
    if not progress:
        return it
    from tqdm import tqdm

    return tqdm(it, file=sys.stderr, leave=False, **kw)


def _finite(x):
    """JSON-safe: NaN/inf -> None; numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def evaluate(input_path, fmt: str, *, users: str | int = "100", seed: int = 42, rank: int = 20,
             reg: float = 1.0, grid: bool = False, out_dir="eval-out", through_stream: bool = False,
             progress: bool = True, stream_rate: float = 300.0, broker_port: int | None = None,
             stream_dir=None, conf: Settings | None = None) -> dict:
    """Run the whole evaluation; writes ``report.md`` and PNG plots into ``out_dir``.

    Returns the result dict (also what ``main`` prints as its last line).
    """
    conf = conf or load_settings()
    t_start = time.perf_counter()
    if fmt not in FORMATS or FORMATS[fmt].kind != "ratings":
        raise ValueError(f"{fmt!r} is not a ratings format; choose one of "
                         f"{', '.join(n for n, f in FORMATS.items() if f.kind == 'ratings')}")
    data = load_ratings(input_path, fmt, progress=progress)
    if len(data) == 0:
        raise ValueError(f"no ratings in {input_path} (skipped: {dict(data.skipped)})")
    scale = SCALES.get(fmt) or (float(np.min(data.ratings)), float(np.max(data.ratings)))
    scale = (float(scale[0]), float(scale[1]))
    high_cut = high_rating_cut(*scale)
    k, m, theta = conf.ranking.k, conf.ranking.m, conf.ranking.theta

    split = split_protocol(data)
    if not split.cases:
        raise ValueError(f"no user has at least {MIN_RATINGS} ratings in {input_path}")
    cases = sample_cases(split.cases, users, seed)

    model = engine.fit_model(split, scale, conf, rank=rank, reg=reg, seed=seed)
    hot = model.popular[: conf.behaviour.hot_items]
    replays = [engine.replay_user(c, model, k=k, m=m, theta=theta, high_cut=high_cut, hot_items=hot)
               for c in _progress(cases, progress, desc="replay", unit="user")]
    recents = [r.recent for r in replays]
    # Our variant of the list update: no carry-over of the previous list.
    fresh = [engine.replay_user(c, model, k=k, m=m, theta=theta, high_cut=high_cut, hot_items=hot,
                                carry_over=False) for c in cases]
    # Knobs of our predictors: chosen on a validation split of the training data only.
    vsplit = engine.validation_split(split)
    vmodel = engine.fit_model(vsplit, scale, conf, rank=rank, reg=reg, seed=seed) if len(vsplit.cases) >= 10 else None
    params, tuning = engine.tune_on_validation(split, scale, conf, rank=rank, reg=reg, seed=seed, theta=theta,
                                               vsplit=vsplit, vmodel=vmodel)
    # Knobs of the list update (decay, theta, M): chosen on the same validation split.
    variants = engine.LIST_VARIANTS
    if vmodel is not None:
        chosen, list_tuning = engine.choose_list_variant(vsplit, vmodel, k=k, high_cut=high_cut, variants=variants,
                                                           n_hot=conf.behaviour.hot_items)
    else:
        chosen, list_tuning = variants[0], {"validation_users": len(vsplit.cases), "tuned": False}
    paper_variant = engine.ListVariant(1.0, theta, m)
    test_rows = [engine.list_quality(cases, model, v, k=k, high_cut=high_cut, hot_items=hot)
                 for v in _progress(variants, progress, desc="list variants", unit="variant")]
    improved = [engine.replay_user(c, model, k=k, m=chosen.m, theta=chosen.theta, high_cut=high_cut,
                                   hot_items=hot, decay=chosen.decay) for c in cases]
    changes_improved = engine.change_rates(improved)
    rating = engine.rating_results(cases, recents, model, params)
    ranking = engine.ranking_results(cases, replays, model, n=TOP_N, theta=theta, high_cut=high_cut,
                                     hot_items=hot, fresh=fresh, others={"realtime_improved": improved})
    changes = engine.change_rates(replays)
    changes_fresh = engine.change_rates(fresh)

    # Sensitivity of the paper formula to theta (same model; everything else fixed).
    theta_sweep = []
    for th in THETAS:
        r = engine.rating_results(cases, recents, model, engine.PredictionParams(theta=th))
        theta_sweep.append({"theta": th, "rmse_realtime": r["rmse"]["paper_fallback_als"],
                            "rmse_paper_covered_only": r["rmse_paper_covered_only"],
                            "coverage": r["coverage"]})

    stream = None
    if through_stream:
        from .stream import run_through_stream

        say = (lambda msg: print(f"through-stream: {msg}", file=sys.stderr)) if progress else None
        stream = run_through_stream(cases, model, scale=scale, k=k, m=m, theta=theta, high_cut=high_cut,
                                    rate=stream_rate, broker_port=broker_port, log=say,
                                    work_dir=stream_dir, base=conf)
        # Also the in-process interleaved replay (table-like state, no broker).
        lasts = engine.replay_stream(cases, model, k=k, m=m, theta=theta, high_cut=high_cut, hot_items=hot)
        stream["in_process_identical_lists"] = int(sum(lasts.get(c.user) == rep.lists[-1]
                                                       for c, rep in zip(cases, replays, strict=False)))

    grid_rows = []
    if grid:
        combos = [(rk, rg) for rk in GRID_RANKS for rg in GRID_REGS]
        for rk, rg in _progress(combos, progress, desc="grid", unit="model"):
            gm = engine.fit_model(split, scale, conf, rank=rk, reg=rg, seed=seed)
            r = engine.rating_results(cases, recents, gm, params)
            grid_rows.append({"rank": rk, "reg": rg, "rmse_realtime": r["rmse"]["paper_fallback_als"],
                              "rmse_realtime_covered_only": r["rmse_paper_covered_only"],
                              "coverage": r["coverage"], "rmse_als": r["rmse"]["als"],
                              "rmse_realtime_improved": r["rmse"]["online_bias_knn"],
                              "rmse_blend": r["rmse"]["blend_online_knn_als"]})

    R = rating["rmse"]
    rk_all = ranking["all"]
    result = {
        "input": str(input_path),
        "format": fmt,
        "scale": list(scale),
        "users": len(cases),
        "eligible_users": split.n_eligible,
        "users_mode": str(users),
        "seed": seed,
        "rank": rank,
        "reg": reg,
        "k": k, "m": m, "theta": theta, "high_cut": high_cut,
        "n_test_ratings": rating["n_test_ratings"],
        # --- 1. rating prediction (RMSE)
        "rmse_realtime": R["paper_fallback_als"],
        "rmse_realtime_covered_only": rating["rmse_paper_covered_only"],
        "rmse_als_on_covered": rating["rmse_als_on_covered"],
        "coverage": rating["coverage"],
        "rmse_realtime_improved": R["online_bias_knn"],
        "rmse_realtime_improved_blend": R["blend_online_knn_als"],
        "rmse_als": R["als"],
        "rmse_global_mean": R["global_mean"],
        "rmse_item_mean": R["item_mean"],
        "rmse_recent_mean": R["recent_mean"],
        "rmse_variants": R,
        "theta_sweep": theta_sweep,
        "tuning": tuning,
        # --- 2. list change rate
        **changes,
        "change_rate_fresh_lists": changes_fresh["change_rate"],
        "change_rate_fresh_lists_all_pairs": changes_fresh["change_rate_all_pairs"],
        "change_rate_improved": changes_improved["change_rate"],
        "change_rate_improved_all_pairs": changes_improved["change_rate_all_pairs"],
        "list_variants": {
            "paper": {**paper_variant.as_dict(), "change_rate": changes["change_rate"],
                      "ndcg": rk_all.get("ndcg", {}).get("realtime"),
                      "hit_rate": rk_all.get("hit_rate", {}).get("realtime")},
            "improved": {**chosen.as_dict(), "change_rate": changes_improved["change_rate"],
                         "ndcg": rk_all.get("ndcg", {}).get("realtime_improved"),
                         "hit_rate": rk_all.get("hit_rate", {}).get("realtime_improved")},
            "als": {"ndcg": rk_all.get("ndcg", {}).get("als"), "hit_rate": rk_all.get("hit_rate", {}).get("als")},
            "validation": list_tuning,
            "test": test_rows,
        },
        # --- 3. ranking quality (relevant = the user's test items not already rated in training)
        "ndcg_at_10": rk_all.get("ndcg", {}),
        "precision_at_10": rk_all.get("precision", {}),
        "recall_at_10": rk_all.get("recall", {}),
        "hit_rate_at_10": rk_all.get("hit_rate", {}),
        "ranking_users": rk_all["users"],
        "ranking_high_rated": ranking["high"],
        # --- model and data
        "als_fit_seconds": model.fit_seconds,
        "similarity_seconds": model.similarity_seconds,
        "items_with_neighbours": len(model.neighbours),
        "data": {**split.stats, "skipped": dict(data.skipped),
                 "test_items_rated_before": split.n_test_items_rated_before},
    }
    if grid:
        result["grid"] = grid_rows
    if stream is not None:
        result["through_stream"] = stream
    result["seconds"] = time.perf_counter() - t_start
    result = _finite(result)

    from .report import write_report

    paths = write_report(result, out_dir)
    result["report"] = paths[0]
    result["plots"] = paths[1:]
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsys evaluate", description=(
        "Replay the paper's offline experiment (history 5, trigger 6th, test last 5; users with "
        f">= {MIN_RATINGS} ratings) with the realtime agent's own scoring functions."))
    p.add_argument("--input", required=True, help="ratings file (plain or gzip)")
    p.add_argument("--format", required=True, choices=list(FORMATS),
                   help="input format (behaviour formats: --protocol stream only)")
    p.add_argument("--protocol", choices=("paper", "stream"), default="paper",
                   help="paper: the paper's offline experiment (default); stream: prequential test-then-learn "
                        "over the time-ordered events, all rankers (evaluation/prequential.py)")
    p.add_argument("--users", default="100", help="'100' (seeded sample, the paper's size), any number, or 'all'")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rank", type=int, default=20)
    p.add_argument("--reg", type=float, default=1.0)
    p.add_argument("--grid", action="store_true", help="ranks {5,10,20,40} x lambda {0.01,0.1,1,10} (paper fig. 2)")
    p.add_argument("--out", default="eval-out", help="directory for report.md and the PNG plots")
    p.add_argument("--through-stream", action="store_true",
                   help="also send every selected user's history and trigger through the ratings topic to a "
                        "real worker process (embedded broker unless RECSYS_BROKER is set) and check its lists "
                        "match the offline replay (--protocol stream: --users users' events, default ranker)")
    p.add_argument("--stream-rate", type=float, default=300.0,
                   help="ratings per second produced in --through-stream (0 = as fast as possible)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return p


def main(argv: Sequence[str] | None = None, conf: Settings | None = None) -> int:
    args = build_parser().parse_args(argv)
    users = args.users
    if users != "all":
        try:
            if int(users) <= 0:
                raise ValueError
        except ValueError:
            build_parser().error("--users must be 'all' or a positive number")
    if args.protocol == "stream":
        return _main_stream(args, conf)
    if FORMATS[args.format].kind != "ratings":
        build_parser().error(f"--format {args.format} is a behaviour format: use it with --protocol stream")
    try:
        result = evaluate(args.input, args.format, users=users, seed=args.seed, rank=args.rank, reg=args.reg,
                          grid=args.grid, out_dir=args.out, through_stream=args.through_stream,
                          progress=not args.no_progress, stream_rate=args.stream_rate, conf=conf)
    except (ValueError, OSError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print(f"report: {result['report']}")
    for plot in result["plots"]:
        print(f"plot: {plot}")
    print(json.dumps(result, separators=(",", ":")))
    return 0


def _main_stream(args, conf: Settings | None) -> int:
    """``--protocol stream``: report paths, then the JSON line of every metric per ranker."""
    from .prequential import evaluate_stream, load_stream

    conf = conf or load_settings()
    try:
        summary, paths = evaluate_stream(args.input, args.format, conf=conf, out_dir=args.out,
                                         progress=not args.no_progress)
    except (ValueError, OSError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print(f"report: {paths[0]}")
    for plot in paths[1:]:
        print(f"plot: {plot}")
    code = 0
    if args.through_stream:  # the default and learned rankers' lists from a real worker, for a sample of users
        from .stream import check_through_stream

        stream = load_stream(args.input, args.format, conf=conf, progress=False)
        n_users = len(set(stream.users)) if args.users == "all" else int(args.users)
        say = None if args.no_progress else (lambda msg: print(f"through-stream: {msg}", file=sys.stderr))
        for ranker in ("default", "learned"):
            check = check_through_stream(stream, conf, ranker=ranker, users=n_users, rate=args.stream_rate,
                                         seed=args.seed, log=say)
            print("through-stream: " + json.dumps(check, separators=(",", ":")))
            if not (check["all_identical"] and check["users_complete"] == check["users"]):
                code = 1
    print(json.dumps(_finite(summary), separators=(",", ":")))
    return code


if __name__ == "__main__":
    sys.exit(main())
