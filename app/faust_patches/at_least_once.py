"""Three holes in faust-streaming 0.15.3's at-least-once bookkeeping, closed.

A message's offset may be committed only once the message was processed (its
changelog writes and output sent; Faust flushes the producer before every commit).
Faust breaks that in three ways, each seen here as ratings that were never processed
although their offsets were committed (two workers, kill -9 one: 84-232 ratings of
one partition of the *survivor* lost in 3 of 3 runs; faust-streaming #606, #316,
robinhood/faust #559):

1. **Acks of messages that were never processed** (:func:`ack`). During a rebalance a
   stream takes messages off its buffer and *skips* them when flow control is
   suspended or the message was fetched in an older consumer generation, and it
   *acks* what it skipped ("otherwise the lag would increase", ``Stream.__aiter__``).
   Right after a revocation the consumer has forgotten its committed offsets, so the
   next commit (``wait_empty`` commits while the rebalance waits for the agents)
   jumps to the skipped message: everything before it that sat in a cleared buffer is
   lost. Here an ack counts only when the message belongs to the current generation
   and flow is active; anything else is redelivered after the seek to the committed
   offset that ends every rebalance (and our processing is idempotent).

2. **Gaps that are not gaps** (:func:`drain_messages`). The fetch loop treats any jump
   between the last offset it read and the next message as a gap left by compaction
   or transaction markers, and marks the whole range as processed. Its "last read"
   offset is reset by ``perform_seek`` to the *next* offset to read, while records
   fetched before the seek can still arrive after it: the jump is then a skipped
   block, not a gap. Real gaps exist (compacted topics, transaction control records),
   so each jump is checked against the log: the next record the broker holds at or
   after the expected offset. If it is the message we got, the gap is real; if an
   earlier record exists, the message is dropped and the partition re-read from the
   expected offset. Both brokers: Tansu never leaves gaps (no compaction, no
   transactions), Apache Kafka does.

3. **Messages cleared after they were fetched** (:func:`on_recovery_completed`). mode's
   ``FlowControlEvent.resume()`` clears every stream buffer. At the end of a recovery
   Faust resumes the stream partitions, seeks them to the committed offsets and only
   then resumes flow control; the fetch loop (running since recovery, for the
   changelogs) delivers fresh stream messages in between, and ``resume()`` drops them.
   Their offsets were read, so nothing reads them again: a contiguous block lost, with
   no gap and no ack (seen: 34-171 ratings of one partition, worker restarted with its
   data dir deleted, machine under load). Here the order is seek, resume flow, and only
   then resume the stream partitions.

The read offset kept here is always the *next* offset to read, the meaning every
other writer (``perform_seek``, ``seek``, ``seek_wait``) already gives it.
"""
from __future__ import annotations

import asyncio
import logging

from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.types.tuples import ack_lock

from app.metrics import Metrics

from . import fetch_wait
from .upstream import replace

log = logging.getLogger(__name__)

#: Where the patches count what they do: the worker's metrics, handed to :func:`apply`
#: (the patches are installed on Faust's classes, so for the whole process).
metrics = Metrics()

_original_ack = Consumer.ack


def is_current(app, message) -> bool:
    """True while a message may still be processed and acked: it was fetched in the
    consumer's current generation and flow control runs (no rebalance under way)."""
    return message.generation_id == app.consumer_generation_id and app.flow_control.is_active()


def ack(self: Consumer, message) -> bool:
    """Record an ack only for a message of the current generation while flow runs."""
    if is_current(self.app, message):
        return _original_ack(self, message)
    # Not committable: it will be fetched again after the rebalance's seek.
    refuse_ack(self, message, "consumer.stale_acks_refused")
    return False


def refuse_ack(consumer: Consumer, message, counter: str = "consumer.acks_refused") -> None:
    """Mark ``message`` as done WITHOUT recording its offset as processed: every later ack
    of it is a no-op, and the committed offset of its partition stops before it (Faust
    commits up to the first offset not acked), so it is read again after a restart or
    rebalance. It must still leave the unacked set, or wait_empty() would wait forever.

    Under Faust's ``ack_lock``, as ``Consumer.ack`` is: the test-and-set of ``acked`` and
    the consumer's bookkeeping are one step even when an event is acked from another thread."""
    with ack_lock:
        if not message.acked:
            message.acked = True
            consumer._unacked_messages.discard(message)
            metrics.count(counter)


class GapChecker:
    """Asks the broker for the first record at or after an offset (one consumer, no group)."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._client = None
        self._lock = asyncio.Lock()

    async def _ensure(self):
        if self._client is None:
            from aiokafka import AIOKafkaConsumer
            from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

            conf = self._consumer.app.conf
            self._client = AIOKafkaConsumer(
                bootstrap_servers=server_list(conf.broker, 9092), group_id=None, enable_auto_commit=False,
                isolation_level=fetch_wait.isolation_level(),  # what the worker's consumer reads
                fetch_max_wait_ms=100, max_partition_fetch_bytes=64 * 1024,
                **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))
            await self._client.start()
        return self._client

    async def first_offset_from(self, tp, offset: int, limit: int) -> int | None:
        """Offset of the first record in [offset, limit] on the broker (None if none is)."""
        from aiokafka.structs import TopicPartition

        async with self._lock:
            client = await self._ensure()
            ktp = TopicPartition(tp.topic, tp.partition)
            client.assign([ktp])
            client.seek(ktp, offset)
            for _ in range(50):  # up to ~10 s: a record at `limit` exists, so this ends early
                batch = await client.getmany(ktp, timeout_ms=200, max_records=1)
                for record in batch.get(ktp, []):
                    return record.offset if record.offset <= limit else None
                end = client.highwater(ktp)  # known after the first fetch
                if await client.position(ktp) > limit or (end is not None and end <= offset):
                    return None
            raise TimeoutError(f"no answer for {tp} from offset {offset}")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.stop()
            self._client = None


def gap_is_real(first_record: int | None, got: int) -> bool:
    """A jump from the expected offset to ``got`` is a real gap when the broker's first
    record at or after the expected offset is ``got`` itself (nothing in between)."""
    return first_record is None or first_record >= got


async def _check_jump(self: Consumer, tp, expected: int, offset: int) -> bool:
    """True if the jump expected -> offset is a real gap (recorded for commits)."""
    checker = self.__dict__.get("_gap_checker")
    if checker is None:
        checker = self.__dict__["_gap_checker"] = GapChecker(self)
    try:
        first = await checker.first_offset_from(tp, expected, offset)
    except Exception as exc:  # noqa: BLE001  unverified: treat it as skipped, the block is read again
        log.warning("could not verify the offset jump %s %d -> %d (%r): reading it again", tp, expected,
                    offset, exc)
        return False
    if gap_is_real(first, offset):
        metrics.count("consumer.real_gaps")
        gaps = self._gap[tp]
        gaps.addi(expected, offset)  # [expected, offset): counts as acked when committing
        gaps.merge_overlaps()
        return True
    metrics.count("consumer.skipped_blocks_caught")
    log.warning("skipped block on %s: expected offset %d, got %d, the broker has %d: re-reading from %d",
                tp, expected, offset, first, expected)
    return False


async def drain_messages(self: Consumer, fetcher) -> None:  # pragma: no cover - runs inside a worker
    """Faust's fetch loop (``Consumer._drain_messages``) with verified gaps.

    Same structure as upstream; what differs: the read offset is the next offset to
    read, and a jump is delivered only once :func:`_check_jump` says it is a real gap.
    """
    callback = self.callback
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offset = self._read_offset
    acks_enabled_for = self.app.topics.acks_enabled_for
    commit_every = self._commit_every
    since_yield = 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            self.diag.set_flag("fetching")
            await asyncio.sleep(0)
            if self.should_stop:
                break
            resync: set = set()  # partitions re-read from an earlier offset: drop the rest of this batch
            async for tp, message in self.getmany(timeout=1.0):
                since_yield += 1
                if since_yield > 100:
                    await asyncio.sleep(0)
                    since_yield = 0
                if tp in resync:
                    continue
                offset, expected = message.offset, read_offset[tp]
                if expected is not None and offset < expected:
                    continue  # read before (a redelivered batch after a seek)
                if (expected is not None and offset > expected and acks_enabled_for(message.topic)
                        and not await _check_jump(self, tp, expected, offset)):
                    resync.add(tp)
                    await self._thread.seek_wait({tp: expected})
                    continue
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                delivery = start_delivery(callback(message), flow_suspended=self.suspend_flow.is_set())
                if delivery is not None:  # it has to wait: unless a rebalance suspends the flow first
                    waited = await self.wait_first(delivery, self.suspend_flow.wait())
                    if delivery not in waited.done:
                        # Not delivered, and the seek that ends the rebalance (or the
                        # jump check above) reads it again.
                        resync.add(tp)
                        continue
                read_offset[tp] = offset + 1
            self.diag.unset_flag("fetching")
    except self.consumer_stopped_errors:
        if not self.transport.app.should_stop:
            raise
    except asyncio.CancelledError:
        if not self.transport.app.should_stop:
            raise
    finally:
        self.diag.unset_flag("fetching")
        checker = self.__dict__.pop("_gap_checker", None)
        if checker is not None:
            await checker.stop()


def start_delivery(delivery, *, flow_suspended: bool):
    """Run the coroutine ``delivery`` (the conductor putting a message into its streams'
    buffers) up to its first suspension, while nothing else can run: ``None`` if it
    finished there, else an awaitable that continues it.

    Upstream awaits every delivery through ``wait_first(delivery, suspend_flow.wait())``:
    four tasks and an ``asyncio.wait`` per message (6-8% of the worker's CPU), for the
    rare delivery that waits (a lock held by a rebalance) and must give way to it. A
    delivery that finishes without suspending never let a rebalance run, so it is
    exactly the upstream case "delivery finished first". Not even started while the
    flow is suspended (upstream: it would race the already-set event).
    """
    if flow_suspended:
        return delivery
    try:
        suspended_on = delivery.send(None)
    except StopIteration:
        return None
    return _Continue(delivery, suspended_on)


class _Continue:
    """The rest of a coroutine that yielded ``suspended_on``, as an awaitable: what a Task
    would have done with it (mode's ``wait_first`` wraps it in one)."""

    def __init__(self, coro, suspended_on) -> None:
        self.coro, self.suspended_on = coro, suspended_on

    def __await__(self):
        coro, value = self.coro, self.suspended_on
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001  thrown in by the task: a cancellation
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:  # pragma: no cover - worker
    """Faust's ``Recovery.on_recovery_completed`` with the stream partitions resumed last."""
    app = self.app
    self.log.info("Restore complete!")
    await app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                                   self.standbys_for_table[table]))
                 for table in self.tables.values()]
    if callbacks:
        await asyncio.wait(callbacks)
    if app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    await resume_streams_in_order(self)
    self.tables.on_actives_ready()
    if not app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")


async def _resume_streams(self: Recovery, generation_id: int = 0) -> None:  # pragma: no cover - worker
    """Faust's ``Recovery._resume_streams`` (the path without changelogs), same order."""
    app = self.app
    await app.on_rebalance_complete.send()
    if app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    await resume_streams_in_order(self)
    self.tables.on_actives_ready()
    self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")


async def resume_streams_in_order(recovery: Recovery) -> None:
    """Seek the stream partitions, resume flow control (which clears the buffers), and
    only then let the fetch loop deliver from them."""
    app, consumer = recovery.app, recovery.app.consumer
    streams = {tp for tp in consumer.assignment() if not recovery._is_changelog_tp(tp)}
    if streams:
        recovery.log.info("Seek stream partitions to committed offsets.")
        await recovery._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
    recovery.completed.set()
    app.flow_control.resume()
    consumer.resume_flow()
    consumer.resume_partitions(streams)
    await app._fetcher.maybe_start()


def apply(sink: Metrics) -> None:
    """Install the three fixes (idempotent), counting into ``sink``."""
    global metrics
    metrics = sink
    replace(Consumer, "ack", ack)
    replace(Consumer, "_drain_messages", drain_messages)
    replace(Recovery, "on_recovery_completed", on_recovery_completed)
    replace(Recovery, "_resume_streams", _resume_streams)
