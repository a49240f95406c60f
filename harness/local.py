"""Worker processes on this machine: used by the demo, the tests, the benchmarks and
``recsys evaluate --through-stream``.

A worker is ``python -m cli.main worker`` in its own process group with its own
environment (broker, data dir, app id, topic names, web port), so several isolated
deployments can share one broker.

Nothing here imports the Faust app (``app.app`` reads the environment when imported,
and ``harness.demo`` sets the environment up before that).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Settings field suffixes of the topics (``RECSYS_TOPIC_<NAME>``).
TOPIC_SETTINGS = ("ratings", "events", "raw_logs", "similarity", "recommendations", "dead_letters", "items")


def isolated_env(broker_port: int, data_dir: Path, *, tag: str | None = None, app_id: str | None = None,
                 topic_prefix: str | None = None, web_port: int | None = None,
                 partitions: int | None = 2, broker: str | None = "", **extra) -> dict:
    """The environment of a deployment of its own (a worker subprocess and our own clients).

    The defaults isolate it on a shared embedded broker: app id ``recsys-<tag>``, topics
    ``<tag>-<name>`` (``tag`` random unless given), a free web port, 2 partitions.

    - ``broker``: ``RECSYS_BROKER``; ``""`` = the embedded broker on ``broker_port``, a
      URL = that cluster, ``None`` = as in the current environment.
    - ``app_id``, ``web_port``: explicit values instead of the defaults above.
    - ``topic_prefix``: ``""`` keeps the default topic names (a broker of its own).
    - ``partitions``: ``None`` keeps the current environment's setting.
    - ``extra``: more variables (``RECSYS_K=20``); values are turned into strings.
    """
    from broker.tansu import free_port

    tag = tag or uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update({
        "RECSYS_EMBEDDED_PORT": str(broker_port),
        "RECSYS_DATA_DIR": str(data_dir),
        "RECSYS_APP_ID": app_id or f"recsys-{tag}",
        "RECSYS_WEB_PORT": str(web_port or free_port()),
        "PYTHONUNBUFFERED": "1",
    })
    if broker is not None:
        env["RECSYS_BROKER"] = broker
    if partitions is not None:
        env["RECSYS_PARTITIONS"] = str(partitions)
    prefix = f"{tag}-" if topic_prefix is None else topic_prefix
    if prefix:
        for name in TOPIC_SETTINGS:
            env[f"RECSYS_TOPIC_{name.upper()}"] = f"{prefix}{name.replace('_', '-')}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def process_rss(pid: int | None) -> int:
    """Resident set size of a process in bytes (0 if unknown)."""
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class WorkerProcess:
    """One ``recsys worker`` process (its own session / process group), its web API and log.

    ``prelude``: Python run in the worker process before ``cli.main`` (benchmarks use it
    to try settings, e.g. ``sys.setswitchinterval`` or ``app.conf`` overrides).
    """

    name: str
    env: dict
    log_path: Path
    prelude: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.log_path = Path(self.log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['RECSYS_WEB_PORT']}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> WorkerProcess:
        args = ["worker", "-l", "info", "--web-port", self.env["RECSYS_WEB_PORT"]]
        if self.prelude:
            code = (f"import sys, runpy\n{self.prelude}\nsys.argv = ['cli.main'] + {args!r}\n"
                    "runpy.run_module('cli.main', run_name='__main__', alter_sys=True)\n")
            cmd = [sys.executable, "-c", code]
        else:
            cmd = [sys.executable, "-m", "cli.main"] + args
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    # ------------------------------------------------------------------ web API
    def get(self, path: str, timeout: float = 5.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: bytes):
        req = urllib.request.Request(self.url + path, data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def health(self) -> dict | None:
        """``/health/`` (its body also while it answers 503, not ready), or None while the
        API does not answer."""
        try:
            return self.get("/health/", timeout=2.0)
        except urllib.error.HTTPError as err:
            try:
                return json.loads(err.read())
            except ValueError:
                return None
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 120.0, model_version: str | None = None) -> dict:
        """Wait until the API answers, ratings partitions are assigned, the similarity
        model is loaded and (if given) it is ``model_version``; returns the health."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} died:\n{self.log_tail()}")
            health = self.health()
            if health and health.get("ratings_partitions") and health.get("model_loaded") and (
                    model_version is None or health.get("model_version") == model_version):
                return health
            time.sleep(0.2)
        want = f" with model {model_version!r}" if model_version else ""
        raise TimeoutError(f"worker {self.name} not ready{want} in {timeout:.0f}s:\n{self.log_tail()}")

    # ------------------------------------------------------------------ process
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_bytes(self) -> int:
        return process_rss(self.pid) if self.alive() else 0

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):  # the group is gone already
            pass

    def kill9(self) -> None:
        """SIGKILL to the whole process group (a crash), reaped."""
        self._signal_group(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``timeout``; always reaped,
        and nothing else of its group survives."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return
        self._signal_group(signal.SIGKILL)  # stray members of the group, if any

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


class WebProcess:
    """One ``recsys web`` process (the shop page and dashboard) on a free loopback port."""

    def __init__(self, env: dict, worker_url: str, log_path: Path, port: int = 0) -> None:
        from broker.ports import free_port

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "web.server", "--port", str(self.port), "--worker-url", worker_url],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def get(self, path: str, timeout: float = 5.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout: float = 90.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"recsys web died:\n{self.log_tail()}"
            try:
                return self.get("/health")
            except (OSError, ValueError):  # 503 until its consumers have their partitions
                time.sleep(0.3)
        raise TimeoutError(f"recsys web not ready in {timeout:.0f}s:\n{self.log_tail()}")

    def wait_for(self, what: str, check, timeout: float = 60.0):
        """Poll ``/api/dashboard`` until ``check(data)`` is truthy; returns the data."""
        deadline = time.monotonic() + timeout
        data = None
        while time.monotonic() < deadline:
            data = self.get("/api/dashboard")
            if check(data):
                return data
            time.sleep(0.3)
        raise AssertionError(f"{what}: not in {timeout:.0f}s; last dashboard {json.dumps(data)[:2000]}\n"
                             f"{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
