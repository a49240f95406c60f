"""The realtime pipeline in plain Python: aiokafka + rocksdict, no stream framework. The
"what does Python cost without a framework" reference of ``realtime_bench.py --peers``
(same input, model and per-rating work: :class:`benchmarks.peers.common.RatingProcessor`).

Per fetched batch, per partition: the ratings are ranked together, as the worker's agent
does (``RatingProcessor.process_many``): each user's state read from RocksDB once, written
back once and sent to a compacted changelog topic (one message per user and batch, as the
worker writes it), each list sent (and the learned ranker's examples). Then it waits until
every send of the batch is acknowledged and only then commits the batch's offsets
(at-least-once: a crash replays at most the uncommitted batch, and the state's offset
check makes the replay change nothing). Stops by itself after ``--count`` lists (or
``--timeout`` s without input).

    python benchmarks/peers/aiokafka_peer.py --model model.json --count 60000 --state-dir /tmp/a
"""
from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.settings import load_settings
from benchmarks.peers.common import RatingProcessor, cpu_line, peer_args, tune_process
from broker.clients import KafkaClients


async def run(conf, processor: RatingProcessor, args) -> int:
    from aiokafka.admin import NewTopic
    from rocksdict import Options, Rdict

    clients = KafkaClients(conf)
    changelog = f"{args.group}-user_state-changelog"
    admin = await clients.admin()
    try:
        if changelog not in set(await admin.list_topics()):
            await admin.create_topics([NewTopic(changelog, num_partitions=conf.kafka.partitions, replication_factor=1,
                                                topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    db = Rdict(str(args.state_dir), options=Options(raw_mode=True))
    consumer = await clients.consumer(conf.topics.ratings, group_id=args.group, max_poll_records=conf.worker.max_poll_records)
    producer = await clients.producer(linger_ms=conf.worker.producer_linger_ms, max_batch_size=conf.worker.producer_batch_bytes)
    lists, idle_since = 0, time.monotonic()
    try:
        while lists < args.count and time.monotonic() - idle_since < args.timeout:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                continue
            idle_since = time.monotonic()
            sends = []
            for tp, records in batch.items():  # a partition's ratings ranked together (the agent's batch scorer)
                out, states = processor.process_many(
                    [(msg.value, msg.offset, (msg.timestamp or 0) / 1000.0) for msg in records], db.get)
                for key, value in states.items():
                    db[key] = value
                    sends.append(await producer.send(changelog, key=key, value=value, partition=tp.partition))
                for user, list_bytes, examples in out:
                    key = user.encode()
                    sends.append(await producer.send(conf.topics.recommendations, key=key, value=list_bytes))
                    if examples is not None:
                        sends.append(await producer.send(conf.topics.ranker_examples, key=key, value=examples))
                    lists += 1
            await asyncio.gather(*sends)  # every changelog write and list acknowledged ...
            await consumer.commit()  # ... before the offsets that caused them are committed
    finally:
        await producer.stop()
        await consumer.stop()
        db.close()
    return lists


def main(argv=None) -> int:
    args = peer_args(__doc__, "peer-aiokafka", argv)
    conf = load_settings()
    tune_process()
    processor = RatingProcessor(conf, Path(args.model))
    lists = asyncio.run(run(conf, processor, args))
    print(f"aiokafka peer done: {lists} lists, invalid {processor.invalid}; {cpu_line()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
