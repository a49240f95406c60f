"""Unit tests of the offline ALS maths (no broker, small matrices, fast)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from offline_als import ALS, IdMap, ratings_to_csr, top_similar, train_test_split


def _random_triples(n_users, n_items, density, seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    return u, i, rng


def _naive_als(R, rank, reg, iterations, biases, seed, reg_offset=0.0):
    """Textbook per-row ALS in float64, the reference for the vectorised one."""
    mu = R.data.mean()
    Rc = R.astype(np.float64)
    Rc.data -= mu
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((R.shape[1], rank)).astype(np.float32).astype(np.float64)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    X = np.zeros((R.shape[0], rank))
    bu, bi = np.zeros(R.shape[0]), np.zeros(R.shape[1])

    def solve(M, other, other_bias):
        D = np.hstack([other, np.ones((len(other), 1))]) if biases else other
        out = np.zeros((M.shape[0], D.shape[1]))
        for r in range(M.shape[0]):
            idx = M.indices[M.indptr[r]:M.indptr[r + 1]]
            t = M.data[M.indptr[r]:M.indptr[r + 1]] - (other_bias[idx] if biases else 0)
            if len(idx):
                A = D[idx]
                out[r] = np.linalg.solve(A.T @ A + reg * (len(idx) + reg_offset) * np.eye(D.shape[1]), A.T @ t)
        return out

    for _ in range(iterations):
        s = solve(Rc, Y, bi)
        X, bu = s[:, :rank], (s[:, rank] if biases else bu)
        s = solve(Rc.T.tocsr(), X, bu)
        Y, bi = s[:, :rank], (s[:, rank] if biases else bi)
    return X, Y, bu, bi, mu


# ----------------------------------------------------------------------------- ALS
@pytest.mark.parametrize("solver", ["cholesky", "numpy"])
@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("dual_max", [0, 3, None])
def test_matches_naive_per_row_als(biases, dual_max, solver):
    # Rows with 0, 1, 2 and many ratings exercise the empty, closed-form, dual and
    # primal (blocked, threaded) paths; all must give the textbook solution.
    rng = np.random.default_rng(1)
    n_users, n_items = 120, 60
    counts = rng.integers(0, 30, n_users)
    counts[:30], counts[30:45], counts[45:50] = 1, 2, 0
    u = np.repeat(np.arange(n_users), counts)
    i = np.concatenate([rng.choice(n_items, c, replace=False) for c in counts])
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(n_users, n_items))
    m = ALS(rank=4, reg=0.1, iterations=3, biases=biases, progress=False,
            dual_max=dual_max, chunk_entries=40, n_threads=2, solver=solver).fit(R)
    X, Y, bu, bi, mu = _naive_als(R, 4, 0.1, 3, biases, 42)
    assert m.global_mean == pytest.approx(mu, rel=1e-6)
    np.testing.assert_allclose(m.user_factors, X, atol=2e-4)
    np.testing.assert_allclose(m.item_factors, Y, atol=2e-4)
    np.testing.assert_allclose(m.user_bias, bu, atol=2e-4)
    np.testing.assert_allclose(m.item_bias, bi, atol=2e-4)
    assert m.user_factors.dtype == np.float32


def test_spd_solve_matches_numpy():
    from offline_als.als import _spd_solve

    rng = np.random.default_rng(5)
    for k in (1, 2, 7, 21):
        A = rng.standard_normal((50, k, k + 3))
        G = (A @ A.transpose(0, 2, 1) + 0.1 * np.eye(k)).astype(np.float32)
        b = rng.standard_normal((50, k)).astype(np.float32)
        want = np.linalg.solve(G.astype(np.float64), b[:, :, None].astype(np.float64))[:, :, 0]
        np.testing.assert_allclose(_spd_solve(G, b), want, rtol=2e-3, atol=2e-3)


def test_reg_offset_matches_naive():
    rng = np.random.default_rng(2)
    u, i, _ = _random_triples(60, 30, 0.15, seed=2)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(60, 30))
    m = ALS(rank=3, reg=0.2, reg_offset=4.0, iterations=2, progress=False).fit(R)
    X, _Y, _bu, bi, _ = _naive_als(R, 3, 0.2, 2, True, 42, reg_offset=4.0)
    np.testing.assert_allclose(m.user_factors, X, atol=2e-4)
    np.testing.assert_allclose(m.item_bias, bi, atol=2e-4)


def test_rank1_matrix_is_recovered():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1, 2, 200), rng.uniform(1, 2, 100)
    full = np.outer(a, b)
    mask = rng.random(full.shape) < 0.3
    train = mask & (rng.random(full.shape) < 0.8)
    test = mask & ~train
    u, i = np.nonzero(train)
    R = ratings_to_csr(u, i, full[u, i], shape=full.shape)
    model = ALS(rank=3, reg=0.01, iterations=15, progress=False).fit(R)
    tu, ti = np.nonzero(test)
    rmse = np.sqrt(np.mean((model.predict(tu, ti) - full[tu, ti]) ** 2))
    assert rmse < 0.05 * full.std()
    assert model.train_rmse_[-1] < model.train_rmse_[0]
    assert len(model.train_rmse_) == 15


def test_constant_matrix_gives_mean_and_zero_factors():
    u, i, _ = _random_triples(50, 30, 0.3)
    R = ratings_to_csr(u, i, np.full(u.size, 3.5), shape=(50, 30))
    model = ALS(rank=5, iterations=5, progress=False).fit(R)
    assert model.global_mean == pytest.approx(3.5)
    for arr in (model.user_factors, model.item_factors, model.user_bias, model.item_bias):
        assert np.abs(arr).max() < 1e-5
    np.testing.assert_allclose(model.predict(u, i), 3.5, atol=1e-5)


def test_larger_reg_shrinks_factors():
    u, i, rng = _random_triples(80, 50, 0.3)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(80, 50))
    norms = []
    for reg in (0.01, 0.1, 1.0, 10.0):
        m = ALS(rank=5, reg=reg, iterations=5, progress=False).fit(R)
        norms.append(np.linalg.norm(m.user_factors) * np.linalg.norm(m.item_factors)
                     + np.linalg.norm(m.user_bias) + np.linalg.norm(m.item_bias))
    assert all(a > b for a, b in itertools.pairwise(norms)), norms


def test_same_seed_same_model_other_seed_differs():
    u, i, rng = _random_triples(60, 40, 0.3)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(60, 40))
    a = ALS(rank=4, iterations=4, seed=7, progress=False).fit(R)
    b = ALS(rank=4, iterations=4, seed=7, progress=False).fit(R)
    c = ALS(rank=4, iterations=4, seed=8, progress=False).fit(R)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert a.train_rmse_ == b.train_rmse_
    assert not np.allclose(a.item_factors, c.item_factors)


def test_thread_count_does_not_change_the_model():
    u, i, rng = _random_triples(200, 60, 0.2)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(200, 60))
    a = ALS(rank=5, iterations=3, progress=False, n_threads=1, chunk_entries=64).fit(R)
    b = ALS(rank=5, iterations=3, progress=False, n_threads=3, chunk_entries=64).fit(R)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_bias, b.item_bias)
    assert a.train_rmse_ == b.train_rmse_


def test_fit_does_not_modify_input_and_rejects_bad_reg():
    u, i, rng = _random_triples(20, 10, 0.5)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(20, 10))
    before = R.data.copy()
    ALS(rank=2, iterations=1, progress=False).fit(R)
    np.testing.assert_array_equal(R.data, before)
    with pytest.raises(ValueError):
        ALS(reg=0.0, progress=False).fit(R)
    dup = sp.coo_matrix((np.ones(3), ([0, 0, 1], [1, 1, 0])))  # pair (0, 1) twice
    for bad in (dup, sp.csr_matrix((np.ones(3), np.array([1, 1, 0]), np.array([0, 2, 3])))):
        with pytest.raises(ValueError, match="duplicate"):
            ALS(progress=False).fit(bad)


def test_predict_unseen_falls_back_to_biases_and_mean():
    u, i, rng = _random_triples(30, 20, 0.4)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(30, 20))
    m = ALS(rank=3, iterations=3, progress=False).fit(R)
    mu = m.global_mean
    # unseen user (-1, negative, too large) -> mean + item bias
    np.testing.assert_allclose(m.predict([-1, -5, 30], [2, 2, 2]), mu + m.item_bias[2], rtol=1e-6)
    # unseen item -> mean + user bias
    np.testing.assert_allclose(m.predict([4, 4], [-1, 99]), mu + m.user_bias[4], rtol=1e-6)
    # both unseen -> mean
    np.testing.assert_allclose(m.predict([-1], [-1]), mu, rtol=1e-6)
    # seen pair -> full model
    full = mu + m.user_bias[1] + m.item_bias[3] + m.user_factors[1] @ m.item_factors[3]
    assert m.predict(1, 3)[0] == pytest.approx(full, rel=1e-5)
    assert m.predict([1], [3], clip=(0.0, 0.5))[0] <= 0.5


def test_recommend_excludes_rated_and_ranks_by_prediction():
    u, i, rng = _random_triples(30, 25, 0.3)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(30, 25))
    m = ALS(rank=3, iterations=3, progress=False).fit(R)
    rated = R[5].indices
    items, scores = m.recommend(5, R[5], N=5)
    assert len(items) == 5 and not set(items) & set(rated)
    assert np.all(np.diff(scores) <= 0)
    np.testing.assert_allclose(scores, m.predict(np.full(5, 5), items), rtol=1e-5)
    same, _ = m.recommend(5, R, N=5)  # full matrix: row 5 is used
    np.testing.assert_array_equal(items, same)
    everything, _ = m.recommend(5, np.arange(25), N=5)
    assert everything.size == 0
    cold, _ = m.recommend(-1, None, N=3)  # unseen user: best item biases
    np.testing.assert_array_equal(cold, np.argsort(-m.item_bias, kind="stable")[:3])


def test_similar_items_exclude_themselves_and_use_latent_factors_only():
    u, i, rng = _random_triples(40, 30, 0.4)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(40, 30))
    m = ALS(rank=4, iterations=3, progress=False).fit(R)
    idx, scores = top_similar(m.item_factors, m=5, min_similarity=-1.0)
    F = m.item_factors / np.linalg.norm(m.item_factors, axis=1, keepdims=True)
    cosines = F @ F[2]
    cosines[2] = -np.inf
    np.testing.assert_array_equal(idx[2], np.argsort(-cosines, kind="stable")[:5])
    np.testing.assert_allclose(scores[2], cosines[idx[2]], rtol=1e-5)


def test_save_load_round_trip(tmp_path):
    u, i, rng = _random_triples(30, 20, 0.4)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(30, 20))
    m = ALS(rank=3, reg=0.5, iterations=2, biases=True, progress=False).fit(R)
    users = IdMap(f"u{k}" for k in range(30))
    items = IdMap(f"item-é{k}" for k in range(20))
    path = m.save(tmp_path / "model", user_ids=users.to_array(), item_ids=items.to_array(),
                  metrics={"rmse": 1.25, "note": "x"})
    assert path.endswith(".npz")
    with np.load(path, allow_pickle=False) as z:  # really pickle-free
        assert set(z.files) >= {"user_factors", "item_factors", "user_ids", "metrics"}
    back = ALS.load(path)
    for name in ("user_factors", "item_factors", "user_bias", "item_bias"):
        np.testing.assert_array_equal(getattr(back, name), getattr(m, name))
    assert back.global_mean == m.global_mean and back.train_rmse_ == m.train_rmse_
    assert back.rank == 3 and back.reg == 0.5 and back.biases is True
    assert back.metrics == {"rmse": 1.25, "note": "x"}
    assert IdMap.from_array(back.item_ids) == items
    np.testing.assert_array_equal(back.predict([0, -1], [1, 1]), m.predict([0, -1], [1, 1]))
    assert not list(tmp_path.glob("*.tmp"))


def test_ratings_to_csr_last_duplicate_wins():
    R = ratings_to_csr([0, 1, 0], [2, 0, 2], [1.0, 4.0, 5.0])
    assert R.shape == (2, 3) and R.nnz == 2
    assert R[0, 2] == 5.0 and R[1, 0] == 4.0


# ----------------------------------------------------------------------- similarity
def _brute_top(F, m, min_sim):
    norms = np.linalg.norm(F, axis=1)
    Fn = F / np.where(norms == 0, 1, norms)[:, None]
    S = Fn @ Fn.T
    np.fill_diagonal(S, -np.inf)
    S[:, norms == 0] = -np.inf
    out = []
    for r in range(len(F)):
        if norms[r] == 0:
            out.append(np.array([], dtype=int))
            continue
        order = np.argsort(-S[r], kind="stable")
        out.append(order[S[r][order] > min_sim][:m])
    return out, S


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("block", [None, 1, 7, 64, 10_000])
@pytest.mark.parametrize("min_sim", [0.0, 0.5, -1.0])
def test_top_similar_matches_brute_force(block, min_sim, n_threads):
    rng = np.random.default_rng(3)
    F = rng.standard_normal((500, 8)).astype(np.float32)
    F[[3, 77]] = 0  # zero vectors: no neighbours, nobody's neighbour
    idx, sc = top_similar(F, m=20, min_similarity=min_sim, block=block, n_threads=n_threads)
    assert idx.shape == sc.shape == (500, 20)
    assert idx.dtype == np.int32 and sc.dtype == np.float32
    want, S = _brute_top(F.astype(np.float64), 20, min_sim)
    for r in range(500):
        n = len(want[r])
        np.testing.assert_array_equal(idx[r, :n], want[r])
        assert np.all(idx[r, n:] == -1) and np.all(np.isnan(sc[r, n:]))
        np.testing.assert_allclose(sc[r, :n], S[r, want[r]], atol=1e-5)
    assert np.all(idx[[3, 77]] == -1)
    assert not np.isin([3, 77], idx).any()
    assert not (idx == np.arange(500)[:, None]).any()


def test_top_similar_small_and_edge_cases():
    idx, _sc = top_similar(np.eye(3, dtype=np.float32) + 0.1, m=5)  # m > n - 1: padded
    assert (idx[:, 2:] == -1).all() and (idx[:, :2] >= 0).all()
    idx, _sc = top_similar(np.zeros((0, 4)), m=3)
    assert idx.shape == (0, 3)
    idx, _sc = top_similar(np.array([[1.0, 0], [1, 0.1], [0, 0]]), m=5)  # a zero vector has no neighbours
    assert idx[0].tolist() == [1, -1, -1, -1, -1] and (idx[2] == -1).all()


# ----------------------------------------------------------------------- ids, split
def test_idmap_is_append_only_and_stable():
    m = IdMap(["a", "b", "a"])
    assert len(m) == 2 and m.get("a") == 0 and m.get("b") == 1
    np.testing.assert_array_equal(m.add_many(["c", "a", "d"]), [2, 0, 3])
    assert m.get("zz") == -1 and "zz" not in m and len(m) == 4
    np.testing.assert_array_equal(m.lookup(["d", "nope", "a"]), [3, -1, 0])
    assert m.id_of(2) == "c"
    back = IdMap.from_array(m.to_array())
    assert back == m and back.add("e") == 4 and back.get("a") == 0
    assert IdMap().to_array().shape == (0,)


def test_train_test_split_is_seeded_and_complete():
    u, i, r = np.arange(1000), np.arange(1000) % 7, np.arange(1000) / 10
    (tu, ti, _tr), (eu, _ei, _er) = train_test_split(u, i, r, test_fraction=0.2, seed=42)
    assert len(eu) == 200 and len(tu) == 800
    assert sorted(np.concatenate([tu, eu]).tolist()) == list(range(1000))
    np.testing.assert_array_equal(ti, i[tu])
    (tu2, _, _), _ = train_test_split(u, i, r, seed=42)
    (tu3, _, _), _ = train_test_split(u, i, r, seed=1)
    np.testing.assert_array_equal(tu, tu2)
    assert not np.array_equal(tu, tu3)


def test_train_rmse_is_the_rmse_of_the_fitted_model():
    u, i, rng = _random_triples(70, 40, 0.3)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(70, 40))
    m = ALS(rank=4, iterations=3, progress=False, dual_max=2).fit(R)
    uu = np.repeat(np.arange(70), np.diff(R.indptr))
    direct = np.sqrt(np.mean((m.predict(uu, R.indices) - R.data) ** 2))
    assert m.train_rmse_[-1] == pytest.approx(direct, rel=1e-4)


def test_fit_logs_each_iteration(caplog):
    u, i, rng = _random_triples(20, 10, 0.5)
    R = ratings_to_csr(u, i, rng.integers(1, 6, u.size), shape=(20, 10))
    with caplog.at_level("INFO", logger="offline_als"):
        m = ALS(rank=2, iterations=3, progress=False).fit(R)
    lines = [r.getMessage() for r in caplog.records if "train RMSE" in r.getMessage()]
    assert len(lines) == 3 and f"{m.train_rmse_[-1]:.4f}" in lines[-1]
    assert m.fit_time_ > 0


# ---------------------------------------------------------------------- implicit feedback
def _two_tastes(n_users=60, n_items=20, seed=0):
    """Users 0..29 touch only items 0..9, users 30..59 only items 10..19 (weights 1..5)."""
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for u in range(n_users):
        block = 0 if u < n_users // 2 else n_items // 2
        for i in rng.choice(n_items // 2, size=4, replace=False):
            rows.append(u), cols.append(block + i), vals.append(float(rng.integers(1, 6)))
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)


def test_implicit_als_learns_which_items_go_together_and_round_trips(tmp_path):
    from offline_als.als import ImplicitALS

    R = _two_tastes()
    model = ImplicitALS(rank=4, iterations=15, progress=False, n_threads=1).fit(R)
    assert model.user_factors.shape == (60, 4) and model.item_factors.shape == (20, 4)
    for u in (0, 45):
        items, _ = model.recommend(u, exclude=R[u], N=3)
        block = range(10) if u < 30 else range(10, 20)
        assert set(items.tolist()) <= set(block) and not set(items.tolist()) & set(R[u].indices.tolist())
    similar, _ = top_similar(model.item_factors, m=5)
    assert set(similar[3].tolist()) <= set(range(10))
    loaded = ALS.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, ImplicitALS) and loaded.alpha == model.alpha
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)


def test_the_settings_choose_implicit_feedback_for_behaviour_input():
    from app.settings import SettingError, Settings
    from offline_als.als import ImplicitALS
    from offline_als.model import als_from_settings

    auto = Settings()
    assert type(als_from_settings(auto)) is ALS
    assert type(als_from_settings(auto, behaviour=True)) is ImplicitALS
    assert type(als_from_settings(Settings().replace(als={"feedback": "explicit"}), behaviour=True)) is ALS
    assert type(als_from_settings(Settings().replace(als={"feedback": "implicit"}))) is ImplicitALS
    with pytest.raises(SettingError, match="RECSYS_ALS_FEEDBACK='implict': use one of auto, explicit, implicit"):
        Settings().replace(als={"feedback": "implict"})
