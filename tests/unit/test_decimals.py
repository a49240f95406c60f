"""``ranking.decimals.rounded`` gives the floats Python's ``round`` gives."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from ranking.decimals import rounded


def _values(seed: int) -> list[float]:
    rng = random.Random(seed)
    values = [rng.uniform(-2, 2) for _ in range(2000)] + [rng.uniform(-1e-5, 1e-5) for _ in range(500)]
    values += [rng.choice([-1, 1]) * 10 ** rng.uniform(-12, 17) for _ in range(500)]
    for digits in (4, 6):  # halves and their neighbours, where rounding the product goes either way
        for _ in range(500):
            half = (rng.randint(-10**7, 10**7) + 0.5) / 10**digits
            values += [half, math.nextafter(half, math.inf), math.nextafter(half, -math.inf)]
    return values + [0.0, -0.0, math.inf, -math.inf, 2.0**52, 1e300, -1e-300]


@pytest.mark.parametrize("digits", [0, 4, 6])
@pytest.mark.parametrize("seed", range(3))
def test_rounded_is_round(seed, digits):
    values = _values(seed)
    got = rounded(np.array(values), digits)
    want = [round(x, digits) for x in values]
    assert [(g, math.copysign(1.0, g)) for g in got] == [(w, math.copysign(1.0, w)) for w in want]


def test_rounding_the_product_alone_would_differ_where_it_is_left_to_round():
    values = np.array(_values(0))
    assert (np.round(values, 6) != np.array([round(x, 6) for x in values.tolist()])).any()


def test_nan_stays_nan():
    assert math.isnan(rounded([math.nan], 6)[0])


def test_lists_rounded_together_are_each_as_on_the_wire():
    from app.records import wire_list, wire_lists

    rng = random.Random(5)
    lists = [[[f"i{j}", rng.choice([None, rng.uniform(-3, 3), (rng.randint(0, 99) + 0.5) / 1e4])]
              for j in range(rng.randint(0, 25))] for _ in range(200)]
    assert wire_lists(lists) == [wire_list(items) for items in lists]
