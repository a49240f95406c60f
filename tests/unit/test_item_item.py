"""The item-item fits behind the strong baselines (offline_als/item_item.py), on fixtures
small enough to work out by hand."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from offline_als.item_item import ease, popular_columns, rp3beta, sequential_rules, top_k_per_row


def test_sequential_rules_weigh_each_later_item_by_one_over_the_gap():
    W = sequential_rules([[0, 1, 2], [1, 0], [3]], n_items=4, steps=2).toarray()
    want = np.zeros((4, 4))
    want[0, 1] = 1.0  # 0 -> 1, gap 1 (first user)
    want[1, 2] = 1.0
    want[0, 2] = 0.5  # 0 -> 2, gap 2
    want[1, 0] = 1.0  # second user: 1 -> 0, the other direction
    np.testing.assert_allclose(W, want)


def test_sequential_rules_stop_at_steps_and_sum_over_users():
    W = sequential_rules([[0, 1, 2, 3], [0, 1]], n_items=4, steps=1).toarray()
    assert W[0, 1] == 2.0 and W[0, 2] == 0.0 and W[0, 3] == 0.0 and W[2, 3] == 1.0


def test_ease_on_three_items_shared_pairwise():
    # Each pair of items shares one user: G = X^T X = I + J, G + 1 I = 2 I + J, whose
    # inverse is I/2 - J/10: diag(P) = 0.4, off-diagonal -0.1, so B = 0.1 / 0.4 = 0.25 off it.
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=float))
    B = ease(X, lam=1.0)
    np.testing.assert_allclose(B, np.full((3, 3), 0.25) - np.diag([0.25] * 3))


def test_rp3beta_is_the_three_step_walk_divided_by_popularity():
    X = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=float))
    walk = rp3beta(X, alpha=1.0, beta=0.0, k=10).toarray()
    # P(u|i) P(j|u): item 0 -> user 0 (1) -> item 1 (1/2); item 1 -> each user (1/2) -> 0 or 2 (1/2)
    np.testing.assert_allclose(walk, [[0, 0.5, 0], [0.25, 0, 0.25], [0, 0.5, 0]])
    by_popularity = rp3beta(X, alpha=1.0, beta=1.0, k=10).toarray()  # item 1 has 2 users
    np.testing.assert_allclose(by_popularity, [[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]])
    squared = rp3beta(X, alpha=2.0, beta=0.0, k=10).toarray()
    np.testing.assert_allclose(squared, [[0, 0.25, 0], [0.0625, 0, 0.0625], [0, 0.25, 0]])


def test_top_k_keeps_the_largest_and_breaks_ties_on_the_lower_column():
    W = sp.csr_matrix(np.array([[0, 0.25, 0.5, 0.25], [0.3, 0.3, 0.3, 0], [0, 0, 0, 0]]))
    kept = top_k_per_row(W, 2).toarray()
    np.testing.assert_allclose(kept, [[0, 0.25, 0.5, 0], [0.3, 0.3, 0, 0], [0, 0, 0, 0]])


def test_popular_columns_take_the_most_users_then_the_most_recent():
    X = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 0, 1, 1], [0, 0, 1, 1]], dtype=float))  # users: 2, 1, 3, 2
    assert popular_columns(X, 2).tolist() == [0, 2]  # 2 (3 users), then 0 before 3 (same count, lower index)
    assert popular_columns(X, 2, recency=np.array([1.0, 0, 0, 5.0])).tolist() == [2, 3]  # 3 is newer than 0
    assert popular_columns(X, 10).tolist() == [0, 1, 2, 3]


def test_ease_equals_the_general_inverse_on_random_data():
    X = sp.random(300, 80, density=0.1, random_state=1, format="csr")
    X.data[:] = 1.0
    P = np.linalg.inv((X.T @ X).toarray() + 5.0 * np.eye(80))
    want = P / (-np.diag(P))
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(ease(X, 5.0), want, atol=1e-12)
    np.testing.assert_allclose(ease(X, 5.0, block=7), want, atol=1e-12)  # mirrored in blocks, the last one short
    assert ease(X, 5.0).flags.c_contiguous and ease(X, 5.0, dtype=np.float32).flags.c_contiguous  # rows read fast


def test_rp3beta_in_row_blocks_equals_it_whole():
    X = sp.random(200, 500, density=0.05, random_state=3, format="csr")
    X.data[:] = 1.0
    whole = rp3beta(X, 0.8, 0.4, k=20, block=10_000)
    assert (whole != rp3beta(X, 0.8, 0.4, k=20, block=37)).nnz == 0
    assert whole.diagonal().max() == 0.0 and np.diff(whole.indptr).max() == 20


def test_top_k_dense_keeps_the_k_best_positive_and_the_most_negative_entries_of_each_row():
    from offline_als.item_item import top_k_dense

    B = np.array([[0.0, 3.0, -1.0, 2.0, 1.0], [-1.0, -2.0, 0.5, 0.0, -3.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    got = top_k_dense(B, 2, block=2)  # blocks of 2 rows: the second block is the last row alone
    assert got.toarray().tolist() == [[0, 3, 0, 2, 0], [0, 0, 0.5, 0, 0], [5, 4, 0, 0, 0]]
    assert (top_k_dense(B, 9).toarray() == np.where(B > 0, B, 0)).all()  # k beyond the row: every positive one
    # and the most negative one of each row (the last row has none)
    assert top_k_dense(B, 2, block=2, negative=1).toarray().tolist() == [[0, 3, -1, 2, 0], [0, 0, 0.5, 0, -3], [5, 4, 0, 0, 0]]
    assert (top_k_dense(B, 9, negative=9).toarray() == B).all()
    assert top_k_dense(B, 0, negative=1, n_threads=1).toarray().tolist() == [[0, 0, -1, 0, 0], [0, 0, 0, 0, -3], [0] * 5]
    assert top_k_dense(B, 0).nnz == 0


def test_ease_in_float32_is_ease():


    rng = np.random.default_rng(2)
    X = sp.csr_matrix((rng.random((60, 15)) < 0.3).astype(float))
    B32, B64 = ease(X, 5.0, dtype=np.float32), ease(X, 5.0)
    assert B32.dtype == np.float32 and np.allclose(B32, B64, atol=1e-5)
