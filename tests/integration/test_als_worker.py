"""The ALS worker: its durable rating store (no broker) and the whole loop on the
embedded broker (ratings topic -> store -> ALS -> item-similarity topic)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from offline_als.store import RatingStore

# ---------------------------------------------------------------------- store (no broker)


def test_store_newest_ts_wins_and_redelivery_is_idempotent(tmp_path):
    with RatingStore(tmp_path / "s") as store:
        res = store.apply([("u1", "i1", 3.0, 10.0), ("u1", "i2", 4.0, 10.0), ("u2", "i1", 5.0, 11.0)],
                          {("ratings", 0): 3})
        assert (res.received, res.new, res.changed, res.unchanged) == (3, 3, 3, 0)
        assert (res.new_users, res.new_items) == (2, 2)
        seq = store.seq
        assert seq == 3 and store.count == 3
        # Redelivery of the same messages: nothing changes, not even the change counter.
        res = store.apply([("u1", "i1", 3.0, 10.0), ("u1", "i2", 4.0, 10.0)], {("ratings", 0): 3})
        assert (res.new, res.changed, res.unchanged) == (0, 0, 2)
        assert store.seq == seq
        # An older rating loses, a newer one wins; within one batch too.
        res = store.apply([("u1", "i1", 1.0, 5.0), ("u1", "i2", 2.0, 20.0), ("u1", "i2", 1.0, 15.0)])
        assert (res.new, res.changed, res.unchanged) == (0, 1, 2)
        assert store.get("u1", "i1") == (3.0, 10.0)
        assert store.get("u1", "i2") == (2.0, 20.0)
        # Equal ts, different rating: the later one wins.
        store.apply([("u2", "i1", 2.0, 11.0)])
        assert store.get("u2", "i1") == (2.0, 11.0)
        assert store.get("nobody", "i1") is None
        assert store.count == 3 and store.seq == seq + 2


def test_store_export_arrays_and_csr(tmp_path):
    with RatingStore(tmp_path / "s") as store:
        store.apply([("ub", "ix", 4.0, 1.0), ("ua", "iy", 2.5, 2.0), ("ub", "iy", 1.0, 3.0),
                     ("ub", "ix", 5.0, 4.0)])
        snap = store.export()
    assert len(snap) == 3 and snap.seq == 4
    assert snap.user_ids.tolist() == ["ub", "ua"] and snap.item_ids.tolist() == ["ix", "iy"]
    triples = sorted(zip(snap.user_ids[snap.user_idx].tolist(), snap.item_ids[snap.item_idx].tolist(),
                         snap.ratings.tolist(), snap.ts.tolist(), strict=False))
    assert triples == [("ua", "iy", 2.5, 2.0), ("ub", "ix", 5.0, 4.0), ("ub", "iy", 1.0, 3.0)]
    assert snap.user_idx.dtype == np.int32 and snap.ratings.dtype == np.float32
    R = snap.to_csr()
    assert R.shape == (2, 2) and R.nnz == 3
    assert R.toarray().tolist() == [[5.0, 1.0], [0.0, 2.5]]


def test_store_reopen_keeps_ratings_ids_offsets_and_meta(tmp_path):
    path = tmp_path / "s"
    with RatingStore(path) as store:
        store.apply([("u1", "i1", 3.0, 1.0), ("u2", "i2", 4.0, 2.0)], {("ratings", 0): 7, ("ratings", 1): 2})
        store.set_meta("trained", {"seq": 2, "version": "v1"})
        before = store.export()
    with RatingStore(path) as store:
        assert store.count == 2 and store.seq == 2
        assert store.offsets("ratings") == {0: 7, 1: 2}
        assert store.offsets("other") == {}
        assert store.get_meta("trained") == {"seq": 2, "version": "v1"}
        # Indices are stable: old ids keep theirs, new ones are appended.
        store.apply([("u3", "i1", 5.0, 3.0)])
        assert store.users.get("u1") == 0 and store.users.get("u3") == 2 and store.items.get("i1") == 0
        after = store.export()
    assert after.user_ids[:2].tolist() == before.user_ids.tolist()
    assert len(after) == 3


# ---------------------------------------------------------------------- worker (broker)


def _rating_messages(rows):
    return [(u.encode(), json.dumps({"user": u, "item": i, "rating": r, "ts": t}).encode()) for u, i, r, t in rows]


def _latest_per_key(messages) -> dict:
    latest = {}
    for m in messages:
        latest[m.key.decode()] = None if m.value is None else json.loads(m.value)
    return latest


@pytest.mark.broker
def test_als_worker_publishes_similarity_and_resumes_from_committed_offsets(stream_env, tmp_path):
    from app.records import MODEL_MARKER_KEY
    from broker.topics import create_topics
    from datatools.datasets import load_ratings
    from datatools.generator import generate_shop
    from offline_als.als import ALS
    from offline_als.model import model_path, store_path
    from offline_als.worker import run_als_worker
    from ranking import Blend
    from tests.brokers import consume, produce, run

    conf = stream_env.conf
    run(create_topics(conf))
    shop = generate_shop(tmp_path / "shop", n_users=80, n_items=40, n_ratings=800, seed=3)
    data = load_ratings(shop["ratings"], "csv")
    rows = list(zip(data.users.tolist(), data.items.tolist(), data.ratings.tolist(), data.ts.tolist(), strict=False))
    first, second = rows[:600], rows[600:]
    bad = [(b"u1", b"not json"), (b"u1", json.dumps({"user": "u1", "item": "i1", "rating": 99, "ts": 1}).encode()),
           (b"u1", None)]
    run(produce(conf, conf.topics.ratings, _rating_messages(first) + bad))

    stats = run(run_als_worker(conf, once=True))
    assert stats["consumed"] == 603
    assert stats["invalid"] == {"bad_json": 1, "rating_out_of_range": 1, "null_value": 1}
    assert stats["trainings"] == 1 and stats["failed_trainings"] == 0
    version1 = stats["last_version"]
    assert version1.split("+")[0].endswith(f"-{len({(u, i) for u, i, _, _ in first})}")
    rated = {i for _, i, _, _ in first}

    def marker_seen(version):
        return lambda msgs: any(m.key == MODEL_MARKER_KEY.encode() and m.value is not None
                                and json.loads(m.value)["version"] == version for m in msgs)

    msgs = run(consume(conf, conf.topics.similarity, until=marker_seen(version1), timeout=30))
    latest = _latest_per_key(msgs)
    marker = latest.pop(MODEL_MARKER_KEY)
    assert marker["version"] == version1 and marker["items"] == len(rated)
    # the blend the default ranker is to use, named in the version (60 held-back events: too few to choose)
    assert version1.endswith("+" + Blend.from_dict(marker["blend"]).tag) and "too few" in marker["blend"]["note"]
    assert sum(bool(v.get("sources", {}).get("sequential")) for v in latest.values()) >= len(rated) // 2
    assert set(latest) == rated  # one message per rated item, no tombstones
    assert all(v["version"] == version1 and v["item"] == k for k, v in latest.items())
    assert sum(bool(v["neighbours"]) for v in latest.values()) >= len(rated) - 2
    some = next(v for v in latest.values() if v["neighbours"])
    scores = list(some["neighbours"].values())
    assert scores == sorted(scores, reverse=True) and len(scores) <= conf.als.similar
    # The marker is the last message of its partition: every item message came before it.
    marker_msg = [m for m in msgs if m.key == MODEL_MARKER_KEY.encode()][-1]
    assert marker_msg.offset == max(m.offset for m in msgs if m.partition == marker_msg.partition)

    model = ALS.load(model_path(conf))
    assert model.metrics["version"] == version1
    assert set(model.item_ids.tolist()) == rated and model.n_items == len(rated)

    # Nothing new: a second run reads nothing and does not retrain.
    stats = run(run_als_worker(conf, once=True))
    assert stats["consumed"] == 0 and stats["trainings"] == 0 and stats["last_version"] == version1

    # New ratings: only they are read (offsets were stored/committed), a new version is published.
    run(produce(conf, conf.topics.ratings, _rating_messages(second)))
    stats = run(run_als_worker(conf, once=True))
    assert stats["consumed"] == len(second)
    assert stats["trainings"] == 1
    version2 = stats["last_version"]
    assert version2 != version1
    msgs = run(consume(conf, conf.topics.similarity, until=marker_seen(version2), timeout=30))
    latest = _latest_per_key(msgs)
    marker = latest.pop(MODEL_MARKER_KEY)
    all_items = {i for _, i, _, _ in rows}
    assert marker == {**marker, "version": version2, "items": len(all_items)}
    assert set(latest) == all_items and all(v["version"] == version2 for v in latest.values())

    # The group's committed offsets match what the store read.
    with RatingStore(store_path(conf)) as store:
        assert store.count == len({(u, i) for u, i, _, _ in rows})
        stored_offsets = store.offsets(conf.topics.ratings)
    assert sum(stored_offsets.values()) == len(rows) + len(bad)

    async def committed():
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition

        c = AIOKafkaConsumer(bootstrap_servers=conf.kafka.bootstrap_servers, group_id=conf.als.group,
                             enable_auto_commit=False)
        await c.start()
        try:
            return {p: await c.committed(TopicPartition(conf.topics.ratings, p)) for p in range(conf.kafka.partitions)}
        finally:
            await c.stop()

    assert run(committed()) == stored_offsets


def test_the_model_window_drops_ratings_older_than_it_before_the_newest(tmp_path):
    """RECSYS_MODEL_WINDOW_DAYS: the store keeps (and the model trains on) the last days of
    ratings by rating time; a dropped pair's newer rating later is stored again."""
    from app.settings import Settings
    from offline_als.worker import ALSWorker

    day = 86400.0
    worker = ALSWorker(Settings().replace(data_dir=tmp_path, als={"window_days": 2.0}))
    try:
        worker.store.apply([("u1", "i1", 3.0, 0.0), ("u1", "i2", 4.0, 5 * day), ("u2", "i1", 5.0, 9 * day),
                            ("u2", "i3", 2.0, 10 * day)])
        seq = worker.store.seq
        snap = worker.expire_old_ratings(worker.store.export())
        kept = sorted(zip(snap.user_ids[snap.user_idx], snap.item_ids[snap.item_idx], snap.ts.tolist(), strict=True))
        assert kept == [("u2", "i1", 9 * day), ("u2", "i3", 10 * day)]  # within 2 days of the newest (day 10)
        assert len(worker.store) == 2 and worker.store.seq == seq + 2  # a change the next training sees
        assert worker.store.get("u1", "i1") is None
        worker.store.apply([("u1", "i1", 4.0, 11 * day)])
        assert worker.store.get("u1", "i1") == (4.0, 11 * day)
    finally:
        worker.close()
    keep_all = ALSWorker(Settings().replace(data_dir=tmp_path / "all"))
    try:
        keep_all.store.apply([("u1", "i1", 3.0, 0.0), ("u2", "i1", 5.0, 900 * day)])
        assert len(keep_all.expire_old_ratings(keep_all.store.export())) == 2  # 0 = keep every rating
    finally:
        keep_all.close()


def test_should_train_triggers(tmp_path):
    """Time / count triggers, only when something changed, only when caught up (unless starving)."""

    from app.settings import Settings
    from offline_als.worker import ALSWorker

    conf = Settings().replace(data_dir=tmp_path, als={"every_min": 1.0, "every_ratings": 3})
    worker = ALSWorker(conf)
    try:
        t0 = worker._attempt_mono
        assert not worker.should_train(True, now=t0 + 3600)  # nothing stored at all
        worker.store.apply([("u1", "i1", 3.0, 1.0), ("u1", "i2", 4.0, 1.0)])
        assert not worker.should_train(True, now=t0 + 1)  # 2 changes < 3, 1 s < 60 s
        assert worker.should_train(True, now=t0 + 61)  # time trigger
        assert not worker.should_train(False, now=t0 + 61)  # still catching up
        assert worker.should_train(False, now=t0 + 181)  # starvation guard: 3 periods
        worker.store.apply([("u2", "i1", 3.0, 1.0)])
        assert worker.should_train(True, now=t0 + 1)  # count trigger
        worker.trained_seq = worker.store.seq  # as after a successful training
        assert not worker.should_train(True, now=t0 + 3600)  # nothing changed since
        worker.store.apply([("u2", "i1", 3.0, 1.0)])  # a redelivery is no change
        assert not worker.should_train(True, now=t0 + 3600)
    finally:
        worker.close()


def _shop_rows(tmp_path, **kw):
    from datatools.datasets import load_ratings
    from datatools.generator import generate_shop

    shop = generate_shop(tmp_path / "shop", **kw)
    data = load_ratings(shop["ratings"], "csv")
    return list(zip(data.users.tolist(), data.items.tolist(), data.ratings.tolist(), data.ts.tolist(), strict=False))


@pytest.mark.broker
def test_failed_training_keeps_last_model_and_tombstones_items_that_left(stream_env, tmp_path, monkeypatch):
    from app.records import MODEL_MARKER_KEY
    from broker.topics import create_topics
    from offline_als import worker as worker_mod
    from offline_als.als import ALS
    from offline_als.model import model_path
    from tests.brokers import consume, produce, run

    conf = stream_env.conf
    run(create_topics(conf))
    rows = _shop_rows(tmp_path, n_users=50, n_items=20, n_ratings=300, seed=4)
    run(produce(conf, conf.topics.ratings, _rating_messages(rows)))

    def boom(*a, **kw):
        raise RuntimeError("simulated training failure")

    monkeypatch.setattr(worker_mod, "train_and_similar", boom)
    stats = run(worker_mod.run_als_worker(conf, once=True))
    assert stats["consumed"] == 300 and stats["failed_trainings"] == 1 and stats["trainings"] == 0
    assert "simulated training failure" in stats["last_error"] and stats["last_version"] is None
    assert not model_path(conf).exists()
    monkeypatch.undo()

    # A previous model knew an item that is gone now: it gets a tombstone.
    ghost = ALS(rank=2, progress=False)
    ghost.item_factors = np.zeros((1, 2), np.float32)
    ghost.save(model_path(conf), user_ids=[], item_ids=["ghost-item"])
    # The failed attempt did not count as trained: the next run retrains without new data.
    stats = run(worker_mod.run_als_worker(conf, once=True))
    assert stats["consumed"] == 0 and stats["trainings"] == 1
    version = stats["last_version"]
    msgs = run(consume(conf, conf.topics.similarity, timeout=30,
                       until=lambda ms: any(m.key == MODEL_MARKER_KEY.encode() for m in ms)))
    latest = _latest_per_key(msgs)
    assert "ghost-item" in latest and latest["ghost-item"] is None
    assert latest[MODEL_MARKER_KEY]["version"] == version
    assert ALS.load(model_path(conf)).metrics["version"] == version


@pytest.mark.broker
def test_continuous_worker_retrains_after_new_ratings_until_stopped(stream_env, tmp_path):
    import asyncio

    from app.records import MODEL_MARKER_KEY
    from broker.topics import create_topics
    from offline_als.worker import run_als_worker
    from tests.brokers import consume, produce

    conf = stream_env.conf.replace(als={"every_ratings": 100, "every_min": 60.0}, worker={"log_every_s": 0.5})
    rows = _shop_rows(tmp_path, n_users=50, n_items=20, n_ratings=400, seed=6)

    def marker_count(msgs):  # models published (the marker goes to every partition)
        return len({m.value for m in msgs if m.key == MODEL_MARKER_KEY.encode()})

    async def scenario():
        await create_topics(conf)
        stop = asyncio.Event()
        task = asyncio.create_task(run_als_worker(conf, stop_event=stop))
        await produce(conf, conf.topics.ratings, _rating_messages(rows[:200]))
        first = await consume(conf, conf.topics.similarity, until=lambda m: marker_count(m) >= 1, timeout=40)
        await produce(conf, conf.topics.ratings, _rating_messages(rows[200:]))
        second = await consume(conf, conf.topics.similarity, until=lambda m: marker_count(m) >= 2, timeout=40)
        scraped = await asyncio.to_thread(scrape, f"http://127.0.0.1:{conf.als.metrics_port}/metrics")
        stop.set()
        stats = await asyncio.wait_for(task, 30)
        return first, second, stats, scraped

    def scrape(url):  # as Prometheus does, read back by the library's own parser
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        return {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}

    first, second, stats, scraped = asyncio.run(scenario())
    # scraped once the second model was out: it may have been trained before the last ratings were read
    assert 200 < scraped["recsys_model_ratings_consumed_total"].value <= 400
    # the second model's marker can be read before the worker counts that training
    assert scraped["recsys_model_trainings_total"].value >= 1 and scraped["recsys_model_model_age_seconds"].value >= 0
    assert scraped["recsys_model_model_info"].labels["version"]
    assert marker_count(first) >= 1 and marker_count(second) >= 2
    assert stats["consumed"] == 400 and stats["trainings"] >= 2 and stats["failed_trainings"] == 0
    markers = [json.loads(m.value) for m in second if m.key == MODEL_MARKER_KEY.encode()]
    assert markers[-1]["version"] == stats["last_version"]
    assert markers[-1]["items"] == len({i for _, i, _, _ in rows})


def test_als_worker_learns_behaviour_input_as_implicit_feedback(stream_env, tmp_path):
    """RECSYS_ALS_FEEDBACK=auto: ratings that came from behaviour events (source
    implicit:*) outnumber explicit ones, so the worker fits Hu-Koren-Volinsky ALS; the
    count survives a restart (it is kept in the store)."""
    from broker.topics import create_topics
    from offline_als.als import ALS, ImplicitALS
    from offline_als.model import model_path
    from offline_als.worker import run_als_worker
    from tests.brokers import produce, run

    conf = stream_env.conf
    run(create_topics(conf))
    rng = np.random.default_rng(5)
    events = [(f"u{u}", f"i{(u % 2) * 10 + int(rng.integers(10))}", float(rng.integers(1, 6)), 1000.0 + n)
              for n, u in enumerate(rng.integers(40, size=400).tolist())]
    explicit = [("v1", "i1", 4.0, 5.0), ("v2", "i2", 3.0, 6.0)]
    run(produce(conf, conf.topics.ratings, _rating_messages(explicit) + [
        (u.encode(), json.dumps({"user": u, "item": i, "rating": r, "ts": t, "source": "implicit:view"}).encode())
        for u, i, r, t in events]))
    stats = run(run_als_worker(conf, once=True))
    assert stats["trainings"] == 1
    model = ALS.load(model_path(conf))
    assert isinstance(model, ImplicitALS)
    # Two more explicit ratings after a restart: behaviour still dominates what the store holds.
    run(produce(conf, conf.topics.ratings, _rating_messages([("v3", "i3", 5.0, 7.0), ("v4", "i4", 2.0, 8.0)])))
    assert run(run_als_worker(conf, once=True))["trainings"] == 1
    assert isinstance(ALS.load(model_path(conf)), ImplicitALS)
