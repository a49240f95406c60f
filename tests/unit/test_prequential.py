"""The streaming evaluation: each ranker's list on small hand-made inputs, the protocol's
counts, and the JSON line's keys."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.settings import Settings
from evaluation import baselines, tuning
from evaluation import prequential as pq
from evaluation import rankers as rk
from ranking import DefaultRanker, Interaction, PaperRanker, SimilarityIndex
from tables.state import UserState

JSON_KEYS = {"protocol", "events_scored", "users", "repeat_share", "hr_at_10", "ndcg_at_10", "mrr_at_10",
             "coverage", "novelty", "change_rate", "us_per_event", "events_new_items", "hr_at_10_new_items"}

#: sim lists: a -> x 0.9, y 0.5; b -> y 0.6, z 0.2 (symmetric rows come from SimilarityIndex)
NEIGHBOURS = {"a": {"x": 0.9, "y": 0.5}, "b": {"y": 0.6, "z": 0.2}}


def _shared(counts=None) -> rk.SharedState:
    shared = rk.SharedState(rk.TopCounter(size=3), rk.HotWindow(10.0, 1.0, 2))
    shared.index = SimilarityIndex(NEIGHBOURS)
    for item, n in (counts or {}).items():
        shared.popularity.add(item, n)
    return shared


def _state(ranker, shared, *items, user="u") -> UserState:
    """The user's state after interacting with ``items`` (rating 4, one per second), as the protocol applies them."""
    state = UserState()
    for t, item in enumerate(items):
        state.apply(t, ranker, Interaction(user, item, 4.0, float(t)), shared)
    return state


def _list(ranker, shared, *items, user="u") -> list[str]:
    return [q for q, _s in _state(ranker, shared, *items, user=user).last_list]


def test_top_counter_keeps_exact_top_and_falls_back_when_excluded():
    top = rk.TopCounter(size=2)
    for item in "abbcccd":
        top.add(item)
    assert top.top(2) == ["c", "b"]
    assert top.top(3) == ["c", "b", "a"]  # beyond the cached top 2: a full sort, still exact
    assert top.top(2, exclude={"c"}) == ["b", "a"]  # a (1) ties d (1): id order
    assert top.top(4, exclude={"c", "b"}) == ["a", "d"]
    assert top.max_count() == 3


def test_popularity_list_excludes_the_users_items():
    shared = _shared({"p": 5, "q": 3, "r": 3, "s": 1})
    assert _list(rk.Popularity(), shared, "q") == ["p", "r", "s"]
    assert _state(rk.Popularity(k=2), shared, "q").last_list == [["p", 5.0], ["r", 3.0]]


def test_window_ranks_what_the_window_held_at_the_last_hop():
    win = rk.HotWindow(size_s=10.0, step_s=5.0, n_hot=1)
    win.add("a", 0.0)
    win.add("b", 1.0)
    win.add("b", 2.0)
    win.add("c", 5.0)  # hop at 5: the window (-5, 5] held a, b, b
    assert win.ranked == ["b", "a"] and win.hot == ["b"]
    win.add("c", 12.0)  # hop at 10: (0, 10] holds b, b, c (a at 0 fell out)
    assert win.ranked == ["b", "c"] and win.ranked_counts == [2, 1]
    shared = _shared()
    shared.window = win
    assert _state(rk.PopularityWindow(), shared, "b").last_list == [["c", 1.0]]
    assert shared.hot_items == ["b"]  # what the paper ranker pads with


def test_item_knn_sums_similarities_of_recent_items():
    # y: 0.5 (a) + 0.6 (b) = 1.1; x: 0.9; z: 0.2
    assert _list(rk.ItemKNN(history=20), _shared(), "a", "b") == ["y", "x", "z"]
    assert _list(rk.ItemKNN(history=1), _shared(), "a", "b") == ["y", "z"]  # only b
    assert _list(rk.ItemKNN(), _shared(), "a", "b", "y") == ["x", "z"]


def test_the_evaluation_runs_the_agents_rankers_on_the_data_sets_scale():
    conf = Settings().replace(ranking={"k": 15, "m": 9, "theta": 0.4, "decay": 0.5, "rated_items_max": 99})
    rankers = baselines.make_rankers(conf, high_cut=6.0)
    assert list(rankers) == list(baselines.RANKER_NAMES)
    assert rankers["default"] == DefaultRanker()  # its fixed defaults
    assert rankers["paper"] == PaperRanker(k=15, m=9, theta=0.4, high_cut=6.0, rated_limit=99, decay=0.5)
    assert rankers["item_knn"] == rk.ItemKNN(history=15)


def test_default_ranker_lists_and_reasons_in_the_evaluation():
    shared = _shared()
    shared.index = SimilarityIndex(NEIGHBOURS, related={"a": {"p": 0.5}, "b": {"q": 0.4}}, counts={"z": 3})
    state = _state(DefaultRanker(decay=0.5), shared, "a", "b")
    # related lists, not the factor neighbours: q 0.4 (newest) -> 1, p 0.5 * 0.5 -> 0.625, z only
    # from the prior: 0.5 * lg(1 + 3) / lg(1 + 3) = 0.5
    assert [q for q, _ in state.last_list] == ["q", "p", "z"]
    assert state.recs["because"] == {"q": "b", "p": "a"}


def test_paper_ranker_lists_in_the_evaluation():
    assert _list(PaperRanker(k=20, m=20, theta=0.1, high_cut=3.0), _shared(), "a", "b") == ["x", "y", "z"]


def test_als_ranker_falls_back_to_popularity_for_unknown_users():
    shared = _shared({"p": 2, "q": 1})
    assert _list(rk.ALSRanker(), shared, "q", user="nobody") == ["p"]


def test_hit_metrics_by_hand():
    hr, ndcg, mrr = pq.hit_arrays([1, 3, 0])
    assert hr.mean() == pytest.approx(2 / 3)
    assert ndcg.mean() == pytest.approx((1 + 0.5) / 3)  # 1/log2(3+1) = 0.5
    assert mrr.mean() == pytest.approx((1 + 1 / 3) / 3)


def _tiny_stream() -> pq.Stream:
    # 4 users, items i0..i5; 20 events: the scored half starts at event 10
    rows = [("u1", "i0"), ("u2", "i0"), ("u3", "i1"), ("u1", "i1"), ("u2", "i2"), ("u3", "i0"),
            ("u1", "i2"), ("u2", "i1"), ("u3", "i2"), ("u1", "i3"),
            ("u2", "i3"),  # 10: scored
            ("u3", "i3"),  # 11: scored
            ("u1", "i4"),  # 12: scored
            ("u1", "i4"),  # 13: repeat, not scored
            ("u4", "i0"),  # 14: u4's first event, not scored
            ("u2", "i4"),  # 15: scored
            ("u4", "i4"),  # 16: scored
            ("u3", "i5"),  # 17: scored
            ("u2", "i5"),  # 18: scored
            ("u3", "i1"),  # 19: repeat
            ]
    return pq.Stream([u for u, _ in rows], [i for _, i in rows], np.full(len(rows), 4.0),
                     np.arange(len(rows), dtype=np.float64), (1.0, 5.0))


def test_protocol_counts_and_json_keys():
    conf = Settings().replace(als={"rank": 2, "iters": 2, "similar": 3}, behaviour={"hot_items": 3})
    raw = pq.run_stream(_tiny_stream(), conf, progress=False)
    summary = pq.summarise(raw)
    assert set(summary) == JSON_KEYS
    assert summary["events_scored"] == 7 and summary["users"] == 4
    assert summary["repeat_share"] == pytest.approx(2 / 9)  # 9 events of known users in the scored half
    for key in JSON_KEYS - {"protocol", "events_scored", "users", "repeat_share", "events_new_items"}:
        assert set(summary[key]) == set(baselines.RANKER_NAMES)
    assert len(raw["train_seconds"]) == pq.RETRAINS  # warm-up fit + 9 cuts inside the scored half
    # every retrain chose the default ranker's blend as the model worker does (here: too few events to choose by)
    assert len(raw["selections"]) == pq.RETRAINS and all("too few" in s["note"] for s in raw["selections"])
    # Popularity, list pushed after the user's previous event: u2 (10), u3 (11), u1 (12), u2 (15),
    # u3 (17), u2 (18) had every item seen by then -> empty lists, misses; u4's list after event 14
    # (counts i0 4, i1 3, i2 3, i3 3, i4 2; i0 is u4's) is [i1, i2, i3, i4]: i4 at 4.
    assert raw["tally"]["popularity"].ranks == [0, 0, 0, 0, 4, 0, 0]
    assert summarise_hr(raw, "popularity") == pytest.approx(1 / 7)
    # i4 is first seen at 12 and i5 at 17 (the scored half starts at 10): 12, 15, 16, 17, 18
    assert raw["new_item"].tolist() == [False, False, True, True, True, True, True]
    assert summary["events_new_items"] == 5 and summary["hr_at_10_new_items"]["popularity"] == pytest.approx(1 / 5)


def summarise_hr(raw, name):
    return pq.summarise(raw)["hr_at_10"][name]


def test_main_prints_the_json_line_last(tmp_path, capsys):
    from evaluation.run import main

    lines = [f"u{u},i{(u * 3 + n) % 7},view,{n * 10 + u}" for n in range(8) for u in range(5)]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(lines) + "\n")
    conf = Settings().replace(als={"rank": 2, "iters": 2, "similar": 3})
    code = main(["--protocol", "stream", "--input", str(path), "--format", "events-csv", "--out",
                 str(tmp_path / "out"), "--no-progress"], conf)
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert set(result) == JSON_KEYS | {"tuned"} and result["protocol"] == "stream"
    assert set(result["tuned"]) == set(tuning.GRIDS)  # every tuned baseline says what it was given
    report = (tmp_path / "out" / "report.md").read_text()
    assert "How the baselines were tuned" in report and "blend at each retrain" in report
    assert (tmp_path / "out" / "stream_hr_over_time.png").exists()


def test_validate_runs_default_ranker_variants_beside_two_baselines(tmp_path):
    lines = [f"u{u},i{(u * 3 + n) % 7},view,{n * 10 + u}" for n in range(16) for u in range(5)]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(lines) + "\n")
    conf = Settings().replace(als={"rank": 2, "iters": 2, "similar": 3})
    candidates = {"decay-0.5": DefaultRanker(decay=0.5), "no-prior": DefaultRanker(w_pop=0.0)}
    summary = pq.validate(path, "events-csv", candidates, conf=conf, progress=False)
    assert set(summary["hr_at_10"]) == {"decay-0.5", "no-prior", "popularity", "item_knn"}
    assert summary["events_scored"] > 0


def test_a_list_is_read_when_the_users_next_event_is_scored():
    users = [u for u in _tiny_stream().users]
    read = pq.lists_read_later(users, 10)
    # warm-up: u1's last warm event (9) is read by 12, u2's (7) by 10, u3's (8) by 11; scored half:
    # 10 -> 15, 11 -> 17, 12 -> 13, 14 -> 16, 15 -> 18, 17 -> 19; the users' last events are not read
    assert np.flatnonzero(read).tolist() == [7, 8, 9, 10, 11, 12, 14, 15, 17]


def test_the_cost_is_timed_where_a_list_is_made():
    conf = Settings().replace(als={"rank": 2, "iters": 2, "similar": 3}, behaviour={"hot_items": 3})
    raw = pq.run_stream(_tiny_stream(), conf, progress=False, train_model=False,
                        rankers={"popularity": rk.Popularity.from_settings(conf)})
    # of the scored half (10-19) the events a later one reads: 10, 11, 12, 14, 15, 17
    assert raw["tally"]["popularity"].timed_events == 6
    assert raw["tally"]["popularity"].ranks == [0, 0, 0, 0, 4, 0, 0]  # as with every list made


def test_the_default_ranker_meets_new_items_through_the_catalogue_text():
    """No model (nothing has neighbours or counts): the default ranker's lists hold only
    the items the catalogue's words recall, so a new item is hit only with a catalogue."""
    rows = [("u1", "a"), ("u2", "b"), ("u3", "a"), ("u1", "b"), ("u2", "a"), ("u3", "b"),  # warm-up
            ("u4", "x"),  # x is new; u4's first event is not scored
            ("u5", "a"), ("u5", "x"),  # scored: x reads like a
            ("u6", "b"), ("u6", "y"),  # scored: y reads like b
            ("u1", "c")]  # scored: c reads like nothing u1 had
    texts = {"a": "red wool hat", "b": "blue silk shoe", "x": "red wool scarf", "y": "blue silk dress",
             "c": "garden hose"}
    conf = Settings()
    hits = {}
    for name, words in (("with", texts), ("without", {})):
        stream = pq.Stream([u for u, _ in rows], [i for _, i in rows], np.full(len(rows), 4.0),
                           np.arange(len(rows), dtype=np.float64), (1.0, 5.0), texts=words)
        raw = pq.run_stream(stream, conf, progress=False, train_model=False,
                            rankers={"default": DefaultRanker.from_settings(conf)})
        assert raw["new_item"].tolist() == [True, True, True]
        hits[name] = raw["tally"]["default"].ranks
    assert hits == {"with": [1, 1, 0], "without": [0, 0, 0]}


def test_a_catalogue_made_of_the_events_knows_an_item_from_its_first_event_on():
    """Without a names file the catalogue is the log's own events (Taobao's category ids):
    an item is in it from its first event on, or the cold items the content recall offers
    would be those the log's future holds. y's first event is the scored one: no longer hit."""
    rows = [("u1", "a"), ("u2", "b"), ("u3", "a"), ("u1", "b"), ("u2", "a"), ("u3", "b"),
            ("u4", "x"), ("u5", "a"), ("u5", "x"), ("u6", "b"), ("u6", "y"), ("u1", "c")]
    texts = {"a": "red wool hat", "b": "blue silk shoe", "x": "red wool scarf", "y": "blue silk dress",
             "c": "garden hose"}
    conf, hits = Settings(), {}
    for from_events in (False, True):
        stream = pq.Stream([u for u, _ in rows], [i for _, i in rows], np.full(len(rows), 4.0),
                           np.arange(len(rows), dtype=np.float64), (1.0, 5.0), texts=texts,
                           catalogue_from_events=from_events)
        raw = pq.run_stream(stream, conf, progress=False, train_model=False,
                            rankers={"default": DefaultRanker.from_settings(conf)})
        hits[from_events] = raw["tally"]["default"].ranks
    assert hits == {False: [1, 1, 0], True: [1, 0, 0]}  # x was seen (index 6) before a retrain; y was not
    assert pq.listed_by(stream, 7) == {"a", "b", "x"} and pq.listed_by(stream.head(3), 2) == {"a", "b"}


def test_a_names_file_makes_the_catalogue_and_behaviour_rows_alone_do_not(tmp_path):
    (tmp_path / "events.csv").write_text("u1,i1,view,10,shoes\nu2,i2,cart,11,bags\nu1,i2,purchase,12,bags\n")
    assert pq.load_stream(tmp_path / "events.csv", "events-csv", conf=Settings(), progress=False).catalogue_from_events
    (tmp_path / "items.csv").write_text("i1,Red shoe,shoes\ni2,Blue bag,bags\n")
    stream = pq.load_stream(tmp_path / "events.csv", "events-csv", conf=Settings(), progress=False)
    assert not stream.catalogue_from_events and pq.listed_by(stream, 1) is None


def test_a_catalogue_item_nobody_had_may_be_listed():
    """The catalogue's words recall an item the stream never names (ml-latest-small's
    movies.csv lists movies nobody rated): it is the least popular item of the file."""
    rows = [("u1", "a"), ("u2", "b"), ("u1", "b"), ("u3", "a"), ("u3", "b")]
    texts = {"a": "red wool hat", "b": "blue silk shoe", "z": "red wool gloves"}
    stream = pq.Stream([u for u, _ in rows], [i for _, i in rows], np.full(len(rows), 4.0),
                       np.arange(len(rows), dtype=np.float64), (1.0, 5.0), texts=texts)
    raw = pq.run_stream(stream, Settings(), progress=False, train_model=False,
                        rankers={"default": DefaultRanker.from_settings(Settings())})
    tally = raw["tally"]["default"]
    assert "z" in tally.items and max(tally.pop_ranks) == 3  # a and b ranked 1 and 2 by the file


def test_with_a_model_window_the_retrains_learn_only_the_last_days():
    """RECSYS_MODEL_WINDOW_DAYS in the evaluation: each retrain's data is the window before
    its last event, as the model worker keeps it."""
    day = 86400.0
    stream = pq.Stream(["u1", "u2", "u1", "u3"], ["a", "b", "c", "d"], np.full(4, 4.0),
                       np.array([0.0, 1.0, 5.0, 6.0]) * day, (1.0, 5.0))
    assert list(pq.interactions(stream, 4).item_ids) == ["a", "b", "c", "d"]
    assert list(pq.interactions(stream, 4, window_days=2.0).item_ids) == ["c", "d"]
    assert list(pq.interactions(stream, 2, window_days=2.0).item_ids) == ["a", "b"]  # day 1: both within 2 days
    assert pq.interactions(stream, 4, window_days=2.0).X.shape == (2, 2)  # u1 and u3 only


def test_quiet_users_start_afresh_in_the_evaluation_as_in_the_worker():
    states = {"default": {"u1": "s1", "u2": "s2"}, "popularity": {"u1": "p1"}}
    lists = {"default": {"u1": ["a"], "u2": ["b"]}, "popularity": {}}
    last_seen = {"u1": 10.0, "u2": 500.0}
    assert pq.expire_quiet(states, lists, last_seen, before=100.0) == 1
    assert states == {"default": {"u2": "s2"}, "popularity": {}} and lists["default"] == {"u2": ["b"]}
    assert last_seen == {"u2": 500.0}


def test_the_learned_ranker_reads_the_catalogues_categories_as_a_worker_does(tmp_path, monkeypatch):
    """``recsys load`` publishes movies.csv's first genre as each item's category; the
    evaluation's learned ranker reads them, as the worker's reads ``items``."""
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n1,"Heat (1995)",Action|Crime\n2,Up (2009),'
                                         'Animation\n3,Nobody (2000),(no genres listed)\n')
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,3.0,20\n2,1,5.0,30\n")
    stream = pq.load_stream(tmp_path / "ratings.csv", "movielens-csv", conf=Settings(), progress=False)
    assert stream.categories == {"1": "Action", "2": "Animation"}
    assert stream.head(2).categories == stream.categories
    seen = []

    class Recording(rk.SharedState):
        @property
        def context(self):
            seen.append(super().context.categories)
            return super().context

    monkeypatch.setattr(pq, "SharedState", Recording)
    conf = Settings()
    pq.run_stream(stream, conf, progress=False, train_model=False,
                  rankers={"learned": baselines.make_rankers(conf, 3.0)["learned"]})
    assert seen and all(c == {"1": "Action", "2": "Animation"} for c in seen)
