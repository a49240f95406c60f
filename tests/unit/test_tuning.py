"""Tuning the baselines (evaluation/tuning.py): on validation data only, over the grids."""
from __future__ import annotations

import random

import numpy as np

from app.settings import Settings
from evaluation import prequential, tuning


def stream_of(rows) -> prequential.Stream:
    n = len(rows)
    return prequential.Stream([u for u, _ in rows], [i for _, i in rows], np.ones(n), np.arange(n, dtype=float),
                              (1.0, 5.0))


def sequences(seed: int, n: int) -> list[tuple[str, str]]:
    """Users walking a ring of items (i -> i+1), so direction and neighbours matter."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        user, start = f"u{rng.randrange(40)}", rng.randrange(12)
        rows.extend((user, f"i{(start + step) % 12}") for step in range(rng.randint(1, 4)))
    return rows


FAMILIES = ("sr", "ease", "vsknn")


def test_tuning_picks_grid_values_by_validation_ndcg():
    result = tuning.tune(stream_of(sequences(1, 150)), Settings(), FAMILIES)
    assert set(result) == set(FAMILIES)
    for family, chosen in result.items():
        for name, value in chosen["params"].items():
            assert value in tuning.GRIDS[family][name]
        assert 0.0 <= chosen["ndcg_at_10"] <= chosen["hr_at_10"] <= 1.0
        assert chosen["tried"] >= max(len(v) for v in tuning.GRIDS[family].values())
    # on a ring walked forward, the rule that follows the newest item wins
    assert result["sr"]["hr_at_10"] > 0.5


def test_tuning_never_reads_the_scored_half():
    rows = sequences(2, 150)
    half = len(rows) // 2
    other = rows[:half] + [(u, "i0") for u, _ in rows[half:]]  # the scored half replaced
    assert tuning.tune(stream_of(rows), Settings(), FAMILIES) == tuning.tune(stream_of(other), Settings(), FAMILIES)
