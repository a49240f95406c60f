"""A batch that cannot be published is never committed, and the query API sees a batch's
states while their acknowledgements travel (agents/batches.py)."""
from __future__ import annotations

import asyncio
import collections
import gc
import random
import subprocess
import sys
import types
from pathlib import Path

import pytest

from agents import batches
from app.faust_patches import at_least_once
from app.metrics import Metrics
from app.records import Rating, to_message
from app.settings import Settings
from app.worker import Worker
from ranking import SimilarityIndex
from ranking.ab import Assignment
from ranking.model import Model
from tables.state import BatchSteps, UserState
from tests.helpers import consumer_stub, message


class Event(types.SimpleNamespace):
    """A stand-in for a Faust event (which Faust refers to weakly while it is current)."""


def worker_of(app=None, user_state=None, model=None) -> Worker:
    """A Worker whose Faust parts are stand-ins: just what a batch touches."""
    topic = types.SimpleNamespace(get_topic_name=lambda: "recommendations")
    return Worker(settings=Settings(), app=app, tables=types.SimpleNamespace(user_state=user_state),
                  topics=types.SimpleNamespace(recommendations=topic, ratings=topic), model=model, catalogue=None,
                  ranking=Assignment.from_settings(Settings()), metrics=Metrics(), dead_letters=None)


def test_a_failed_publish_refuses_every_ack_of_the_batch(monkeypatch):
    consumer = consumer_stub(generation=1)
    events = [types.SimpleNamespace(message=message(offset, 1)) for offset in (10, 11, 12)]
    consumer._unacked_messages.update(e.message for e in events)
    worker = worker_of(app=types.SimpleNamespace(in_transaction=False, consumer=consumer))

    async def broker_refuses(self, values):
        raise ConnectionError("broker gone")

    monkeypatch.setattr(batches.Batch, "_outputs", broker_refuses)
    with pytest.raises(ConnectionError):
        asyncio.run(batches.Batch(worker, input_partitions=1).publish(events))
    for event in events:  # what take_events does after the agent's body
        at_least_once.ack(consumer, event.message)
    assert consumer._acked[events[0].message.tp] == []  # nothing committable: read again after the restart
    assert not consumer._unacked_messages  # and nothing waits for these acks


class AckedByHand:
    """An aiokafka producer whose acknowledgements the test gives, one future per batch."""

    def __init__(self):
        self.acks: list[asyncio.Future] = []

    def create_batch(self):
        return types.SimpleNamespace(append=lambda key, value, timestamp: True, close=lambda: None)

    async def send_batch(self, builder, topic, partition):
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]

    async def partitions_for(self, topic):
        return {0}


def publishing_one_state():
    """A batch holding a new state for alice, a producer, and the store (alice's old state)."""
    producer = AckedByHand()
    stored = {b"alice": UserState(recs={"items": [["old", 0.5]]}, offset=9).to_bytes()}
    table = types.SimpleNamespace(changelog_topic=types.SimpleNamespace(get_topic_name=lambda: "user_state-changelog"),
                                  get=stored.get,
                                  apply_changelog_batch=lambda records: stored.update((r.key, r.value) for r in records))
    worker = worker_of(user_state=table, app=types.SimpleNamespace(
        in_transaction=False, consumer=consumer_stub(generation=1),
        producer=types.SimpleNamespace(_ensure_producer=lambda: producer)))
    event = types.SimpleNamespace(message=message(10, 1))
    batch = batches.Batch(worker, input_partitions=1)
    batch.stage_state(event, b"alice", UserState(recs={"items": [["new", 0.9]]}, offset=10))
    batch.stage_list(event, b"alice", 0, b"{}")
    return worker, batch, event, producer, stored


async def until_sent(producer: AckedByHand, n: int) -> None:
    for _ in range(100):
        if len(producer.acks) == n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(producer.acks)} batches sent, not {n}")


def test_the_api_reads_a_state_whose_acks_are_awaited_and_then_the_store():
    """The list is on the topic before the broker's ack reaches the worker, so a frontend
    can ask the API for it in between: it must get that list, not the stored older one."""
    worker, batch, event, producer, stored = publishing_one_state()

    async def publish_and_ask():
        task = asyncio.create_task(batch.publish([event]))
        await until_sent(producer, 2)  # the changelog batch and the list batch
        assert worker.newest_user_state(b"alice").recs["items"] == [["new", 0.9]]
        assert UserState.from_bytes(stored[b"alice"]).recs["items"] == [["old", 0.5]]  # not in the store before the acks
        for offset, ack in enumerate(producer.acks):
            ack.set_result(types.SimpleNamespace(offset=offset))
        await task

    asyncio.run(publish_and_ask())
    assert UserState.from_bytes(stored[b"alice"]).recs["items"] == [["new", 0.9]]
    assert not worker.in_flight
    assert worker.newest_user_state(b"alice") == UserState.from_bytes(stored[b"alice"])


def test_a_refused_batch_leaves_the_api_on_the_stored_state():
    worker, batch, event, producer, _stored = publishing_one_state()

    async def publish_refused():
        task = asyncio.create_task(batch.publish([event]))
        await until_sent(producer, 2)
        for ack in producer.acks:
            ack.set_exception(ConnectionError("broker gone"))
        with pytest.raises(ConnectionError):
            await task

    asyncio.run(publish_refused())
    assert not worker.in_flight
    assert worker.newest_user_state(b"alice").recs["items"] == [["old", 0.5]]


@pytest.fixture
def gc_threshold():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.parametrize("ranker", ["default", "learned"])
def test_a_whole_batch_of_new_users_is_staged_without_a_garbage_collection(gc_threshold, ranker):
    """The worker raises the young-generation threshold above what a batch keeps alive
    until it is published (with CPython's default of 700 the collector ran every ~20
    ratings and took 7.7% of the worker's CPU): measured through the agent's own
    passes (read, rank the batch, stage), for the rankers that ship."""
    from agents import realtime

    rng = random.Random(5)
    items = [f"i{n}" for n in range(300)]
    index = SimilarityIndex(related={q: {p: round(rng.uniform(0.05, 1.0), 4) for p in rng.sample(items, 50)}
                                     for q in items},
                            counts={q: rng.randint(1, 500) for q in items}, keep_sources=ranker == "learned")
    worker = worker_of(user_state=collections.defaultdict(bytes))  # every user is new
    worker.ranking = Assignment.from_settings(Settings.from_env({"RECSYS_RANKER": ranker}))
    batch_max = 200
    batch = batches.Batch(worker, input_partitions=1)
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        model = Model(index, (), "v1")
        steps, reads = BatchSteps(model, worker.kept), []
        for offset in range(batch_max):
            key, value = to_message(Rating(user=f"u{offset}", item=rng.choice(items), rating=4.0, ts=float(offset)))
            event = Event(message=message(offset, key=key, value=value), value=value)
            reads.append(realtime.read_one(worker, event, batch, steps))
        steps.flush()
        assert realtime.stage_all(worker, reads, steps, batch, model, 0.1) == []
        live = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert len(batch.lists) == len(batch.states) == batch_max
    assert all(len(state.last_list) == 20 for _event, state in batch.states.values())
    assert 10 * batch_max < live <= batches.LIVE_OBJECTS_PER_RATING * batch_max
    batches.collect_garbage_between_batches(batch_max)
    assert gc.get_threshold()[0] >= live


def test_the_long_lived_heap_is_frozen_once_per_model_in_service():
    """A full collection no longer walks the libraries and the model (app.worker.freeze_long_lived)."""
    from app.worker import freeze_long_lived

    basis: dict = {}
    try:
        gc.unfreeze()
        freeze_long_lived(basis)  # no model yet: nothing frozen
        assert gc.get_freeze_count() == 0
        basis.update(version="v1", changes=3)
        model = [{"item": n} for n in range(1000)]  # stands for the model's containers
        freeze_long_lived(basis)
        frozen = gc.get_freeze_count()
        assert frozen >= len(model)
        batch = [[n] for n in range(200)]  # a batch's objects, under the same model: not frozen
        freeze_long_lived(basis)
        assert gc.get_freeze_count() == frozen and batch
        basis.update(version="v2")
        more = [[n] for n in range(500)]
        freeze_long_lived(basis)
        assert gc.get_freeze_count() >= frozen + len(more)
    finally:
        gc.unfreeze()


def test_quiet_users_are_those_older_than_the_ttl_before_their_partitions_watermark():
    from agents.expiry import quiet_users
    from broker.partitioning import owner_partition

    users = [f"u{n}".encode() for n in range(40)]
    p0 = [u for u in users if owner_partition(u, 2) == 0][:3]
    p1 = [u for u in users if owner_partition(u, 2) == 1][:2]
    states = [(p0[0], UserState(recent=[["i1", 5.0, 100.0], ["i2", 4.0, 150.0]]).to_bytes()),  # newest 150: quiet
              (p0[1], UserState(recent=[["i1", 5.0, 100.0], ["i2", 4.0, 900.0]]).to_bytes()),  # newest 900: active
              (p0[2], UserState().to_bytes()),  # no interaction time: kept
              (p1[0], b'{"recent": [["i1", 5.0, 10.0]]}'),  # schema 1, partition 1 has no watermark yet: kept
              (p1[1], None)]
    assert quiet_users(states, {0: 1000.0}, ttl_s=500.0, partitions=2) == [(0, p0[0])]
    assert quiet_users(states, {0: 1000.0, 1: 1000.0}, ttl_s=500.0, partitions=2) == [(0, p0[0]), (1, p1[0])]
    assert quiet_users(states, {0: 1000.0}, ttl_s=1000.0, partitions=2) == []


def test_next_offsets_are_after_the_last_event_ranked_per_partition():
    flow = types.SimpleNamespace(active=True)
    app = types.SimpleNamespace(consumer_generation_id=2, flow_control=types.SimpleNamespace(is_active=lambda: flow.active))
    current = [message(offset, 2, partition=p) for p, offset in ((0, 5), (1, 9), (0, 6), (0, 7), (1, 10))]
    stale = message(11, 1, partition=1)  # fetched before the last rebalance: skipped, read again
    events = [types.SimpleNamespace(message=m) for m in [stale, *current]]
    assert batches.next_offsets(app, events) == {0: 8, 1: 11}
    flow.active = False  # a rebalance began: nothing of the batch is committed
    assert batches.next_offsets(app, events) == {}


def rank_in_two_passes(worker, batch, model, events) -> None:
    """What ``realtime.rank_batch`` does before publishing: read every rating, rank, stage."""
    from agents import realtime

    steps = BatchSteps(model)
    reads = [realtime.read_one(worker, event, batch, steps) for event in events]
    steps.flush()
    assert realtime.stage_all(worker, reads, steps, batch, model, 0.1) == []


def test_a_user_rating_twice_in_a_batch_gets_each_rating_its_own_list():
    import orjson

    from agents.lists import interaction_of, wire_list

    items = [f"i{n}" for n in range(30)]
    rng = random.Random(3)
    index = SimilarityIndex(related={q: {p: round(rng.uniform(0.05, 1.0), 4) for p in rng.sample(items, 8)}
                                     for q in items}, counts={q: rng.randint(1, 50) for q in items})
    model = Model(index, (), "v1")
    worker = worker_of(user_state=collections.defaultdict(bytes))
    ratings = [Rating(user="u1", item="i1", rating=5.0, ts=1.0), Rating(user="u2", item="i2", rating=4.0, ts=2.0),
               Rating(user="u1", item="i3", rating=1.0, ts=3.0), Rating(user="u1", item="i4", rating=5.0, ts=4.0)]
    events = []
    for offset, rating in enumerate(ratings):
        key, value = to_message(rating)
        events.append(Event(message=message(offset, key=key, value=value), value=value))
    batch = batches.Batch(worker, input_partitions=1)
    rank_in_two_passes(worker, batch, model, events)
    alone, expected = collections.defaultdict(UserState), []
    for offset, rating in enumerate(ratings):
        state = alone[rating.user]
        state.apply(offset, worker.ranking.ranker_for(rating.user)[1], interaction_of(rating), model)
        expected.append(state.last_list)
    sent = [orjson.loads(value)["items"] for _event, _key, _owner, value in batch.lists]
    assert sent == [[list(entry) for entry in wire_list(items)] for items in expected]
    assert sent[0] != sent[2] != sent[3]


_FAULTS_OF_BATCHES = """
import resource, sys
import numpy as np
sys.path.insert(0, {root!r})
if {keep}:
    from agents.batches import keep_freed_memory
    assert keep_freed_memory()
for _ in range(2):  # the heap grows to one batch's arrays once
    arrays = [np.full(3_000_000, 1.0) for _ in range(3)]
    del arrays
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # twenty batches of three 24 MB arrays
    arrays = [np.full(3_000_000, 1.0) for _ in range(3)]
    del arrays
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
@pytest.mark.parametrize("keep", [False, True])
def test_a_batch_reuses_the_memory_the_last_batch_freed(keep):
    """Without keep_freed_memory the batches page-fault their arrays in again (glibc trims
    the heap's top and maps large blocks afresh: ~29,000 faults here); with it, the second
    batch on runs on pages the process already has."""
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", _FAULTS_OF_BATCHES.format(root=root, keep=keep)],
                         capture_output=True, text=True, timeout=120, check=True)
    faults = int(out.stdout.strip())
    if keep:
        assert faults < 500
    else:
        assert faults > 10_000  # what the test shows: the default allocator hands pages back
