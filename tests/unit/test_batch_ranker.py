"""The batch scorer (``ranking/batch.py``) gives what the per-history ranker gives."""
from __future__ import annotations

import random

import numpy as np
import pytest
import scipy.sparse as sp

from ranking import Blend, DefaultRanker, SimilarityIndex, batch, kernels
from ranking.batch import rank_many
from ranking.content import CatalogueText, ContentIndex
from tests.helpers import random_lists

WORDS = ["red", "blue", "shoe", "hat", "wool", "silk", "boot", "coat"]


def random_case(seed: int):
    """A random model (co-occurrence lists, or named sources with negative weights and a
    blend, or factor lists only; a prior or none; a catalogue's text or none), a ranker
    and histories, some with nothing near them."""
    rng = random.Random(seed)
    items = [f"i{n:02d}" for n in range(rng.randint(3, 60))]

    counts = {q: rng.randint(0, 5) for q in rng.sample(items, rng.randint(0, len(items)))}
    kind = seed % 4
    if kind == 0:
        index = SimilarityIndex(random_lists(rng, items), counts=counts)
    elif kind == 1:
        index = SimilarityIndex(related=random_lists(rng, items), counts=counts)
    else:
        blend = Blend(related=rng.choice([0.0, 0.5, 1.0]), sequential=rng.choice([0.0, 2.0]),
                      learned=rng.choice([0.0, 1.0]), decay=rng.choice([0.4, 0.9]), history=rng.choice([2, 20]),
                      w_pop=rng.choice([0.0, 0.3]))
        index = SimilarityIndex(related=random_lists(rng, items), counts=counts, blend=blend,
                                sources={"sequential": random_lists(rng, items), "learned": random_lists(rng, items, negative=True)})
    content = None
    if seed % 3 == 0:
        texts = {q: " ".join(rng.sample(WORDS, rng.randint(0, 3))) for q in items + ["new1", "new2"]}
        content = ContentIndex(CatalogueText(texts), counts, cold_min=rng.choice([1, 3]))
    own = seed % 2
    ranker = DefaultRanker(history=rng.choice([3, 20]) if own else None, decay=rng.choice([0.5, 0.8, 1.0]) if own else None,
                           w_pop=rng.choice([0.0, 0.5, 1.0]) if own else None, n_pop=rng.choice([1, 5, 50]),
                           k=rng.choice([1, 3, 20]), w_content=rng.choice([0.0, 1.0]))
    rows = []
    for _ in range(rng.randint(1, 40)):
        recent = [[q, rng.choice([4.0, 1.0, -1.0]), float(t)]
                  for t, q in enumerate(rng.sample(items, min(len(items), rng.randint(0, 12))))]
        exclude = set(rng.sample(items, min(len(items), rng.randint(0, 8)))) | {e[0] for e in recent}
        rows.append((recent, exclude if rng.random() < 0.8 else sorted(exclude)))
    return ranker, index, content, rows


@pytest.mark.parametrize("seed", range(120))
def test_rank_many_gives_each_history_the_list_rank_gives(seed):
    ranker, index, content, rows = random_case(seed)
    expected = [ranker.rank(recent, exclude, index, content=content) for recent, exclude in rows]
    assert rank_many(ranker, rows, index, content=content) == expected


@pytest.mark.parametrize("seed", range(120))
def test_without_scipys_private_first_pass_the_zero_sums_are_still_found(seed, monkeypatch):
    """``csr_matmat_maxnnz`` is not public scipy API: without it the patterns' product
    decides alone, and the lists stay the same."""
    monkeypatch.setattr(batch, "csr_matmat_maxnnz", None)
    ranker, index, content, rows = random_case(seed)
    expected = [ranker.rank(recent, exclude, index, content=content) for recent, exclude in rows]
    assert rank_many(ranker, rows, index, content=content) == expected


@pytest.mark.parametrize("seed", range(20))
def test_the_structures_size_is_the_patterns_products(seed):
    """What ``_structural_nnz`` counts is what multiplying the two patterns reaches."""
    rng = np.random.default_rng(seed)
    A = sp.random(rng.integers(1, 30), 40, density=rng.random() * 0.3, format="csr", random_state=seed)
    B = sp.random(40, rng.integers(1, 50), density=rng.random() * 0.3, format="csr", random_state=seed + 1)
    A.data[:] = 1.0
    B.data[:] = 1.0
    assert batch._structural_nnz(A, B) == (A @ B).nnz


def test_rank_many_without_explaining_gives_no_because():
    ranker, index, content, rows = random_case(5)
    got = rank_many(ranker, rows, index, content=content, explain=False)
    assert [(items, n) for items, _because, n in got] == [
        (items, n) for items, _because, n in (ranker.rank(r, e, index, content=content) for r, e in rows)]
    assert all(because == {} for _items, because, _n in got)


def test_an_empty_batch_and_an_empty_model():
    ranker = DefaultRanker()
    assert rank_many(ranker, [], SimilarityIndex()) == []
    assert rank_many(ranker, [([["a", 4.0, 1.0]], {"a"})], SimilarityIndex()) == [([], {}, 0)]


@pytest.mark.parametrize("seed", range(40))
def test_batch_steps_leave_the_states_and_steps_one_apply_at_a_time_leaves(seed):
    """A stream with users coming back within the batch, redeliveries, replays, dislikes
    and two rankers beside the default (a second default, the paper's)."""
    import copy

    from ranking import Interaction, Model, PaperRanker
    from tables.state import BatchSteps, UserState

    ranker, index, content, _rows = random_case(seed)
    rng = random.Random(seed)
    model = Model(index=index, content=content, version="v1")
    rankers = [ranker, DefaultRanker(k=5, n_pop=3), PaperRanker(k=4)]
    items = list(index.ids) or ["a"]
    users = [f"u{n}" for n in range(rng.randint(1, 8))]
    start = {u: UserState.from_value({"recent": [[q, 4.0, 0.0] for q in rng.sample(items, min(2, len(items)))],
                                      "offset": 5} if rng.random() < 0.5 else None) for u in users}
    stream, offsets = [], {u: 5 for u in users}
    for t in range(rng.randint(1, 60)):
        u = rng.choice(users)
        if stream and rng.random() < 0.15:  # the same interaction again: a replay
            stream.append(copy.copy(stream[-1]))
            continue
        offsets[u] += 1
        offset = offsets[u] if rng.random() < 0.9 else rng.randint(0, offsets[u])  # some are redeliveries
        stream.append((u, offset, rng.choice(rankers) if seed % 2 else ranker,
                       Interaction(u, rng.choice(items), rng.choice([1.0, 4.0, 5.0]), float(t + 1),
                                   dislike=rng.random() < 0.1)))
    one_at_a_time, together = copy.deepcopy(start), copy.deepcopy(start)
    expected = [one_at_a_time[u].apply(offset, r, interaction, model) for u, offset, r, interaction in stream]
    steps = BatchSteps(model)
    for u, offset, r, interaction in stream:
        steps.apply(together[u], offset, r, interaction)
    steps.flush()
    assert steps.results == expected
    assert {u: s.to_value() for u, s in together.items()} == {u: s.to_value() for u, s in one_at_a_time.items()}


def test_a_batch_that_fails_is_applied_one_at_a_time_and_only_the_bad_interaction_fails():
    from ranking import Interaction, Model
    from tables.state import BatchSteps, UserState

    index = SimilarityIndex(related={"a": {"b": 1.0}, "b": {"a": 1.0}}, counts={"a": 1, "b": 2})
    good, bad = UserState(), UserState(recent=[["a", "four", 0.0]])  # a stored rating that is no number
    model = Model(index=index, version="v1")
    alone = UserState().apply(1, DefaultRanker(), Interaction("u1", "a", 4.0, 1.0), model)
    steps = BatchSteps(model)
    steps.apply(good, 1, DefaultRanker(), Interaction("u1", "a", 4.0, 1.0))
    steps.apply(bad, 1, DefaultRanker(), Interaction("u2", "b", 4.0, 1.0))
    steps.apply(UserState(), 1, DefaultRanker(), Interaction("u3", "a", "four", 1.0))
    steps.flush()
    assert steps.results[0] == alone and alone[1].items[0][0] == "b"
    assert isinstance(steps.results[1], TypeError) and isinstance(steps.results[2], ValueError)
    assert good.offset == 1 and bad.offset is None


def test_a_model_comes_into_service_with_its_batch_arrays_built():
    """The arrays the batch rankers read are built when the worker switches to a model,
    not in the first batch that ranks with it."""
    import json

    from app.records import MODEL_MARKER_KEY
    from ranking import batch, features
    from tables.broadcast import SimilarityBroadcast

    broadcast = SimilarityBroadcast(keep_sources=True)
    for item, other in (("a", "b"), ("b", "a")):
        broadcast.apply(item.encode(), json.dumps({"version": "v1", "neighbours": {other: 0.5}, "related": {other: 0.4},
                                                   "count": 3, "sources": {"learned": {other: -0.2}}}).encode())
    broadcast.apply(MODEL_MARKER_KEY.encode(), json.dumps({"version": "v1", "items": 2}).encode())
    assert broadcast.version == "v1"
    index = broadcast.index
    assert all(index in built.cache for built in (batch._lists_of, batch._ids_of, features.stacked_lists_of))
    assert features.stacked_lists_of.cache[index].values.tolist() == [0.4, -0.2, 0.5, 0.4, -0.2, 0.5]  # related, learned, factor


@pytest.mark.parametrize("seed", range(60))
def test_each_rows_best_are_its_best_of_all(seed):
    """Whatever a row's sums (ties, a few outliers, all equal, skewed, all negative), the
    kernel's best ``n`` of it are those of sorting all its candidates that are not
    excluded (by score, then item position), with its scale and count."""
    rng = np.random.default_rng(seed)
    n, n_items = int(rng.choice([1, 3, 20, 50])), 4000
    counts = rng.choice([0, 1, n, 3 * n, 4 * n + 1, 9 * n, 40 * n, 3000], size=int(rng.integers(1, 30)))
    sums = []
    for c in counts.tolist():
        kind = rng.integers(6)
        if kind == 0:
            s = rng.random(c)
        elif kind == 1:  # coarse: many ties
            s = rng.integers(0, 4, c) / 4.0
        elif kind == 2:  # all equal
            s = np.full(c, 0.5)
        elif kind == 3:  # a few outliers above a flat rest
            s = np.where(rng.random(c) < 0.01, 10.0 + rng.random(c), rng.random(c) * 1e-3)
        elif kind == 4:  # none positive: the scale is 1
            s = -rng.random(c)
        else:
            s = np.sort(rng.exponential(size=c))
        sums.append(s)
    K = sp.csr_matrix((np.concatenate(sums), np.concatenate([rng.permutation(n_items)[:c] for c in counts.tolist()]),
                       np.concatenate([[0], np.cumsum(counts)])), shape=(counts.size, n_items))
    excludes = [np.append(rng.choice(n_items, int(rng.integers(0, 60)), replace=False), np.full(int(rng.integers(2)), -1))
                for _ in counts.tolist()]  # -1: an item the model does not know
    prior_at, w_pop = rng.random(n_items), float(rng.choice([0.0, 0.3]))
    got = kernels.best_of_rows(K.indptr, K.indices, K.data, np.concatenate([[0], np.cumsum([e.size for e in excludes])]),
                               np.concatenate(excludes), prior_at, w_pop, n, n_items)
    expected = ([], [], [], [], [])
    for r, exclude in enumerate(excludes):
        at, s = K.indices[K.indptr[r]:K.indptr[r + 1]], K.data[K.indptr[r]:K.indptr[r + 1]]
        mine = ~np.isin(at, exclude)
        at, s = at[mine], s[mine]
        scale = max(s.max(initial=0.0), 0.0) or 1.0
        score = s / scale + (w_pop * prior_at[at] if w_pop > 0 else 0.0)
        best = np.lexsort((at, -score))[:n]
        for column, values in zip(expected, ([r] * best.size, at[best], score[best], [scale], [at.size]), strict=True):
            column.extend(values)
    for got_column, expected_column in zip(got, expected, strict=True):
        np.testing.assert_array_equal(got_column, np.asarray(expected_column, dtype=got_column.dtype))
