"""``recsys broker --engine kafka --nodes N`` as a subprocess, for drills: where its nodes
listen, which JVM is which node (so one can be killed), and what its supervisor said.

Used by the broker-kill drill (``harness/failover.py``), its test and its benchmark.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from broker.kafka_cluster import leader_counts
from broker.ports import stop_process

_NODE = re.compile(r"^node (\d+) pid (\d+) on 127\.0\.0\.1:(\d+)", re.MULTILINE)
_RESTARTED = re.compile(r"^node (\d+) restarted: pid (\d+)", re.MULTILINE)
_READY = re.compile(r"listening on (\S+)$", re.MULTILINE)


class SupervisedCluster:
    """A running ``recsys broker --nodes`` (a broker handle for ``LocalDeployment``:
    ``port``, ``bootstrap``, ``url``, ``engine``)."""

    engine = "kafka"

    def __init__(self, root: Path, *, nodes: int = 3, restart_after: float = 10.0, timeout: float = 300.0) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "cluster.log"
        cmd = [sys.executable, "-m", "cli.main", "broker", "--engine", "kafka", "--nodes", str(nodes),
               "--port", "0", "--data-dir", str(root / "data"), "--restart-after", str(restart_after)]
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while not (ready := _READY.search(self.log())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the cluster did not start:\n{self.log()[-3000:]}")
            time.sleep(0.5)
        self.bootstrap = ready.group(1)
        self.port = int(self.bootstrap.split(",")[0].rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pids(self) -> dict[int, int]:
        """``{node id: pid of its JVM now}`` (restarts included)."""
        text = self.log()
        pids = {int(m.group(1)): int(m.group(2)) for m in _NODE.finditer(text)}
        pids.update({int(m.group(1)): int(m.group(2)) for m in _RESTARTED.finditer(text)})
        return pids

    def restarts(self) -> list[int]:
        """Node ids the supervisor started again, in order."""
        return [int(m.group(1)) for m in _RESTARTED.finditer(self.log())]

    def busiest_leader(self, topics: list[str]) -> int:
        """The node leading the most partitions of ``topics``."""
        counts = leader_counts(self.bootstrap, topics)
        return max(sorted(counts), key=lambda node: counts[node])

    def kill9(self, node_id: int) -> int:
        """SIGKILL the JVM of ``node_id`` (the supervisor restarts it); returns its pid."""
        pid = self.pids()[node_id]
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, count: int, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.restarts()) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        return len(self.restarts()) >= count

    def stop(self, timeout: float = 90.0) -> None:
        stop_process(self.process, timeout)
