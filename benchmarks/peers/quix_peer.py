"""The realtime pipeline on Quix Streams: the peer ``realtime_bench.py --peers`` runs
beside the project's Faust worker (same input, same model, same per-rating work:
:class:`benchmarks.peers.common.RatingProcessor`).

State: Quix's RocksDB store with its changelog topic, one value per user (the key of
the ``ratings`` message); at-least-once, a checkpoint (flush state + changelog, produce,
commit) every second. Stops by itself after ``--count`` lists (or ``--timeout`` s idle).

    python benchmarks/peers/quix_peer.py --model model.json --count 60000 --state-dir /tmp/q
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.settings import load_settings
from benchmarks.peers.common import RatingProcessor, cpu_line, peer_args, tune_process


def main(argv=None) -> int:
    args = peer_args(__doc__, "peer-quix", argv)

    from quixstreams import Application
    from quixstreams.context import message_context

    conf = load_settings()
    tune_process()
    processor = RatingProcessor(conf, Path(args.model))
    app = Application(broker_address=",".join(conf.kafka.bootstrap_servers), consumer_group=args.group,
                      auto_offset_reset="earliest", commit_interval=1.0, state_dir=args.state_dir,
                      loglevel=logging.WARNING)
    ratings = app.topic(conf.topics.ratings, key_deserializer="bytes", value_deserializer="bytes")
    lists = app.topic(conf.topics.recommendations, key_serializer="bytes", value_serializer="bytes")

    examples = app.topic(conf.topics.ranker_examples, key_serializer="bytes", value_serializer="bytes")

    def step(value: bytes, key: bytes, timestamp: int, headers, state):
        out = processor.process(value, state.get("user"), message_context().offset, timestamp / 1000.0)
        if out is None:
            return None
        _user, new_state, list_bytes, examples_bytes = out
        if new_state is not None:
            state.set("user", new_state)
        return list_bytes, examples_bytes

    listed = 0

    def stop_after_the_last_list(_value) -> None:
        # Not ``app.run(count=...)``: Quix counts the outputs of every branch, so the learned
        # ranker's examples would stop the run before the last rating; a stopped run still
        # commits its last checkpoint.
        nonlocal listed
        listed += 1
        if listed >= args.count:
            app.stop()

    sdf = app.dataframe(ratings).apply(step, stateful=True, metadata=True).filter(lambda v: v is not None)
    # Two outputs, as Quix branches a dataframe: the learned ranker's examples, and the lists.
    sdf[sdf.apply(lambda v: v[1] is not None)].apply(lambda v: v[1]).to_topic(examples)
    sdf.apply(lambda v: v[0]).to_topic(lists).update(stop_after_the_last_list)
    app.run(timeout=args.timeout)
    print(f"quix peer done; invalid {processor.invalid}; {cpu_line()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
