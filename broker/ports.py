"""Loopback ports for the local brokers, workers and tests, and stopping the processes
that listen on them."""
from __future__ import annotations

import signal
import socket
import subprocess
import time


def free_port() -> int:
    """A free TCP port on loopback (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PortInUse(ValueError):
    """A port a command was told to listen on is taken (a user's mistake: one line, exit 2)."""


def require_free_port(port: int, host: str, what: str) -> None:
    """Raise :class:`PortInUse` unless ``host:port`` can be bound now (as a server binds
    it: address reuse on, so a port left in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortInUse(f"{what}: {host}:{port} is not free ({exc.strerror or exc})") from None


def wait_until_listening(port: int, timeout: float) -> bool:
    """True once something accepts connections on loopback ``port`` (False after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)
    return True


class LoopbackAddress:
    """``bootstrap`` and ``url`` of a local broker listening on ``127.0.0.1:self.port``."""

    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"


def stop_process(process: subprocess.Popen, timeout: float) -> bool:
    """SIGTERM ``process`` and wait ``timeout`` s, then SIGKILL it; always reaped. True when
    it had to be killed (nothing to do for one already gone)."""
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True
