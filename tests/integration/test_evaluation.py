"""The offline evaluation: protocol split, metrics, change rate, a small end-to-end run.

No broker, no shared data sets: everything is hand-made or generated into tmp_path.
"""
from __future__ import annotations

import collections
import json
import math

import numpy as np
import pytest

from datatools.datasets import RatingsArrays
from evaluation.metrics import change_rate, hit_rate_at_k, ndcg_at_k, precision_at_k, recall_at_k, rmse
from evaluation.protocol import sample_cases, split_protocol


def _arrays(rows):
    users, items, ratings, ts = zip(*rows, strict=False)
    u = np.empty(len(rows), dtype=object)
    u[:] = users
    i = np.empty(len(rows), dtype=object)
    i[:] = items
    return RatingsArrays(u, i, np.asarray(ratings, np.float32), np.asarray(ts, np.float64), collections.Counter())


@pytest.fixture
def tiny():
    rows = []
    # "a": 12 ratings given in reverse time order; items a0..a11 at ts 0..11.
    for t in reversed(range(12)):
        rows.append(("a", f"a{t}", float(2 + (t % 5) * 2), float(t)))
    # "b": 10 ratings -> not eligible.
    rows += [("b", f"b{t}", 8.0, float(t)) for t in range(10)]
    # "c": exactly 11 ratings, with a tie at ts 5 (file order decides: c5x before c5y).
    rows += [("c", f"c{t}", 10.0, float(t)) for t in range(5)]
    rows += [("c", "c5x", 4.0, 5.0), ("c", "c5y", 6.0, 5.0)]
    rows += [("c", f"c{t}", 10.0, float(t)) for t in range(7, 11)]
    return _arrays(rows)


def test_protocol_split_positions_and_exclusion(tiny):
    split = split_protocol(tiny)
    assert [c.user for c in split.cases] == ["a", "c"]  # b has < 11 ratings
    a, c = split.cases
    assert [x[0] for x in a.history] == ["a0", "a1", "a2", "a3", "a4"]
    assert a.trigger[0] == "a5"
    assert [x[0] for x in a.test] == ["a7", "a8", "a9", "a10", "a11"]
    assert a.train_items == [f"a{t}" for t in range(7)]  # a6 (between trigger and test) stays in training
    assert [x[0] for x in a.recent_ratings] == ["a0", "a1", "a2", "a3", "a4", "a5"]
    # Ties keep file order: c5x is the 6th rating (trigger), c5y the first test rating.
    assert c.trigger == ("c5x", 4.0, 5.0)
    assert [x[0] for x in c.test] == ["c5y", "c7", "c8", "c9", "c10"]
    # Test ratings are not trained on; everything else (b included) is.
    data = split.data
    test_keys = {(x.user, q) for x in split.cases for q, _, _ in x.test}
    for row in range(len(data)):
        key = (data.users[row], data.items[row])
        assert split.train_mask[row] == (key not in test_keys)
    assert split.stats["test_ratings"] == 10
    assert split.stats["train_ratings"] == len(tiny) - 10


def test_sample_cases_is_seeded(tiny):
    cases = split_protocol(tiny).cases
    assert sample_cases(cases, "all", 1) == cases
    one = sample_cases(cases, 1, 7)
    assert len(one) == 1 and one == sample_cases(cases, "1", 7)
    assert sample_cases(cases, 100, 7) == cases


def test_ranking_metrics_by_hand():
    ranked = ["x", "r1", "y", "r2", "z"]
    relevant = {"r1", "r2", "r3"}
    assert precision_at_k(ranked, relevant, 5) == pytest.approx(2 / 5)
    assert precision_at_k(ranked, relevant, 10) == pytest.approx(2 / 10)  # short list: missing = miss
    assert recall_at_k(ranked, relevant, 5) == pytest.approx(2 / 3)
    assert hit_rate_at_k(ranked, relevant, 5) == 1.0
    assert hit_rate_at_k(ranked, relevant, 1) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, relevant, 5) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["r1", "r2", "r3"], relevant, 10) == pytest.approx(1.0)
    assert ndcg_at_k(ranked, set(), 5) == 0.0 and recall_at_k(ranked, set(), 5) == 0.0


def test_change_rate_and_rmse_by_hand():
    assert change_rate(["a", "b", "c", "d"], ["c", "d", "e", "f"]) == pytest.approx(0.5)
    assert change_rate([], ["a", "b"]) == 1.0
    assert change_rate(["a", "b"], ["b", "a"]) == 0.0
    assert change_rate(["a"], []) is None
    assert rmse([1.0, 3.0], [2.0, 2.0]) == pytest.approx(1.0)


def test_evaluate_end_to_end_on_a_synthetic_shop(tmp_path, capsys):
    from datatools.generator import generate_shop
    from evaluation.run import main

    info = generate_shop(tmp_path / "shop", n_users=150, n_items=120, n_ratings=6000, seed=3)
    out = tmp_path / "out"
    assert main(["--input", info["ratings"], "--format", "csv", "--users", "all", "--out", str(out), "--rank", "5",
        "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert (out / "report.md").exists() and (out / "rmse.png").exists() and (out / "ranking.png").exists()
    assert result["users"] == result["eligible_users"] > 0
    lo, hi = result["scale"]
    span = hi - lo
    for key in ("rmse_realtime", "rmse_als", "rmse_global_mean", "rmse_item_mean", "rmse_realtime_improved"):
        assert math.isfinite(result[key]) and 0.0 <= result[key] <= span, key
    assert 0.0 <= result["coverage"] <= 1.0
    assert 0.0 <= result["change_rate"] <= 1.0
    for metric in ("ndcg_at_10", "precision_at_10", "recall_at_10", "hit_rate_at_10"):
        assert {"realtime", "als", "popularity", "item_knn"} <= set(result[metric])
        assert all(0.0 <= v <= 1.0 for v in result[metric].values())
    assert "through_stream" not in result  # offline only: no broker without --through-stream
    # Paper-faithful and improved list variants are both reported.
    assert result["list_variants"]["paper"]["decay"] == 1.0
    assert 0.0 <= result["list_variants"]["improved"]["change_rate"] <= 1.0


@pytest.mark.broker
def test_through_stream_lists_match_the_offline_replay(broker, tmp_path):
    """--through-stream: a real worker process on the embedded broker gets the same lists."""
    from pathlib import Path

    from datatools.generator import generate_shop
    from evaluation import run

    info = generate_shop(tmp_path / "shop", n_users=60, n_items=80, n_ratings=2500, seed=11)
    result = run.evaluate(info["ratings"], "csv", users="all", rank=5, out_dir=tmp_path / "out",
                          through_stream=True, progress=False, stream_rate=0, broker_port=broker.port,
                          stream_dir=tmp_path / "stream")
    s = result["through_stream"]
    assert s["users"] == result["users"] > 10
    assert s["ratings_produced"] == s["lists_received"] == 6 * s["users"]
    assert s["identical_lists"] == s["identical_all_lists"] == s["users"]
    assert s["max_abs_score_diff"] == 0.0
    assert s["in_process_identical_lists"] == s["users"]
    assert s["p50_ms"] is not None and 0.0 <= s["p50_ms"] <= s["p99_ms"]
    assert "Through the stream" in (tmp_path / "out" / "report.md").read_text()
    # The worker it started (identified by its data dir) is gone.
    mine = f"RECSYS_DATA_DIR={tmp_path / 'stream' / 'data'}".encode()
    for proc in Path("/proc").iterdir():
        try:
            assert mine not in (proc / "environ").read_bytes().split(b"\0"), "worker left behind"
        except (OSError, ValueError):
            continue


def test_evaluate_grid_and_movielens_like_scale(tmp_path):
    """A 1..5 file in the movielens-100k layout, with --grid (tiny, rank only matters for shape)."""
    from datatools.generator import generate_ratings_arrays
    from evaluation import run

    u, i, r, ts = generate_ratings_arrays(80, 60, 3000, seed=5, scale=(1, 5))
    path = tmp_path / "u.data"
    path.write_text("".join(f"{a}\t{b}\t{int(c)}\t{int(t)}\n" for a, b, c, t in zip(u, i, r, ts, strict=False)))
    run.GRID_RANKS, run.GRID_REGS = (2, 3), (0.1, 1.0)
    try:
        result = run.evaluate(path, "movielens-100k", users="10", grid=True, out_dir=tmp_path / "o",
                              progress=False)
    finally:
        run.GRID_RANKS, run.GRID_REGS = (5, 10, 20, 40), (0.01, 0.1, 1.0, 10.0)
    assert result["users"] == 10 and result["high_cut"] == 3.0
    assert len(result["grid"]) == 4
    for g in result["grid"]:
        assert math.isfinite(g["rmse_realtime"]) and math.isfinite(g["rmse_als"])
    assert (tmp_path / "o" / "grid.png").exists()


@pytest.mark.broker
def test_stream_protocol_through_stream_worker_lists_equal_the_default_rankers(broker, tmp_path):
    """--protocol stream --through-stream: behaviour events of sampled users through a real
    worker (default ranker, frozen model) give exactly the evaluation's default lists."""
    from app.settings import Settings
    from datatools.generator import generate_shop
    from evaluation.prequential import load_stream
    from evaluation.stream import check_default_through_stream
    from ranking import Blend

    info = generate_shop(tmp_path / "shop", n_users=150, n_items=150, n_ratings=4000, seed=5)
    conf = Settings().replace(als={"rank": 4, "iters": 3})
    stream = load_stream(info["events"], "events-csv", conf=conf, progress=False)
    check = check_default_through_stream(stream, conf, users=15, rate=0, broker_port=broker.port)
    # the model is the model worker's: a blend of its sources chosen by validation, not the default
    assert check["blend"]["hr_at_10"] is not None and check["blend"]["name"] != Blend().name
    assert check["users"] == check["users_complete"] == 15
    assert check["events"] == check["lists_received"] > 30
    assert check["identical_lists"] == check["events"] and check["all_identical"]


@pytest.mark.broker
def test_stream_protocol_through_stream_worker_lists_equal_the_learned_rankers(broker, tmp_path):
    """The same for the learned ranker: the weights it learnt over the warm-up half,
    published once to ranker-model, give the evaluation's learned lists in the worker."""
    from app.settings import Settings
    from datatools.generator import generate_shop
    from evaluation.prequential import load_stream
    from evaluation.stream import check_through_stream

    info = generate_shop(tmp_path / "shop", n_users=150, n_items=150, n_ratings=4000, seed=5)
    conf = Settings().replace(als={"rank": 4, "iters": 3})
    stream = load_stream(info["events"], "events-csv", conf=conf, progress=False)
    check = check_through_stream(stream, conf, ranker="learned", users=15, rate=0, broker_port=broker.port)
    assert check["ranker"] == "learned" and check["users"] == check["users_complete"] == 15
    assert check["events"] == check["lists_received"] > 30
    assert check["identical_lists"] == check["events"] and check["all_identical"]
