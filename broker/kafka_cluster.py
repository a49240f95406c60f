"""A local, replicated Apache Kafka cluster on loopback: N KRaft nodes, each both broker
and controller (with three, a three-voter quorum: any one node can die).

``recsys broker --engine kafka --nodes 3`` runs :func:`run_cluster_foreground`: the node
JVMs are its children, and it supervises them: a node that exits is started again on
its data dir after ``--restart-after`` seconds (logged), until SIGINT/SIGTERM stops them
all. Internal topics get replication 3 and min ISR 2 (``broker/apache_kafka.py``); the
project's topics take ``RECSYS_REPLICATION`` and ``RECSYS_MIN_INSYNC``.

Each node is a :class:`broker.apache_kafka.KafkaBroker` with its own data dir
(``<root>/node-<id>``) and ports; all share one cluster id and the static voter list.
Synchronous API, like ``broker/apache_kafka.py``.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from broker.apache_kafka import (
    KAFKA_VERSION,
    BrokerUnavailable,
    KafkaBroker,
    ensure_kafka_libs,
    fetch_libs_loudly,
    find_java,
    new_cluster_id,
    previous_ports,
    serve_until_signal,
)
from broker.ports import free_port, is_listening


@dataclass(eq=False)
class KafkaCluster:
    """Running nodes; ``port``/``bootstrap``/``url`` like a single broker's (``url`` names
    every node, so a client still bootstraps while one is down)."""

    nodes: list[KafkaBroker]
    root: Path
    owns_root: bool = False
    engine: str = "kafka"

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def node(self, node_id: int) -> KafkaBroker:
        return next(node for node in self.nodes if node.node_id == node_id)

    def kill9(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would (its data dir is kept)."""
        self.node(node_id).kill9()

    def start_node(self, node_id: int) -> None:
        """Start a stopped node again on its data dir and wait until it answers."""
        node = self.node(node_id)
        node.spawn()
        node.wait_started()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node at once (one by one, the last would wait for a quorum that
        has gone), then wait for each (``timeout``, then SIGKILL)."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout)
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_kafka_cluster(nodes: int = 3, port: int = 0, *, data_dir: os.PathLike | str | None = None,
                        timeout: float = 180.0, version: str = KAFKA_VERSION,
                        config: dict | None = None) -> KafkaCluster:
    """Start ``nodes`` KRaft nodes on loopback (the first on ``port``, 0 = free; the
    others on free ports, or on a reused ``data_dir`` their previous ones when free) and
    wait until every one answers. ``data_dir=None``: a temporary root, removed on stop."""
    java, libs = find_java(), ensure_kafka_libs(version)
    owns = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="recsys-kafka-cluster-")) if owns else Path(data_dir).resolve()
    taken: set[int] = set()

    def pick(wanted: int | None) -> int:
        chosen = wanted if wanted and wanted not in taken and not is_listening(wanted) else 0
        while not chosen or chosen in taken:
            chosen = free_port()
        taken.add(chosen)
        return chosen

    members = []
    for node_id in range(1, nodes + 1):
        node_dir = root / f"node-{node_id}"
        previous, previous_controller = previous_ports(node_dir / "server.properties")
        members.append((node_id, node_dir, pick(port if node_id == 1 and port else previous),
                        pick(previous_controller)))
    voters = ",".join(f"{node_id}@127.0.0.1:{controller}" for node_id, _dir, _port, controller in members)
    cluster_id = new_cluster_id()  # used only by nodes not formatted yet
    cluster = KafkaCluster(nodes=[KafkaBroker(port=node_port, controller_port=controller, data_dir=node_dir,
                                              log_file=node_dir / "kafka.log", version=version, java=java, libs=libs,
                                              config=dict(config or {}), start_timeout=timeout, node_id=node_id,
                                              voters=voters, replicas=nodes, cluster_id=cluster_id)
                                  for node_id, node_dir, node_port, controller in members],
                           root=root, owns_root=owns)
    try:
        for node in cluster.nodes:  # all at once: no node answers before a quorum runs
            node.spawn()
        for node in cluster.nodes:
            node.wait_started()
    except BaseException:
        cluster.stop(timeout=10)
        raise
    return cluster


def leader_counts(cluster_or_url, topics: list[str]) -> dict[int, int]:
    """``{node id: partitions of ``topics`` it leads}`` (every node, 0 included)."""
    from aiokafka.admin import AIOKafkaAdminClient

    bootstrap = getattr(cluster_or_url, "bootstrap", cluster_or_url)

    async def count() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
            node_ids = [b["node_id"] for b in (await admin.describe_cluster())["brokers"]]
        finally:
            await admin.close()
        counts = dict.fromkeys(node_ids, 0)
        for topic in described:
            for partition in topic.get("partitions", []):
                counts[partition["leader"]] = counts.get(partition["leader"], 0) + 1
        return counts

    return asyncio.run(count())


# --- ``recsys broker --engine kafka --nodes N`` -------------------------------------------

def run_cluster_foreground(nodes: int, port: int, data_dir: str | None = None, *, restart_after: float = 10.0,
                           version: str = KAFKA_VERSION) -> int:
    """Run a cluster until SIGINT/SIGTERM, restarting any node that exits (after
    ``restart_after`` seconds), then stop every node. Prints a line when ready (the
    bootstrap list) and one per node (id, pid, port)."""

    def start() -> KafkaCluster:
        fetch_libs_loudly(version)
        cluster = start_kafka_cluster(nodes, port, data_dir=data_dir, version=version)
        where = f"data in {cluster.root}" if data_dir else "temporary data dir, removed on stop"
        for node in cluster.nodes:
            _say(f"node {node.node_id} pid {node.process.pid} on {node.bootstrap} (log {node.log_file})")
        print(f"Apache Kafka {version} cluster of {nodes} nodes (KRaft, {where}) listening on {cluster.bootstrap}",
              flush=True)
        return cluster

    def stop(cluster: KafkaCluster) -> None:
        cluster.stop()
        print("Apache Kafka cluster stopped", flush=True)

    return serve_until_signal(start, lambda cluster: supervise(cluster, restart_after), stop)


def supervise(cluster: KafkaCluster, restart_after: float, *, poll_s: float = 0.5) -> None:
    """Forever (until a signal raises): a node whose JVM exited is started again
    ``restart_after`` seconds later; a start that fails is tried again as long."""
    due: dict[int, float] = {}
    while True:
        now = time.monotonic()
        for node in cluster.nodes:
            if node.node_id not in due and node.process.poll() is not None:
                due[node.node_id] = now + restart_after
                _say(f"node {node.node_id} (pid {node.process.pid}) exited with code {node.process.returncode}: "
                     f"restarting it in {restart_after:g} s")
        for node_id, when in sorted(due.items()):
            if when <= now:
                try:
                    cluster.start_node(node_id)
                    _say(f"node {node_id} restarted: pid {cluster.node(node_id).process.pid}")
                    del due[node_id]
                except BrokerUnavailable as exc:
                    _say(f"node {node_id} did not start again ({exc}): trying again in {restart_after:g} s")
                    due[node_id] = time.monotonic() + restart_after
        time.sleep(poll_s)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
