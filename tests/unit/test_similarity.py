"""Co-occurrence neighbours (offline_als/similarity.py)."""


def test_cooccurrence_cosines_are_shrunk_by_how_many_users_share_the_pair():
    import scipy.sparse as sp

    from offline_als.similarity import cooccurrence_neighbours

    # users x items: a and b together for 4 users; c and d together for 1 user
    rows = [(u, 0) for u in range(4)] + [(u, 1) for u in range(4)] + [(4, 2), (4, 3)]
    R = sp.csr_matrix(([1.0] * len(rows), ([r for r, _ in rows], [c for _, c in rows])), shape=(5, 4))
    plain = cooccurrence_neighbours(R, ["a", "b", "c", "d"], shrink=0.0)
    assert plain["a"] == {"b": 1.0} and plain["c"] == {"d": 1.0}  # both pairs are perfect cosines
    shrunk = cooccurrence_neighbours(R, ["a", "b", "c", "d"], shrink=5.0)
    assert shrunk["a"] == {"b": round(4 / 9, 4)} and shrunk["c"] == {"d": round(1 / 6, 4)}
