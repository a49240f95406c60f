"""One throughput phase of a peer pipeline (``realtime_bench.py --peers``): a fresh broker,
the same ratings and model as the project's worker gets, one peer process.

The peer is started first and proves it is consuming with one warm-up rating (its list
is left out of the figures); then the ratings are produced as fast as aiokafka goes, as
for the worker, and the rate is read from the lists' ``emitted_at`` (first to last)
and from the moment the peer's group has committed every input offset.
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from app.records import Rating, to_message
from benchmarks.peers.common import write_model
from broker.clients import KafkaClients
from broker.ports import stop_process
from broker.topics import create_topics
from harness.demo import log
from harness.local import LocalDeployment

PEERS = {"quix": "quix_peer.py", "aiokafka": "aiokafka_peer.py"}
WARMUP_USER = "peer-warmup"


class PeerProcess:
    """A peer script as a subprocess, with the ``alive()`` the benchmark's waits ask."""

    def __init__(self, peer: str, env: dict, model: Path, count: int, state_dir: Path, group: str,
                 log_path: Path) -> None:
        script = Path(__file__).with_name(PEERS[peer])
        cmd = [sys.executable, str(script), "--model", str(model), "--count", str(count),
               "--state-dir", str(state_dir), "--group", group]
        self.log_path = log_path
        self.log_file = open(log_path, "wb")  # noqa: SIM115  held open for the child process's lifetime
        self.process = subprocess.Popen(cmd, env=env, stdout=self.log_file,
                                        stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        self.log_file.close()

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far; once it has stopped by itself, what its last
        log line says (``common.cpu_line``), as system 0."""
        from benchmarks.realtime_bench import cpu_seconds

        if self.alive():
            return cpu_seconds(self.pid)
        said = re.findall(r"cpu_s=([0-9.]+)", self.log_path.read_text(errors="replace"))
        return (float(said[-1]), 0.0) if said else (float("nan"), float("nan"))

    def log_tail(self, n: int = 8) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()[-n:]


async def create_peer_topics(conf) -> None:
    """``ratings`` with ``retention.ms=-1`` / ``retention.bytes=-1`` set at creation (Quix
    reads ``retention.ms`` to size its topics, and Tansu reports only configs set at
    creation), then the rest as the worker has them."""
    from aiokafka.admin import NewTopic

    admin = await KafkaClients(conf).admin()
    try:
        await admin.create_topics([NewTopic(conf.topics.ratings, num_partitions=conf.kafka.partitions, replication_factor=1,
                                            topic_configs={"retention.ms": "-1", "retention.bytes": "-1"})])
    finally:
        await admin.close()
    await create_topics(conf)


async def wait_committed(conf, group: str, timeout: float) -> float | None:
    """Wall time at which ``group`` has committed every offset of ``ratings`` (None: not
    within ``timeout``)."""
    from broker.groups import group_lag

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lag = await group_lag(conf, group, [conf.topics.ratings])
            if lag.get(conf.topics.ratings) and not any(lag[conf.topics.ratings].values()):
                return time.time()
        except Exception as exc:  # noqa: BLE001 - a transient error: ask again
            log(f"(asking the committed offsets of {group} failed: {exc!r}; retrying)")
        await asyncio.sleep(0.2)
    return None


def phase_peer(args, tmp: Path, model: tuple[dict, dict], msgs: list, peer: str) -> dict:
    """Run ``peer`` over ``msgs`` (``(key, value)`` ratings); its figures as a dict."""
    from benchmarks.realtime_bench import produce_fast, read_all, wait_for_count

    d = tmp / f"{args.engine}-peer-{peer}"
    d.mkdir(parents=True, exist_ok=True)
    neighbours, extras = model
    tag = uuid.uuid4().hex[:8]
    group = f"peer-{peer}-{tag}"
    deployment = LocalDeployment(d, broker=args.engine, base=args.base, tag=tag, partitions=args.partitions,
                                 kafka_config={"log.cleaner.min.compaction.lag.ms": 600_000},
                                 RECSYS_RANKER=args.ranker, RECSYS_AB="")
    broker, conf, proc = deployment.broker, deployment.conf, None
    try:
        asyncio.run(create_peer_topics(conf))
        model_file = d / "model.json"
        write_model(model_file, neighbours, extras, f"bench-{tag}",
                    args.learned_weights if args.ranker == "learned" else ())
        warm_item = next(iter(neighbours))
        asyncio.run(produce_fast(conf, [to_message(Rating(user=WARMUP_USER, item=warm_item, rating=4.0,
                                                          ts=time.time()))]))
        proc = PeerProcess(peer, deployment.child_env, model_file, len(msgs) + 1, d / "state", group,
                           d / "peer.log")
        if asyncio.run(wait_for_count(conf, conf.topics.recommendations, 1, args.timeout, proc, broker)) < 1:
            raise RuntimeError(f"{peer} peer sent no warm-up list: {proc.log_tail()}")
        log(f"[{peer} peer] consuming; producing {len(msgs)} ratings")
        cpu0 = proc.cpu_seconds()
        t_start = time.time()
        asyncio.run(produce_fast(conf, msgs))
        got = asyncio.run(wait_for_count(conf, conf.topics.recommendations, len(msgs) + 1, args.timeout, proc,
                                         broker))
        t_done = time.time()
        cpu1 = proc.cpu_seconds()
        t_committed = asyncio.run(wait_committed(conf, group, timeout=60.0))
        recs = [r for r in asyncio.run(read_all(conf, conf.topics.recommendations, got, timeout=120))
                if r["user"] != WARMUP_USER]
        tail = proc.log_tail()
    finally:
        if proc is not None:
            proc.stop()
        deployment.stop()
    return peer_figures(recs, len(msgs), cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1], t_start, t_done, t_committed,
                        tail)


def peer_figures(recs: list[dict], n: int, cpu_s: float, t_start: float, t_done: float,
                 t_committed: float | None, log_tail=()) -> dict:
    """The figures of the peer table from the lists a pipeline emitted."""
    emitted = sorted(r["emitted_at"] for r in recs)
    span = emitted[-1] - emitted[0] if len(emitted) > 1 else float("nan")
    wall = t_done - t_start
    return {
        "lists": len(recs), "ratings": n,
        "rate_first_to_last": round((len(recs) - 1) / span) if len(recs) > 1 and span > 0 else None,
        "rate_committed": round(len(recs) / (t_committed - emitted[0])) if t_committed and emitted else None,
        "cores": round(cpu_s / wall, 2) if wall > 0 else None,
        "cpu_us_per_rating": round(1e6 * cpu_s / max(len(recs), 1), 1),
        "log_tail": list(log_tail),
    }
