"""The paper's evaluation protocol: which ratings are history, trigger, test and training.

Ma, Niu, Shi (2021), section 4, on Rent the Runway: keep users with at least 11
ratings; sort each user's ratings by time; the first 5 are the user's history (recent
ratings), the 6th is the rating that triggers the real-time update, the last 5 are the
test set. The ALS model is trained on every rating except the test ratings.

Decisions (documented in the report too):

* "Sorted by time" is a *stable* sort: ratings with the same timestamp (Rent the
  Runway has day resolution) keep their file order.
* The test ratings of *every* eligible user are held out of training, also when only
  a sample of users is evaluated: the 100-user run is then an exact subset of the
  all-users run, scored with the same model.
* Ratings between the trigger and the test set (users with more than 11 ratings) stay
  in training; they are not replayed as recent ratings (the list is evaluated right
  after the trigger, as in the paper).
* Duplicate (user, item) pairs are kept as in the file; :func:`split_protocol` counts
  the test items the user also rated before (they stay in training through the other
  row, as "all ratings except the test ratings" says).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datatools.datasets import RatingsArrays

#: Protocol constants of the paper.
MIN_RATINGS = 11
N_HISTORY = 5
N_TEST = 5


@dataclass
class UserCase:
    """One evaluated user: rows as ``(item, rating, ts)`` tuples, oldest first."""

    user: str
    history: list[tuple[str, float, float]]
    trigger: tuple[str, float, float]
    test: list[tuple[str, float, float]]
    train_items: list[str]  # every item of the user's training rows, in time order (deduplicated)

    @property
    def recent_ratings(self) -> list[tuple[str, float, float]]:
        """History then trigger: what the realtime agent has seen when the list is made."""
        return [*self.history, self.trigger]


@dataclass
class ProtocolSplit:
    cases: list[UserCase]  # eligible users, sorted by user id
    train_mask: np.ndarray  # bool over the rows of ``data`` (True = used to train ALS)
    data: RatingsArrays  # the input, sorted by time (stable)
    n_eligible: int = 0
    n_test_items_rated_before: int = 0  # test items the same user also has in training
    stats: dict = field(default_factory=dict)


def split_protocol(data: RatingsArrays, *, min_ratings: int = MIN_RATINGS, n_history: int = N_HISTORY,
                   n_test: int = N_TEST) -> ProtocolSplit:
    """Apply the protocol to ratings in file order (any order: they are sorted here)."""
    if min_ratings < n_history + 1 + n_test:
        raise ValueError("min_ratings must leave room for history, trigger and test")
    data = data.sorted_by_time()
    n = len(data)
    users = data.users.astype(str) if n else np.empty(0, dtype=str)
    # Group rows by user, keeping time order inside each group (stable sort by user).
    order = np.argsort(users, kind="stable")
    su = users[order]
    starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]]) if n else np.empty(0, np.int64)
    ends = np.r_[starts[1:], n] if n else np.empty(0, np.int64)
    train_mask = np.ones(n, dtype=bool)
    cases: list[UserCase] = []
    rated_before = 0
    items, ratings, ts = data.items, data.ratings, data.ts
    for a, b in zip(starts, ends, strict=False):
        if b - a < min_ratings:
            continue
        rows = order[a:b]
        rec = [(str(items[r]), float(ratings[r]), float(ts[r])) for r in rows]
        test_rows = rows[-n_test:]
        train_mask[test_rows] = False
        train_items = list(dict.fromkeys(x[0] for x in rec[:-n_test]))
        train_set = set(train_items)
        rated_before += sum(x[0] in train_set for x in rec[-n_test:])
        cases.append(UserCase(user=str(su[a]), history=rec[:n_history], trigger=rec[n_history],
                              test=rec[-n_test:], train_items=train_items))
    return ProtocolSplit(cases=cases, train_mask=train_mask, data=data, n_eligible=len(cases),
                         n_test_items_rated_before=rated_before,
                         stats={"ratings": n, "users": len(starts), "eligible_users": len(cases),
                                "train_ratings": int(train_mask.sum()),
                                "test_ratings": int(n - train_mask.sum())})


def sample_cases(cases: list[UserCase], users: str | int, seed: int) -> list[UserCase]:
    """``"all"`` or a number of users drawn without replacement (seeded, sorted by user id)."""
    if str(users) == "all":
        return list(cases)
    k = int(users)
    if k <= 0:
        raise ValueError("users must be 'all' or a positive number")
    if k >= len(cases):
        return list(cases)
    pick = np.sort(np.random.default_rng(seed).choice(len(cases), size=k, replace=False))
    return [cases[j] for j in pick]
