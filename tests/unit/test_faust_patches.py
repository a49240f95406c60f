"""The patches of Faust internals (app/faust_patches): each test fails without its patch.
(The guard that checks upstream before they are applied: tests/unit/test_faust_guard.py.)"""
from __future__ import annotations

import asyncio
import collections
import threading
import types

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from app import faust_patches
from app.faust_patches import at_least_once, fetch_wait
from app.metrics import Metrics
from app.settings import Settings
from app.worker import build_worker
from tests.helpers import consumer_stub, message


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


@pytest.fixture(scope="module")
def patched():
    """The patches as a worker installs them (importing the app installs nothing)."""
    faust_patches.apply(tansu=False, value_resets={}, metrics=Metrics())


def test_the_app_runs_with_every_patch_installed(tmp_path):
    app = build_worker(Settings().replace(kafka={"broker_engine": "kafka"}, data_dir=tmp_path)).app
    assert Consumer.ack is at_least_once.ack
    assert Consumer._drain_messages is at_least_once.drain_messages
    assert isinstance(app.monitor, faust_patches.QuietMonitor)
    assert app.monitor.on_stream_event_in(None, 0, None, None) is None
    assert "messages_received_total" in app.monitor.asdict()  # the rest of the Monitor still works


# ------------------------------------------------------------------ acks
@pytest.mark.parametrize("generation, flow_active", [(1, True), (2, False)])
def test_an_ack_of_a_skipped_message_is_not_committable(generation, flow_active):
    """A stream acks what it skips in a rebalance (old generation, or flow suspended):
    upstream records it, so the next commit jumps past the cleared buffer."""
    stale = message(40, generation)
    upstream = consumer_stub(generation=2, flow_active=flow_active)
    upstream._unacked_messages.add(stale)
    assert at_least_once._original_ack(upstream, stale) is True
    assert upstream._acked[stale.tp] == [40]  # upstream: committable

    stale = message(40, generation)
    patched = consumer_stub(generation=2, flow_active=flow_active)
    patched._unacked_messages.add(stale)
    assert at_least_once.ack(patched, stale) is False
    assert patched._acked[stale.tp] == []  # not committable: read again after the seek
    assert stale not in patched._unacked_messages and stale.acked  # and nothing waits for it


def test_a_refused_ack_waits_for_the_ack_lock_like_upstream_acks():
    """Faust acks under one process-wide lock (an event may be acked from another thread);
    a refused ack must not flip ``acked`` and the unacked set while someone holds it."""
    from faust.types.tuples import ack_lock

    consumer = consumer_stub(generation=2)
    stale = message(40, 1)
    consumer._unacked_messages.add(stale)
    with ack_lock:
        refusing = threading.Thread(target=at_least_once.refuse_ack, args=(consumer, stale))
        refusing.start()
        refusing.join(timeout=0.2)
        assert refusing.is_alive() and not stale.acked and stale in consumer._unacked_messages
    refusing.join(timeout=5)
    assert stale.acked and stale not in consumer._unacked_messages


def test_a_processed_message_of_the_current_generation_is_acked_as_before():
    consumer = consumer_stub(generation=3)
    msg = message(7, 3)
    assert at_least_once.ack(consumer, msg) is True
    assert consumer._acked[msg.tp] == [7] and consumer._n_acked == 1


# ------------------------------------------------------------------ gaps
@pytest.mark.parametrize("first, got, real", [(10, 10, True), (None, 10, True), (4, 10, False), (10, 12, False)])
def test_a_jump_is_a_gap_only_when_the_broker_holds_nothing_before_the_message(first, got, real):
    assert at_least_once.gap_is_real(first, got) is real


class FakeChecker:
    def __init__(self, first):
        self.first = first

    async def first_offset_from(self, tp, offset, limit):
        return self.first


@pytest.mark.parametrize("first, real", [(10, True), (5, False)])
def test_checking_a_jump_records_only_real_gaps(first, real):
    consumer = types.SimpleNamespace(_gap=collections.defaultdict(IntervalTree))
    consumer.__dict__["_gap_checker"] = FakeChecker(first)
    tp = TP("ratings", 1)
    assert run(at_least_once._check_jump(consumer, tp, 5, 10)) is real
    covered = sorted(o for iv in consumer._gap[tp] for o in range(iv.begin, iv.end))
    assert covered == ([5, 6, 7, 8, 9] if real else [])  # the real gap counts as acked, nothing else


# ------------------------------------------------------------------ end of recovery
def recovery_stub(calls: list):
    async def perform_seek():
        calls.append("seek")

    async def maybe_start():
        calls.append("fetcher")

    async def wait(coro, timeout=None):
        await coro

    consumer = types.SimpleNamespace(assignment=lambda: {TP("ratings", 0), TP("app-user_state-changelog", 0)},
                                     perform_seek=perform_seek, resume_flow=lambda: calls.append("resume_flow"),
                                     resume_partitions=lambda tps: calls.append(("resume_partitions", sorted(tps))))
    flow = types.SimpleNamespace(resume=lambda: calls.append("flow_control.resume (clears buffers)"))
    app_stub = types.SimpleNamespace(consumer=consumer, flow_control=flow, conf=types.SimpleNamespace(
        broker_request_timeout=5), _fetcher=types.SimpleNamespace(maybe_start=maybe_start))
    return types.SimpleNamespace(app=app_stub, _is_changelog_tp=lambda tp: tp.topic.endswith("-changelog"),
                                 _wait=wait, completed=asyncio.Event(), log=types.SimpleNamespace(info=print))


def test_stream_partitions_resume_only_after_the_buffers_were_cleared(patched):
    """Upstream resumes the stream partitions, seeks, then resume() clears the buffers:
    what the fetch loop delivered in between was dropped with its offsets read."""
    from faust.tables.recovery import Recovery

    from app.faust_patches import changelog_rebuild

    installed = {Recovery.on_recovery_completed, changelog_rebuild._next_on_recovery_completed}
    assert at_least_once.on_recovery_completed in installed and at_least_once._resume_streams is \
        Recovery._resume_streams
    calls: list = []
    run(at_least_once.resume_streams_in_order(recovery_stub(calls)))
    assert calls == ["seek", "flow_control.resume (clears buffers)", "resume_flow",
                     ("resume_partitions", [TP("ratings", 0)]), "fetcher"]


# ------------------------------------------------------------------ deliveries
def test_a_delivery_that_need_not_wait_is_done_before_anything_else_runs():
    delivered = []

    async def deliver(message):
        async with asyncio.Lock():  # uncontended, as the conductor's lock is between rebalances
            delivered.append(message)

    async def main():
        others = asyncio.ensure_future(asyncio.sleep(0))  # a task that would run at the next turn
        assert at_least_once.start_delivery(deliver("m1"), flow_suspended=False) is None
        assert delivered == ["m1"] and not others.done()  # done synchronously: nothing interleaved
        await others

    run(main())


def test_a_delivery_that_has_to_wait_continues_as_a_task_and_can_be_cancelled():
    steps = []

    async def deliver(lock, message):
        try:
            async with lock:  # held by a rebalance
                steps.append(message)
                return "delivered"
        finally:
            steps.append("finally")

    async def main():
        lock = asyncio.Lock()
        await lock.acquire()
        rest = at_least_once.start_delivery(deliver(lock, "m1"), flow_suspended=False)
        assert rest is not None and steps == []
        task = asyncio.ensure_future(rest)  # what mode's wait_first does with it
        await asyncio.sleep(0)
        lock.release()
        assert await task == "delivered" and steps == ["m1", "finally"]

        await lock.acquire()
        task = asyncio.ensure_future(at_least_once.start_delivery(deliver(lock, "m2"), flow_suspended=False))
        await asyncio.sleep(0)
        task.cancel()  # wait_first cancels the loser
        with pytest.raises(asyncio.CancelledError):
            await task
        assert steps == ["m1", "finally", "finally"]  # never delivered, and cleaned up

    run(main())


def test_no_delivery_starts_while_the_flow_is_suspended():
    started = []

    async def deliver():
        started.append(1)

    coro = deliver()
    assert at_least_once.start_delivery(coro, flow_suspended=True) is coro and not started
    coro.close()


# ------------------------------------------------------------------ fetch wait
@pytest.mark.parametrize("engine, setting, expected", [("kafka", 37, 37), ("tansu", 37, 100)],
                         ids=["kafka_uses_the_setting", "tansu_its_own"])
def test_the_worker_consumer_waits_the_configured_fetch_wait_not_fausts_1500_ms(tmp_path, engine, setting, expected):
    worker = build_worker(Settings().replace(kafka={"broker_engine": engine}, worker={"fetch_wait_ms": setting},
                                             data_dir=tmp_path))
    assert worker_consumer_attribute(worker, "_fetch_max_wait_ms") == expected


def worker_consumer_attribute(worker, name: str):
    """``name`` of the consumer Faust creates for ``worker`` (created, read, stopped)."""
    async def created():
        consumer = worker.app.consumer._thread._create_worker_consumer(worker.app.transport)
        try:
            return getattr(consumer, name)
        finally:
            await consumer.stop()

    return run(created())


# ------------------------------------------------------------------ changelog partitions Faust does not read
#: aiokafka's own partitions: what Faust's aiokafka driver hands its consumer.
INPUT, CHANGELOG, OTHER = (TopicPartition("ratings", 0), TopicPartition("app-user_state-changelog", 0),
                           TopicPartition("app-user_state-changelog", 1))


def test_the_changelog_partitions_faust_does_not_read_are_paused_in_aiokafka_until_it_reads_them_again():
    async def check():
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started: assignments only
        consumer.assign([INPUT, CHANGELOG, OTHER])
        try:
            changelogs = {CHANGELOG.topic}
            fetch_wait.pause_idle_changelogs(consumer, {INPUT, OTHER}, changelogs)  # CHANGELOG recovered
            after_recovery = consumer.paused()
            fetch_wait.pause_idle_changelogs(consumer, {INPUT, CHANGELOG}, changelogs)  # a rebalance: reads it again
            return after_recovery, consumer.paused()
        finally:
            await consumer.stop()

    after_recovery, after_rebalance = run(check())
    assert after_recovery == {CHANGELOG}  # never the input, nor a changelog partition Faust reads
    assert after_rebalance == {OTHER}


def test_the_worker_consumer_pauses_idle_changelog_partitions_before_each_fetch(tmp_path):
    worker = build_worker(Settings().replace(data_dir=tmp_path))
    thread = worker.app.consumer._thread

    async def fetch():
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        changelog = TopicPartition(worker.tables.user_state.changelog_topic.get_topic_name(), 0)
        consumer.assign([INPUT, changelog])

        async def fetched_records(partitions, timeout=0, max_records=None):
            return {}

        consumer._fetcher = types.SimpleNamespace(_closed=False, _subscriptions=consumer._subscription,
                                                  fetched_records=fetched_records)
        try:
            await thread._fetch_records(consumer, {INPUT}, timeout=0)
            return changelog, consumer.paused()
        finally:
            consumer._fetcher = None
            await consumer.stop()

    changelog, paused = run(fetch())
    assert paused == {changelog}


# ------------------------------------------------------------------ exactly once, idempotence
def worker_with(tmp_path, engine: str, guarantee: str):
    return build_worker(Settings().replace(kafka={"broker_engine": engine}, worker={"processing_guarantee": guarantee},
                                           data_dir=tmp_path))


@pytest.mark.parametrize("guarantee, isolation", [("exactly_once", "read_committed"),
                                                  ("at_least_once", "read_uncommitted")], ids=["eos", "alo"])
def test_the_worker_consumer_reads_committed_only_under_exactly_once(tmp_path, guarantee, isolation):
    worker = worker_with(tmp_path, "kafka", guarantee)
    assert worker_consumer_attribute(worker, "_isolation_level") == isolation
    assert (worker.transactions is not None) == (guarantee == "exactly_once")


def test_under_exactly_once_faust_leaves_the_ratings_offsets_to_the_transactions(tmp_path):
    worker = worker_with(tmp_path, "kafka", "exactly_once")
    consumer = worker.app.consumer
    ratings, events = TP(worker.settings.topics.ratings, 0), TP(worker.settings.topics.events, 0)
    committed = []

    async def commit(offsets):
        committed.append(dict(offsets))
        return True

    consumer._commit = commit
    consumer.assignment = lambda: {ratings, events}

    async def flush():
        return None

    worker.app.producer.flush = flush
    worker.app.tables.on_commit = lambda offsets: None
    run(consumer._commit_offsets({ratings: 10, events: 7}))
    assert committed == [{events: 7}]  # the ratings' offset is its transaction's
    assert consumer._committed_offset[ratings] == 10  # and Faust's bookkeeping moves on


def test_recovery_under_exactly_once_looks_past_commit_markers(tmp_path):
    """Its aborted-transaction check (position against highwater) runs only when the
    app says it is in a transaction."""
    eos = worker_with(tmp_path / "eos", "kafka", "exactly_once")
    assert eos.app.tables.recovery.app.in_transaction
    assert eos.app.tables.recovery.app.conf is eos.app.conf  # everything else is the app's
    alo = worker_with(tmp_path / "alo", "kafka", "at_least_once")
    assert not alo.app.tables.recovery.app.in_transaction


@pytest.mark.parametrize("engine, idempotent", [("kafka", True), ("tansu", False)], ids=["kafka_yes", "tansu_no"])
def test_the_worker_producer_is_idempotent_on_apache_kafka(tmp_path, engine, idempotent):
    worker = worker_with(tmp_path, engine, "at_least_once")
    settings = worker.app.producer._settings_extra()
    assert (settings.get("enable_idempotence") is True and settings.get("acks") == "all") == idempotent
