"""A deployment of the service on this machine, for the demo, the tests, the benchmarks,
the kill drills and ``recsys evaluate --through-stream``: :class:`LocalDeployment`.

It owns (or shares) a broker, holds the deployment's own settings (app id, topic names,
data dirs, web ports: several deployments can share one broker), starts ``recsys
worker`` and ``recsys web`` processes with them, publishes a model and waits until every
worker serves it, and tears everything down. A worker is ``python -m cli.main worker``
in its own process group, so a kill reaches all of it.

A child process gets this process's environment with every ``RECSYS_*`` variable set
from the deployment's :class:`~app.settings.Settings` (:func:`child_environment`): the
one place outside ``load_settings`` that touches ``os.environ``, to pass ``PATH`` and the
like on, never to read a setting.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from app.settings import Settings, TopicNames
from broker.ports import stop_process

ROOT = Path(__file__).resolve().parents[1]
#: Settings field suffixes of the topics (``RECSYS_TOPIC_<NAME>``).
#: Every topic setting (``RECSYS_TOPIC_<NAME>``): an isolated deployment renames them all.
TOPIC_SETTINGS = tuple(f.name for f in dataclasses.fields(TopicNames))


def child_environment(conf: Settings) -> dict[str, str]:
    """The environment of a child process that must read ``conf`` (and find ``PATH``...)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    return {**inherited, **conf.to_env(), "PYTHONUNBUFFERED": "1"}


class LocalDeployment:
    """Broker, settings, worker / web processes and a model, torn down on exit.

    Parameters
    ----------
    root : Path
        Where logs and data dirs go (created).
    broker : str, int, broker handle or None
        ``"tansu"`` or ``"kafka"``: a fresh broker of that engine, owned and stopped here;
        a running broker handle (``.port``, e.g. a test session's) or the port of one on
        loopback: shared; ``None``: the broker ``base`` names (its ``RECSYS_BROKER``
        cluster, or the embedded port).
    base : Settings, optional
        The settings to start from (the caller's edge); the defaults if not given.
    isolate : bool, optional
        Topics ``<tag>-<name>`` of its own (default on a shared broker; a broker of its
        own keeps the default names). The app id is always ``recsys-<tag>``.
    partitions : int, optional
        ``RECSYS_PARTITIONS`` (None keeps ``base``'s).
    kafka_config : dict, optional
        ``server.properties`` entries of a fresh Apache Kafka.
    **variables
        More ``RECSYS_*`` settings of the deployment (values turned into strings).
    """

    def __init__(self, root: Path, *, broker=None, base: Settings | None = None, isolate: bool | None = None,
                 partitions: int | None = 2, tag: str | None = None, kafka_config: dict | None = None,
                 **variables) -> None:
        from broker.local import start_engine
        from broker.ports import free_port

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tag = tag or uuid.uuid4().hex[:8]
        self.owned_broker = isinstance(broker, str)
        self.broker = start_engine(broker, self.root / "broker", kafka_config=kafka_config) \
            if self.owned_broker else broker
        env = (base or Settings()).to_env()
        if self.broker is not None:
            port = self.broker if isinstance(self.broker, int) else self.broker.port
            env.update(RECSYS_BROKER="", RECSYS_EMBEDDED_PORT=str(port))
            if "," in getattr(self.broker, "bootstrap", ""):  # a cluster: every node, one may be down
                env.update(RECSYS_BROKER=self.broker.url)
        env["RECSYS_APP_ID"] = f"recsys-{self.tag}"  # its own consumer group and changelogs
        if isolate if isolate is not None else not self.owned_broker:
            env.update({f"RECSYS_TOPIC_{name.upper()}": f"{self.tag}-{name.replace('_', '-')}"
                        for name in TOPIC_SETTINGS})
        env.update(RECSYS_DATA_DIR=str(self.root / "data"), RECSYS_WEB_PORT=str(free_port()),
                   RECSYS_MODEL_METRICS_PORT=str(free_port()))
        if partitions is not None:
            env["RECSYS_PARTITIONS"] = str(partitions)
        self.env: dict[str, str] = {}
        self.set(**{**env, **variables})
        self.workers: list[WorkerProcess] = []
        #: ``recsys learner`` processes (stopped with the rest).
        self.learners: list[WorkerProcess] = []
        self.webs: list[WebProcess] = []

    @property
    def child_env(self) -> dict[str, str]:
        """The environment of a ``recsys`` command run against this deployment."""
        return child_environment(self.conf)

    def set(self, **variables) -> Settings:
        """Change settings of the deployment (for the processes started from now on)."""
        self.env.update({k: str(v) for k, v in variables.items()})
        self.conf = Settings.from_env(self.env)
        return self.conf

    def describe_broker(self) -> str:
        """Where the broker came from, for reports."""
        if self.owned_broker:
            return f"{self.engine}, started for this run"
        if self.broker is not None:
            return f"local broker on port {self.conf.kafka.embedded_port}"
        return "configured RECSYS_BROKER" if self.conf.kafka.broker else "embedded, on RECSYS_EMBEDDED_PORT"

    @property
    def engine(self) -> str:
        return getattr(self.broker, "engine", "tansu")

    # ------------------------------------------------------------------ processes
    def start_worker(self, name: str | None = None, *, ready: bool = True, prelude: str = "",
                     learner: bool | None = None, **variables) -> WorkerProcess:
        """A ``recsys worker`` of this deployment; the second and later ones get their own
        web port and data dir. ``ready``: wait until it serves (partitions and model).
        ``learner``: start ``recsys learner`` too if none runs (default: when the learned
        ranker serves someone)."""
        from broker.ports import free_port
        from ranking.ab import served_rankers

        wanted = learner if learner is not None else "learned" in served_rankers(self.conf)
        if wanted and not any(w.alive() for w in self.learners):
            self.start_learner()
        name = name or f"w{len(self.workers) + 1}"
        env = dict(self.env)
        if self.workers:
            env.update(RECSYS_WEB_PORT=str(free_port()), RECSYS_DATA_DIR=str(self.root / f"data-{name}"))
        env.update({k: str(v) for k, v in variables.items()})
        worker = WorkerProcess(name, child_environment(Settings.from_env(env)), self.root / f"{name}.log",
                               prelude=prelude).start()
        self.workers.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    def restart_worker(self, worker: WorkerProcess, name: str | None = None, *, ready: bool = False,
                       prelude: str = "") -> WorkerProcess:
        """A new process in the place of ``worker`` (same settings, data dir and port),
        e.g. after :meth:`WorkerProcess.kill9`."""
        name = name or f"{worker.name}-again"
        again = WorkerProcess(name, worker.env, self.root / f"{name}.log", prelude=prelude or worker.prelude,
                              command=worker.command).start()
        (self.learners if worker.command[:1] == ("learner",) else self.workers).append(again)
        if ready:
            again.wait_ready()
        return again

    def start_learner(self, name: str = "learner", *args: str) -> WorkerProcess:
        """A ``recsys learner`` of this deployment (``args``: its options)."""
        learner = WorkerProcess(name, self.child_env, self.root / f"{name}.log", command=("learner", *args)).start()
        self.learners.append(learner)
        return learner

    def start_web(self, worker: WorkerProcess, port: int = 0) -> WebProcess:
        web = WebProcess(child_environment(self.conf), worker.url, self.root / "web.log", port=port)
        self.webs.append(web)
        return web

    def publish_model(self, neighbours: Mapping, version: str, *, timeout: float = 120.0, **extras) -> int:
        """Publish a model (``offline_als.publish.publish_similarity``'s arguments) and wait
        until every running worker serves it; returns the messages sent."""
        from offline_als.publish import publish_similarity

        sent = asyncio.run(publish_similarity(neighbours, version, conf=self.conf, **extras))
        for worker in self.workers:
            if worker.alive():
                worker.wait_ready(timeout=timeout, model_version=version)
        return sent

    def wait_for_split(self, workers: list[WorkerProcess] | None = None, timeout: float = 120.0) -> list[list]:
        """Until the workers (default: the running ones) hold every ratings partition
        between them, none twice, each with the model loaded; returns who holds what."""
        workers = workers or [w for w in self.workers if w.alive()]
        partitions = self.conf.kafka.partitions
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            healths = [w.health() or {} for w in workers]
            owned = [h.get("ratings_partitions") or [] for h in healths]
            if all(owned) and all(h.get("model_loaded") for h in healths) and \
                    sorted(p for o in owned for p in o) == list(range(partitions)):
                return owned
            time.sleep(0.5)
        logs = "\n".join(f"--- {w.name}:\n{w.log_tail(20)}" for w in workers)
        raise TimeoutError(f"workers did not split {partitions} partitions in {timeout:.0f}s:\n{logs}")

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        for web in self.webs:
            web.stop()
        for worker in self.workers + self.learners:
            worker.stop()
        if self.owned_broker and self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


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

    ``prelude``: Python run in the worker process before ``cli.main`` (a benchmark uses it
    to try ``sys.setswitchinterval``).
    """

    name: str
    env: dict
    log_path: Path
    prelude: str = ""
    #: The ``recsys`` command and its arguments (default: a stream worker on its web port).
    command: tuple = ()
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
        args = list(self.command) or ["worker", "-l", "info", "--web-port", self.env["RECSYS_WEB_PORT"]]
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
        stop_process(self.process, timeout=15)
