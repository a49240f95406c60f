"""A seeded synthetic shop: catalogue, shoppers, ratings and behaviour events.

Used by the demo (its default data: a fresh install has no real data set) and by the
benchmarks. Everything is vectorised numpy and driven by one seed: the same seed gives
the same arrays and byte-identical files.

The model, so that collaborative filtering has real signal to find:

* ``n_categories`` categories of uneven sizes; every item belongs to one. Inside its
  category an item has a random popularity rank r and weight ``1 / (r + 1)`` (Zipf),
  so a few items take most ratings; item quality is normal.
* Every user has category tastes drawn from a sparse Dirichlet (a few favourite
  categories), a rating bias, and a power-law activity level (heavy and light users).
* A rating picks a user by activity, a category from the user's tastes (or, with
  probability ``EXPLORE``, uniformly: "trying something else"), an item in that
  category by popularity, and a value
  ``centre + AFFINITY * tanh(n_cat * taste[u, c] - 1) + quality[i] + bias[u] + noise``
  (in 1..5 star units), mapped to the requested scale and rounded to its ``step``.
* Timestamps increase (exponential gaps over ``span_days`` from ``start_ts``); the same
  user may rate the same item twice, as in real data (consumers de-duplicate).
* Events come in sessions: an optional ``search`` then a few ``view`` events in one
  category, each of which may go on to ``click`` -> ``cart`` -> ``purchase`` with
  decreasing probabilities that grow with the user's taste for the category; every step
  of a funnel is later than the one before.

Public API (no CLI here; ``recsys generate`` wires it up elsewhere):
:func:`generate_ratings_arrays`, :func:`generate_shop`, :class:`ShopModel`,
:func:`category_names`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

__all__ = [
    "DEFAULT_START_TS",
    "EVENTS",
    "ShopModel",
    "category_names",
    "generate_events_arrays",
    "generate_ratings_arrays",
    "generate_shop",
]

PathLike = Union[str, "os.PathLike[str]"]

#: 2024-01-01T00:00:00Z: a fixed origin so files do not depend on the clock.
DEFAULT_START_TS = 1_704_067_200.0
TASTE_ALPHA = 0.25  # Dirichlet concentration: small = few favourite categories
USER_SKEW = 2.0  # activity power law: 1 = uniform, larger = heavier users
EXPLORE = 0.15  # share of ratings/sessions in a uniformly random category
CENTRE = 3.1  # star units
AFFINITY = 1.0
QUALITY_SD = 0.5
BIAS_SD = 0.35
NOISE_SD = 0.6
_CHUNK = 1 << 20

_CATEGORIES = [
    "dress", "top", "jeans", "skirt", "jacket", "coat", "sweater", "shirt", "shorts",
    "jumpsuit", "sneakers", "boots", "sandals", "handbag", "backpack", "scarf", "hat",
    "sunglasses", "watch", "necklace",
]
_COLOURS = [
    "Black", "White", "Red", "Blue", "Green", "Navy", "Beige", "Grey", "Pink", "Yellow",
    "Burgundy", "Olive", "Ivory", "Teal",
]
_FABRIC = ["cotton", "linen", "silk", "wool", "satin", "velvet", "chiffon", "knit", "denim", "jersey"]
_MATERIALS: dict[str, list[str]] = {
    "jeans": ["slim", "straight", "wide-leg", "bootcut", "ripped", "high-rise"],
    "sneakers": ["canvas", "leather", "running", "suede", "knit", "high-top"],
    "boots": ["leather", "suede", "ankle", "knee-high", "chelsea", "rain"],
    "sandals": ["leather", "strappy", "platform", "flat", "woven"],
    "handbag": ["leather", "straw", "quilted", "canvas", "mini", "tote"],
    "backpack": ["nylon", "leather", "canvas", "roll-top", "mini"],
    "sunglasses": ["aviator", "round", "cat-eye", "square", "oversized"],
    "watch": ["steel", "gold-tone", "leather-strap", "digital", "minimalist"],
    "necklace": ["gold", "silver", "pearl", "beaded", "pendant"],
    "hat": ["straw", "wool", "bucket", "baseball", "felt"],
}


def category_names(n_categories: int) -> list[str]:
    """Readable, distinct category names ("dress", ..., then "dress-2", ...)."""
    names = []
    for k in range(n_categories):
        base = _CATEGORIES[k % len(_CATEGORIES)]
        names.append(base if k < len(_CATEGORIES) else f"{base}-{k // len(_CATEGORIES) + 1}")
    return names


def _round_to_scale(stars: np.ndarray, scale: tuple[float, float], step: float) -> np.ndarray:
    lo, hi = float(scale[0]), float(scale[1])
    if not hi > lo:
        raise ValueError(f"bad scale {scale!r}")
    x = lo + (stars - 1.0) * ((hi - lo) / 4.0)
    if step and step > 0:
        x = lo + np.round((x - lo) / step) * step
    return np.clip(x, lo, hi).astype(np.float32)


def _default_step(scale: tuple[float, float]) -> float:
    return 1.0 if float(scale[0]).is_integer() and float(scale[1]).is_integer() else 0.5


class ShopModel:
    """The hidden truth of a synthetic shop (catalogue + shoppers), from a seed.

    The catalogue depends only on ``(seed, n_items, n_categories)`` and the shoppers
    only on ``(seed, n_users, n_categories)`` (with ``n_categories`` capped at ``n_items``), so changing the number of ratings does
    not change who likes what.
    """

    def __init__(self, n_users: int, n_items: int, *, seed: int = 42, n_categories: int = 20) -> None:
        if n_users < 1 or n_items < 1:
            raise ValueError("need at least one user and one item")
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        self.seed = int(seed)
        self.n_categories = n_cat = max(1, min(int(n_categories), self.n_items))
        ss_items, ss_users, self._ss_ratings, self._ss_events = np.random.SeedSequence(self.seed).spawn(4)
        rng = np.random.default_rng(ss_items)

        # --- catalogue: every category non-empty, uneven sizes
        cat_weights = rng.dirichlet(np.full(n_cat, 2.0))
        extra = rng.choice(n_cat, size=self.n_items - n_cat, p=cat_weights) if self.n_items > n_cat else []
        self.item_category = rng.permutation(np.concatenate([np.arange(n_cat), extra]).astype(np.int32))
        self.quality = rng.normal(0.0, QUALITY_SD, self.n_items).astype(np.float32)
        self._colour = rng.integers(len(_COLOURS), size=self.n_items)
        self._material = rng.integers(1 << 30, size=self.n_items)
        # Popularity: a random ranking inside each category; the item of within-category
        # rank r (0-based) has weight 1/(r+1) (Zipf, exponent 1), sampled analytically:
        # r = floor((n_c + 1) ** U) - 1 for U uniform, so no table lookup is needed.
        key = self.item_category.astype(np.int64) * self.n_items + rng.permutation(self.n_items)
        self._item_order = np.argsort(key, kind="stable").astype(np.int32)  # by category, then rank
        cats_sorted = self.item_category[self._item_order]
        self._cat_start = np.searchsorted(cats_sorted, np.arange(n_cat), side="left").astype(np.int64)
        self._cat_size = np.bincount(self.item_category, minlength=n_cat).astype(np.int64)
        self._log_size1 = np.log(self._cat_size + 1.0)
        self.popularity_rank = np.empty(self.n_items, dtype=np.int32)  # 0 = most popular in its category
        self.popularity_rank[self._item_order] = np.arange(self.n_items) - self._cat_start[cats_sorted]

        # --- shoppers
        rng = np.random.default_rng(ss_users)
        taste = np.empty((self.n_users, n_cat), dtype=np.float32)
        for a in range(0, self.n_users, _CHUNK):
            b = min(a + _CHUNK, self.n_users)
            g = rng.standard_gamma(TASTE_ALPHA, size=(b - a, n_cat))
            g[np.arange(b - a), rng.integers(n_cat, size=b - a)] += 1e-3  # never all-zero
            taste[a:b] = g / g.sum(axis=1, keepdims=True)
        self.taste = taste
        self._taste_cum = np.cumsum(taste, axis=1)
        self._taste_cum[:, -1] = 2.0  # above any U in [0, 1): the last category catches all
        self.user_bias = rng.normal(0.0, BIAS_SD, self.n_users).astype(np.float32)
        # Activity: user of activity rank k is drawn as floor(n * U**USER_SKEW), a power
        # law (density ~ k**(1/USER_SKEW - 1)) over a random order of users.
        self._user_perm = rng.permutation(self.n_users).astype(np.int32)

    # ------------------------------------------------------------------ sampling
    @property
    def favourite_category(self) -> np.ndarray:
        return np.argmax(self.taste, axis=1).astype(np.int32)

    def _users(self, rng: np.random.Generator, n: int) -> np.ndarray:
        k = (rng.random(n) ** USER_SKEW * self.n_users).astype(np.int64)
        return self._user_perm[np.minimum(k, self.n_users - 1)]

    def _categories(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        n = users.shape[0]
        u = rng.random(n, dtype=np.float32)
        cats = (self._taste_cum[users] <= u[:, None]).sum(axis=1, dtype=np.int32)
        explore = rng.random(n) < EXPLORE
        cats[explore] = rng.integers(self.n_categories, size=int(explore.sum()), dtype=np.int32)
        return np.minimum(cats, self.n_categories - 1)

    def _items_in(self, rng: np.random.Generator, cats: np.ndarray) -> np.ndarray:
        rank = np.exp(rng.random(cats.shape[0]) * self._log_size1[cats]).astype(np.int64) - 1
        rank = np.clip(rank, 0, self._cat_size[cats] - 1)
        return self._item_order[self._cat_start[cats] + rank]

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """In (-1, 1): how much each user likes each item's category."""
        t = self.taste[users, self.item_category[items]]
        return np.tanh(t * np.float32(self.n_categories) - np.float32(1.0))

    def react(self, user: int, shown: list[int], rng: np.random.Generator, *, look: int = 5,
              click_rate: float = 0.1) -> tuple[str, int] | None:
        """What shopper ``user`` does with the list ``shown`` (item indices, best first):
        ``(event, item)`` or None. The shopper looks at the first ``look`` items in order and
        clicks one with probability ``click_rate * (1 + affinity)`` (twice the base rate for
        an item of a favourite category, none for one they dislike); a click on a liked
        item (affinity > 0.5) is a purchase one time in three. So a ranker that shows
        items fitting the shopper's tastes gets more clicks and sales: the demo's A/B."""
        for item in shown[:look]:
            a = float(self.affinity(np.array([user]), np.array([item]))[0])
            if rng.random() < click_rate * (1.0 + a):
                return ("purchase" if a > 0.5 and rng.random() < 1 / 3 else "click"), item
        return None

    def stars(self, users: np.ndarray, items: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Unrounded ratings in 1..5 star units."""
        return (np.float32(CENTRE) + np.float32(AFFINITY) * self.affinity(users, items)
                + self.quality[items] + self.user_bias[users] + noise)

    def timestamps(self, rng: np.random.Generator, n: int, start_ts: float, span_s: float) -> np.ndarray:
        gaps = rng.exponential(1.0, n)
        ts = np.cumsum(gaps)
        ts *= span_s / ts[-1] if n else 1.0
        ts += start_ts
        return ts

    def sample_ratings(
        self,
        n_ratings: int,
        *,
        scale: tuple[float, float] = (1, 5),
        step: float | None = None,
        start_ts: float = DEFAULT_START_TS,
        span_days: float = 90.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self._ss_ratings)
        n = int(n_ratings)
        step = _default_step(scale) if step is None else step
        users = np.empty(n, dtype=np.int32)
        items = np.empty(n, dtype=np.int32)
        ratings = np.empty(n, dtype=np.float32)
        for a in range(0, n, _CHUNK):
            b = min(a + _CHUNK, n)
            u = self._users(rng, b - a)
            i = self._items_in(rng, self._categories(rng, u))
            noise = rng.normal(0.0, NOISE_SD, b - a).astype(np.float32)
            users[a:b] = u
            items[a:b] = i
            ratings[a:b] = _round_to_scale(self.stars(u, i, noise), scale, step)
        ts = self.timestamps(rng, n, start_ts, span_days * 86400.0)
        return users, items, ratings, ts

    def sample_events(
        self,
        n_events: int,
        *,
        start_ts: float = DEFAULT_START_TS,
        span_days: float = 90.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(user_idx, item_idx, event_code, ts)`` sorted by ts; codes index EVENTS."""
        rng = np.random.default_rng(self._ss_events)
        n_target = int(n_events)
        if n_target <= 0:
            z = np.zeros(0, np.int32)
            return z, z, z.astype(np.int8), np.zeros(0)
        n_sessions = max(8, int(n_target / 3.5) + 8)  # ~4.4 events per session on average
        for attempt in range(20):
            out = self._sessions(rng, n_sessions, start_ts, span_days * 86400.0)
            got = out[0].shape[0]
            # Enough events, and not so many that the cut below (which keeps the earliest)
            # would leave the end of the time span without events: they must cover the
            # same period as the ratings.
            if got >= n_target and (got <= n_target * 1.05 or attempt >= 10):
                break
            n_sessions = int(n_sessions * n_target / max(got, 1) * 1.02) + 8
        return tuple(a[:n_target] for a in out)  # type: ignore[return-value]

    def _sessions(self, rng, n_sessions, start_ts, span_s):
        s_user = self._users(rng, n_sessions)
        s_cat = self._categories(rng, s_user)
        s_start = start_ts + np.sort(rng.random(n_sessions)) * span_s
        n_views = rng.geometric(1.0 / 3.0, n_sessions).astype(np.int64)  # mean 3
        v_sess = np.repeat(np.arange(n_sessions), n_views)
        nv = v_sess.shape[0]
        v_user = s_user[v_sess]
        v_cat = s_cat[v_sess].copy()
        stray = rng.random(nv) < 0.1  # a view outside the session's category
        v_cat[stray] = rng.integers(self.n_categories, size=int(stray.sum()), dtype=np.int32)
        v_items = self._items_in(rng, v_cat)
        gaps = rng.uniform(5.0, 90.0, nv)
        csum = np.cumsum(gaps)
        first = np.concatenate([[0], np.cumsum(n_views)[:-1]])
        offset = csum - (csum[first] - gaps[first])[v_sess]
        v_ts = s_start[v_sess] + offset

        aff01 = (self.affinity(v_user, v_items) + 1.0) / 2.0  # 0..1
        boost = 0.5 + aff01  # 0.5..1.5
        click = rng.random(nv) < 0.35 * boost
        cart = click & (rng.random(nv) < 0.30 * boost)
        buy = cart & (rng.random(nv) < 0.40 * boost)
        t_click = v_ts + rng.uniform(1.0, 10.0, nv)
        t_cart = t_click + rng.uniform(5.0, 60.0, nv)
        t_buy = t_cart + rng.uniform(10.0, 120.0, nv)

        searched = rng.random(n_sessions) < 0.3
        s_first_item = v_items[first]
        s_search_ts = s_start - rng.uniform(2.0, 20.0, n_sessions)

        code = {e: k for k, e in enumerate(EVENTS)}
        parts = [
            (v_user, v_items, code["view"], v_ts),
            (v_user[click], v_items[click], code["click"], t_click[click]),
            (v_user[cart], v_items[cart], code["cart"], t_cart[cart]),
            (v_user[buy], v_items[buy], code["purchase"], t_buy[buy]),
            (s_user[searched], s_first_item[searched], code["search"], s_search_ts[searched]),
        ]
        users = np.concatenate([p[0] for p in parts]).astype(np.int32)
        items = np.concatenate([p[1] for p in parts]).astype(np.int32)
        codes = np.concatenate([np.full(p[0].shape[0], p[2], np.int8) for p in parts])
        ts = np.concatenate([p[3] for p in parts])
        ts = np.round(ts, 3)  # what the file holds, so arrays and files agree
        order = np.argsort(ts, kind="stable")
        return users[order], items[order], codes[order], ts[order]

    # ------------------------------------------------------------------ names
    def item_names(self) -> list[str]:
        cats = category_names(self.n_categories)
        names = []
        for j in range(self.n_items):
            cat = cats[self.item_category[j]]
            base = cat.split("-")[0] if cat not in _CATEGORIES else cat
            words = _MATERIALS.get(base, _FABRIC)
            mat = words[self._material[j] % len(words)]
            names.append(f"{_COLOURS[self._colour[j]]} {mat} {base} #{j}")
        return names


#: Event codes of :meth:`ShopModel.sample_events` (names as in datatools.datasets.EVENT_TYPES).
EVENTS: tuple[str, ...] = ("view", "click", "cart", "purchase", "search")


def generate_ratings_arrays(
    n_users: int,
    n_items: int,
    n_ratings: int,
    *,
    seed: int = 42,
    scale: tuple[float, float] = (1, 5),
    n_categories: int = 20,
    step: float | None = None,
    start_ts: float = DEFAULT_START_TS,
    span_days: float = 90.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(user_idx int32, item_idx int32, ratings float32, ts float64)``, ts non-decreasing.

    Ratings lie in ``scale`` and are ``min + k * step``; ``step`` defaults to 1 for an
    integer scale such as (1, 5), 0.5 otherwise (pass ``step=2`` with ``scale=(2, 10)``
    for Rent the Runway-like values).
    """
    model = ShopModel(n_users, n_items, seed=seed, n_categories=n_categories)
    return model.sample_ratings(n_ratings, scale=scale, step=step, start_ts=start_ts, span_days=span_days)


def generate_events_arrays(
    n_users: int,
    n_items: int,
    n_events: int,
    *,
    seed: int = 42,
    n_categories: int = 20,
    start_ts: float = DEFAULT_START_TS,
    span_days: float = 90.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(user_idx int32, item_idx int32, event_code int8, ts float64)`` sorted by ts."""
    model = ShopModel(n_users, n_items, seed=seed, n_categories=n_categories)
    return model.sample_events(n_events, start_ts=start_ts, span_days=span_days)


def _fmt_num(x: float) -> str:
    return f"{x:.10g}"


def _write_lines(path: Path, lines) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        buf = []
        for line in lines:
            buf.append(line)
            if len(buf) >= 100_000:
                fh.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            fh.write("\n".join(buf) + "\n")


def generate_shop(
    out_dir: PathLike,
    *,
    n_users: int = 2000,
    n_items: int = 500,
    n_ratings: int = 20000,
    n_events: int | None = None,
    seed: int = 42,
    scale: tuple[float, float] = (1, 5),
    n_categories: int = 20,
    step: float | None = None,
    start_ts: float = DEFAULT_START_TS,
    span_days: float = 90.0,
) -> dict:
    """Write a synthetic shop into ``out_dir`` (created if needed):

    * ``ratings.csv``: ``user,item,rating,ts`` (format ``csv``), sorted by ts;
    * ``events.csv``: ``user,item,event,ts,category`` (format ``events-csv``), sorted by ts;
    * ``items.csv``: ``item,name,category`` (readable by ``load_item_names``).

    Ids are ``u<k>`` / ``i<k>`` (0-based). ``n_events`` defaults to ``2 * n_ratings``.
    Same arguments -> byte-identical files. Returns the paths (as ``str``, so the dict
    is JSON-serialisable as is) and counts, formats, seed and scale.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if n_events is None:
        n_events = 2 * int(n_ratings)
    model = ShopModel(n_users, n_items, seed=seed, n_categories=n_categories)
    cats = category_names(model.n_categories)

    items_path = out / "items.csv"
    names = model.item_names()
    _write_lines(items_path, (f"i{j},{names[j]},{cats[model.item_category[j]]}" for j in range(model.n_items)))

    u, i, r, ts = model.sample_ratings(n_ratings, scale=scale, step=step, start_ts=start_ts, span_days=span_days)
    ratings_path = out / "ratings.csv"
    r_list, ts_list = r.tolist(), ts.tolist()
    _write_lines(ratings_path, (
        f"u{a},i{b},{_fmt_num(c)},{d:.3f}" for a, b, c, d in zip(u.tolist(), i.tolist(), r_list, ts_list, strict=False)
    ))

    eu, ei, ec, ets = model.sample_events(n_events, start_ts=start_ts, span_days=span_days)
    events_path = out / "events.csv"
    icat = model.item_category
    _write_lines(events_path, (
        f"u{a},i{b},{EVENTS[c]},{d:.3f},{cats[icat[b]]}"
        for a, b, c, d in zip(eu.tolist(), ei.tolist(), ec.tolist(), ets.tolist(), strict=False)
    ))

    return {
        "ratings": str(ratings_path),
        "events": str(events_path),
        "items": str(items_path),
        "n_users": model.n_users,
        "n_items": model.n_items,
        "n_categories": model.n_categories,
        "n_ratings": int(u.shape[0]),
        "n_events": int(eu.shape[0]),
        "seed": int(seed),
        "scale": (float(scale[0]), float(scale[1])),
        "ratings_format": "csv",
        "events_format": "events-csv",
    }
