"""Seeded random train/test split of rating triples."""
from __future__ import annotations

import numpy as np


def train_test_split(users, items, ratings, test_fraction: float = 0.2, seed: int = 42):
    """Split rating triples at random into a train and a test part.

    Each triple goes to the test part independently of its user or item, like Spark's
    ``DataFrame.randomSplit``; so some test users or items may not occur in the train
    part at all (cold start), which ``ALS.predict`` handles with biases / global mean.

    Parameters
    ----------
    users, items, ratings : array-like of equal length
        The triples (any dtypes; returned as numpy arrays of the same dtype).
    test_fraction : float, default 0.2
        Share of triples in the test part, in [0, 1]. The test part has exactly
        ``round(test_fraction * n)`` triples.
    seed : int, default 42
        Seed of the numpy ``Generator``; the same seed gives the same split.

    Returns
    -------
    train, test : tuple of (users, items, ratings)
        Each part keeps the original relative order of the triples.
    """
    users, items, ratings = np.asarray(users), np.asarray(items), np.asarray(ratings)
    n = len(ratings)
    if not (len(users) == len(items) == n):
        raise ValueError("users, items and ratings must have the same length")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError("test_fraction must be in [0, 1]")
    n_test = round(test_fraction * n)
    perm = np.random.default_rng(seed).permutation(n)
    is_test = np.zeros(n, dtype=bool)
    is_test[perm[:n_test]] = True
    train = (users[~is_test], items[~is_test], ratings[~is_test])
    test = (users[is_test], items[is_test], ratings[is_test])
    return train, test
