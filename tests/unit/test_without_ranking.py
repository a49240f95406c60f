"""``realtime_bench.py --without-ranking`` (``benchmarks/without_ranking.py``): every
rating gets a copy of the first rating's real list, so the experiment still sends lists
of the real length, and nothing else of the worker changes."""
from __future__ import annotations

from benchmarks import without_ranking
from ranking import batch
from tests.unit.test_batch_ranker import random_case


def test_every_row_gets_its_own_copy_of_the_first_rows_list(monkeypatch):
    monkeypatch.setattr(batch, "_rank_rows", batch._rank_rows)  # restored after the test
    ranker, index, _content, rows = next(case for case in map(random_case, range(1, 200, 2))
                                         if len(case[3]) > 2 and case[0].rank(*case[3][0], case[1])[0])
    first = ranker.rank(*rows[0], index)
    without_ranking.install()
    lists = batch.rank_many(ranker, rows, index)
    lists += batch.rank_many(ranker, rows[1:], index)  # later batches: the first batch's first list still
    assert lists == [first] * (2 * len(rows) - 1)
    entries = [id(entry) for items, _because, _n in lists for entry in items]
    assert len(set(entries)) == len(entries)  # a state that keeps its list never shares it with another
    assert len({id(because) for _items, because, _n in lists}) == len(lists)


def test_the_learned_rankers_recall_is_left_as_it_is(monkeypatch):
    monkeypatch.setattr(batch, "_rank_rows", batch._rank_rows)
    ranker, index, _content, rows = random_case(5)
    expected = batch.recall_many(ranker, rows, index)
    without_ranking.install()
    batch.rank_many(ranker, rows, index)
    got = batch.recall_many(ranker, rows, index)
    assert [(names, scores, list(at)) for names, scores, at in got] == \
        [(names, scores, list(at)) for names, scores, at in expected]
