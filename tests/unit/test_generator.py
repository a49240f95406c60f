"""Tests of datatools.generator: determinism, shapes and ranges, skew, CF signal, and that the
written files round-trip through datatools.datasets."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from datatools import datasets as ds
from datatools import generator as gen


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    out = tmp_path_factory.mktemp("shop")
    return gen.generate_shop(out, n_users=1000, n_items=300, n_ratings=15000, n_events=20000, seed=7)


# ------------------------------------------------------------------ arrays
def test_arrays_deterministic():
    a = gen.generate_ratings_arrays(500, 200, 5000, seed=1)
    b = gen.generate_ratings_arrays(500, 200, 5000, seed=1)
    c = gen.generate_ratings_arrays(500, 200, 5000, seed=2)
    for x, y in zip(a, b, strict=False):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=False))
    e1 = gen.generate_events_arrays(500, 200, 3000, seed=1)
    e2 = gen.generate_events_arrays(500, 200, 3000, seed=1)
    for x, y in zip(e1, e2, strict=False):
        np.testing.assert_array_equal(x, y)


def test_arrays_shapes_and_ranges():
    n_users, n_items, n = 700, 250, 8000
    u, i, r, ts = gen.generate_ratings_arrays(n_users, n_items, n, seed=3)
    assert (u.dtype, i.dtype, r.dtype, ts.dtype) == (np.int32, np.int32, np.float32, np.float64)
    assert u.shape == i.shape == r.shape == ts.shape == (n,)
    assert u.min() >= 0 and u.max() < n_users
    assert i.min() >= 0 and i.max() < n_items
    assert set(np.unique(r).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(np.unique(r)) == 5  # all star values occur
    assert (np.diff(ts) >= 0).all()
    assert ts[0] >= gen.DEFAULT_START_TS


@pytest.mark.parametrize(
    "scale,step,allowed",
    [
        ((2, 10), 2, {2.0, 4.0, 6.0, 8.0, 10.0}),
        ((0.5, 5), None, {x / 2 for x in range(1, 11)}),
        ((1, 10), None, {float(x) for x in range(1, 11)}),
    ],
)
def test_other_scales(scale, step, allowed):
    _, _, r, _ = gen.generate_ratings_arrays(300, 100, 4000, seed=4, scale=scale, step=step)
    assert set(np.unique(r).tolist()) <= allowed
    assert r.min() >= scale[0] and r.max() <= scale[1]


def test_small_and_edge_sizes():
    u, i, _r, ts = gen.generate_ratings_arrays(1, 1, 10, n_categories=20)
    assert (u == 0).all() and (i == 0).all()
    u, i, _r, ts = gen.generate_ratings_arrays(5, 5, 0)
    assert u.shape == (0,) and ts.shape == (0,)
    with pytest.raises(ValueError):
        gen.generate_ratings_arrays(0, 5, 10)


def test_popularity_is_skewed():
    n_items = 500
    _, i, _, _ = gen.generate_ratings_arrays(2000, n_items, 40000, seed=5)
    counts = np.sort(np.bincount(i, minlength=n_items))[::-1]
    top_share = counts[: n_items // 10].sum() / counts.sum()
    assert top_share > 0.4, top_share  # uniform would be 0.1
    assert counts[0] > 20 * max(1, np.median(counts))


def test_collaborative_signal():
    model = gen.ShopModel(2000, 500, seed=6)
    u, i, r, _ = model.sample_ratings(40000)
    fav = model.favourite_category[u] == model.item_category[i]
    assert fav.mean() > 0.2  # users mostly rate what they like
    diffs = []
    for user in np.unique(u):
        m = u == user
        if fav[m].sum() >= 2 and (~fav[m]).sum() >= 2:
            diffs.append(r[m & fav].mean() - r[m & ~fav].mean())
    assert len(diffs) > 200
    assert np.mean(diffs) > 0.3 and np.mean(np.array(diffs) > 0) > 0.65


def test_generates_a_million_ratings():
    # The benchmarks' 10M x (1M users, 100k items) run takes a few seconds; here 1M
    # ratings, checked for shape and ranges only (no wall-clock assertion in tests).
    u, i, r, _ = gen.generate_ratings_arrays(100_000, 10_000, 1_000_000, seed=8)
    assert u.shape == i.shape == r.shape == (1_000_000,)
    assert 0 <= u.min() and u.max() < 100_000 and 0 <= i.min() and i.max() < 10_000


# ------------------------------------------------------------------ files
def test_shop_files_byte_identical(tmp_path, shop):
    again = gen.generate_shop(tmp_path / "a", n_users=1000, n_items=300, n_ratings=15000, n_events=20000, seed=7)
    other = gen.generate_shop(tmp_path / "b", n_users=1000, n_items=300, n_ratings=15000, n_events=20000, seed=8)
    for key in ("ratings", "events", "items"):
        assert Path(again[key]).read_bytes() == Path(shop[key]).read_bytes(), key
        assert Path(other[key]).read_bytes() != Path(shop[key]).read_bytes(), key
    json.dumps(shop)  # the CLI prints it as JSON
    assert shop["n_ratings"] == 15000 and shop["n_events"] == 20000


def test_shop_ratings_round_trip(shop):
    skipped = collections.Counter()
    rows = list(ds.iter_rows(shop["ratings"], shop["ratings_format"], skipped=skipped))
    assert not skipped
    assert len(rows) == shop["n_ratings"]
    assert all(r.user.startswith("u") and 0 <= int(r.user[1:]) < 1000 for r in rows)
    assert all(r.item.startswith("i") and 0 <= int(r.item[1:]) < 300 for r in rows)
    assert {r.rating for r in rows} <= {1.0, 2.0, 3.0, 4.0, 5.0}
    ts = [r.ts for r in rows]
    assert ts == sorted(ts)
    arr = ds.load_ratings(shop["ratings"], "csv")
    assert len(arr) == len(rows) and not arr.skipped


def test_shop_items_and_events_round_trip(shop):
    names = ds.load_item_names(shop["items"])
    assert len(names) == shop["n_items"] == 300
    assert all(name.endswith(f"#{item[1:]}") for item, name in names.items())
    item_cat = {}
    for line in ds.open_text_lines(shop["items"]):
        item, _, cat = line.rstrip("\n").split(",")
        item_cat[item] = cat
    assert len(set(item_cat.values())) == 20

    skipped = collections.Counter()
    events = list(ds.iter_rows(shop["events"], shop["events_format"], skipped=skipped))
    assert not skipped
    assert len(events) == shop["n_events"]
    ts = [e.ts for e in events]
    assert ts == sorted(ts)
    ratings_ts = [r.ts for r in ds.iter_rows(shop["ratings"], "csv")]
    span = ratings_ts[-1] - ratings_ts[0]
    assert ts[-1] > ratings_ts[-1] - 0.1 * span  # events cover the ratings' period, not just its start
    assert all(e.item in names for e in events)
    assert all(e.category == item_cat[e.item] for e in events)
    counts = collections.Counter(e.event for e in events)
    assert set(counts) == {"view", "click", "cart", "purchase", "search"} <= set(ds.EVENT_TYPES)
    assert counts["view"] > counts["click"] > counts["cart"] > counts["purchase"] > 0

    # funnel order: every purchase follows a cart, every cart a click, of the same
    # user and item; every click follows a view
    seen: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    need = {"click": "view", "cart": "click", "purchase": "cart"}
    for e in events:
        key = (e.user, e.item)
        if e.event in need:
            assert need[e.event] in seen[key], e
        seen[key].add(e.event)


def test_shop_other_scale(tmp_path):
    info = gen.generate_shop(tmp_path, n_users=50, n_items=30, n_ratings=500, n_events=100, scale=(2, 10), step=2)
    arr = ds.load_ratings(info["ratings"], "csv")
    assert set(np.unique(arr.ratings).tolist()) <= {2.0, 4.0, 6.0, 8.0, 10.0}
    assert info["scale"] == (2.0, 10.0)
