"""A local, single-node Apache Kafka (KRaft, combined broker + controller) on loopback.

The second local engine beside Tansu (``broker/tansu.py``): the real broker, with real
log segments, compaction, consumer-group coordination and durable storage, for tests
and development. Nothing here imports Faust or ``app``.

* :func:`ensure_kafka_libs` fetches Kafka's jars once with Maven (``broker/kafka/pom.xml``)
  into ``~/.cache/recsys/kafka-<version>/libs``.
* :func:`start_kafka` formats a data directory once (KRaft ``meta.properties``), runs
  ``java ... kafka.Kafka server.properties`` in its own session and waits until it
  answers a metadata request. A given ``data_dir`` survives restarts (topics, messages,
  committed offsets); ``data_dir=None`` is a temporary directory removed on stop.
* Anything that keeps the broker from starting (no ``java``/``mvn``, a failed download, a
  busy port, a JVM that exits) raises :class:`BrokerUnavailable` with one readable line.

Needs Java 17+ (Kafka 4.x) and, for the first download only, Maven with access to Maven
Central. Synchronous API: call it outside a running asyncio loop (it uses ``asyncio.run``).
"""
from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The pinned Kafka version (the pom's default too). 4.1.1: newest 4.x on Maven Central
#: here; aiokafka 0.14 and Faust 0.15.3 work with it (see tests/integration/test_kafka_engine.py).
KAFKA_VERSION = "4.1.1"
KAFKA_DIR = Path(__file__).resolve().with_name("kafka")
POM = KAFKA_DIR / "pom.xml"
LOG4J_CONFIG = KAFKA_DIR / "log4j2.yaml"
#: ``TieredStopAtLevel=1``: the JIT's quick compiler only. A fresh broker's first seconds
#: are its slowest while hot code waits for the optimising compiler, whose threads also take
#: CPU from the workers on two cores; a local broker's load never needs its peak
#: (docs/RESULTS.md: the demo's p99 and the benchmark's broker CPU, with and without).
JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")
MAVEN_TIMEOUT_S = 900
NODE_ID = 1
_MARKER = "libs.complete"


class BrokerUnavailable(RuntimeError):
    """The local broker cannot be started; the message is one line meant for a human."""


from broker.ports import LoopbackAddress, free_port, is_listening, stop_process


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# --- Java and the jars ----------------------------------------------------------------

def find_java() -> str:
    """``$JAVA_HOME/bin/java`` when it exists, else ``java`` on PATH (Java 17+ required)."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and os.access(candidate, os.X_OK) else shutil.which("java")
    if not java:
        raise BrokerUnavailable("Apache Kafka needs Java 17+, but `java` is not on PATH (and JAVA_HOME "
                                "is not set): install a JDK, e.g. apt-get install openjdk-17-jre-headless")
    major = _java_major(java)
    if major is not None and major < 17:
        raise BrokerUnavailable(f"Apache Kafka 4.x needs Java 17+, but {java} is Java {major}")
    return java


_JAVA_MAJOR: dict[str, int | None] = {}


def _java_major(java: str) -> int | None:
    if java not in _JAVA_MAJOR:
        try:
            out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False, timeout=60).stderr
        except (OSError, subprocess.SubprocessError):
            raise BrokerUnavailable(f"cannot run {java} -version") from None
        m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
        major = None
        if m:
            major = int(m.group(2)) if m.group(1) == "1" and m.group(2) else int(m.group(1))
        _JAVA_MAJOR[java] = major
    return _JAVA_MAJOR[java]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recsys"


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}"


def kafka_libs_cached(version: str = KAFKA_VERSION) -> bool:
    """True when :func:`ensure_kafka_libs` has nothing to download."""
    home = kafka_home(version)
    return (home / _MARKER).is_file() and (home / "libs" / f"kafka_2.13-{version}.jar").is_file()


def find_mvn(version: str = KAFKA_VERSION) -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerUnavailable(f"Apache Kafka {version}'s jars are not in {kafka_home(version) / 'libs'} yet and "
                                "`mvn` is not on PATH to fetch them: install Maven, e.g. apt-get install maven")
    return mvn


def ensure_kafka_libs(version: str = KAFKA_VERSION) -> Path:
    """The directory with Kafka ``version``'s jars (kafka_2.13 and its runtime deps).

    The first call runs Maven (``dependency:copy-dependencies`` on ``broker/kafka/pom.xml``);
    later calls return at once. The marker file is written only after a complete
    download, so an interrupted one is redone. Concurrent callers wait for each other.
    """
    home = kafka_home(version)
    libs = home / "libs"
    if kafka_libs_cached(version):
        return libs
    home.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be downloading the same version
        if kafka_libs_cached(version):
            return libs
        mvn = find_mvn(version)
        (home / _MARKER).unlink(missing_ok=True)
        shutil.rmtree(libs, ignore_errors=True)
        # -U: ask Central again even when ~/.m2 remembers a failed attempt (network was down).
        cmd = [mvn, "-q", "-B", "-U", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={libs}", "-DincludeScope=runtime", f"-Dkafka.version={version}"]
        log.info("fetching Apache Kafka %s with Maven into %s", version, libs)
        started = time.monotonic()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=MAVEN_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BrokerUnavailable(f"Maven did not finish fetching Apache Kafka {version} within "
                                    f"{MAVEN_TIMEOUT_S}s") from None
        except OSError as exc:
            raise BrokerUnavailable(f"cannot run Maven ({mvn}): {exc}") from None
        if done.returncode != 0:
            raise BrokerUnavailable(f"Maven could not fetch Apache Kafka {version}: "
                                    f"{_maven_error(done.stdout + done.stderr)}")
        jar = libs / f"kafka_2.13-{version}.jar"
        if not jar.is_file():
            raise BrokerUnavailable(f"Maven finished but {jar.name} is not in {libs}")
        (home / _MARKER).write_text(f"kafka {version}: {len(list(libs.glob('*.jar')))} jars\n")
        log.info("fetched Apache Kafka %s in %.1fs", version, time.monotonic() - started)
    return libs


def _maven_error(output: str) -> str:
    """The line of Maven's output that says what went wrong (not the help boilerplate)."""
    lines = [_ANSI.sub("", line).strip() for line in output.splitlines()]
    errors = [line[len("[ERROR]"):].strip() for line in lines if line.startswith("[ERROR]")]
    errors = [e for e in errors if e and not e.startswith(("To see the full", "Re-run Maven", "For more information",
                                                           "[Help", "->"))]
    for e in errors:
        m = re.search(r"(Could not (resolve|transfer|find)|Non-resolvable|Unknown host|Connection refused)", e)
        if m:
            return _one_line(re.sub(r"\s*-> \[Help \d+\]$", "", e[m.start():]))
    if errors:
        return _one_line(re.sub(r"\s*-> \[Help \d+\]$", "", errors[0]))
    tail = [line for line in lines if line]
    return _one_line(tail[-1]) if tail else "no output"


# --- the broker -----------------------------------------------------------------------

def _server_properties(*, port: int, controller_port: int, log_dirs: Path, extra: Mapping[str, object],
                       node_id: int = NODE_ID, voters: str = "", replicas: int = 1) -> str:
    """``server.properties`` of one node that is both broker and controller. ``voters``:
    the static quorum (``id@host:port,...``; default: this node alone); ``replicas``: the
    cluster's size, which sets the internal topics' replication (at most 3) and min ISR."""
    replication = min(3, replicas)
    min_isr = max(1, replication - 1)
    props: dict[str, object] = {
        # KRaft, every node both broker and controller (a static quorum).
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters or f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dirs),
        # Internal topics on every node up to three, and a write acknowledged by all
        # (acks=all) only once on two of them (so any one node can die).
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 4,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        # Topics are created explicitly, like in production.
        "auto.create.topics.enable": "false",
        "num.partitions": 4,
        # Consumer groups: no initial delay, short session timeouts accepted (tests use 6 s).
        "group.initial.rebalance.delay.ms": 0,
        "group.min.session.timeout.ms": 1000,
        "group.max.session.timeout.ms": 300000,
        # After a kill -9, the new incarnation registers only once the old one's session
        # expired (9 s by default): 4 s keeps crash-restart tests short.
        "broker.session.timeout.ms": 4000,
        "broker.heartbeat.interval.ms": 1000,
        # Small segments and an eager cleaner: a compacted topic is compacted soon after a
        # segment fills. Segments roll by size only: rolling every partition's segment every
        # 2 s (a new file and index maps each time) cost the demo ~10 ms of produce -> list
        # p99 on two cores (docs/RESULTS.md); the tests that wait for compaction roll every
        # 2 s (tests/conftest.py).
        "log.segment.bytes": 1048576,
        "log.cleaner.backoff.ms": 1000,
        "log.cleaner.min.compaction.lag.ms": 0,
        "log.cleaner.min.cleanable.ratio": 0.01,
        "log.cleaner.threads": 1,
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        "log.segment.delete.delay.ms": 1000,
        # A laptop-sized broker (2 cores shared with the workers).
        "num.network.threads": 2,
        "num.io.threads": 4,
        "background.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        "group.coordinator.threads": 2,
        "share.coordinator.threads": 1,
    }
    props.update(extra)
    lines = ["# Generated by broker/apache_kafka.py on every start: edits are overwritten."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def previous_ports(props_file: Path) -> tuple[int | None, int | None]:
    """(broker port, controller port) of the last start on this data dir, if any."""
    try:
        text = props_file.read_text()
    except OSError:
        return None, None
    m = re.search(r"^listeners=PLAINTEXT://[^:]+:(\d+),CONTROLLER://[^:]+:(\d+)", text, re.MULTILINE)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def new_cluster_id() -> str:
    """A KRaft cluster id: a random 16-byte UUID, base64url without padding (22 chars)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # like Kafka's Uuid.randomUuid: no id that looks like an option
            return cid


def _error_line(lines: list[str]) -> str:
    """The most telling line of a Java failure: the last exception (root cause) or
    ERROR/FATAL log line, never a stack frame."""
    for line in reversed(lines):
        text = line.strip()
        if not text or text.startswith(("at ", "... ")):
            continue
        if re.search(r"\b(ERROR|FATAL)\b|Exception\b|Error\b", text):
            return _one_line(text, 300)
    return ""


def _last_error(log_file: Path | None) -> str:
    """:func:`_error_line` of the end of the broker's log."""
    if not log_file:
        return ""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200_000))
            return _error_line(f.read().decode("utf-8", "replace").splitlines())
    except OSError:
        return ""


_LIVE: set[KafkaBroker] = set()


@atexit.register
def _stop_leftovers() -> None:  # the JVM runs in its own session: never leave one behind
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop(timeout=10)


@dataclass(eq=False)
class KafkaBroker(LoopbackAddress):
    """A running single-node Apache Kafka on ``127.0.0.1:port`` (same surface as
    ``broker.tansu.EmbeddedBroker``, plus ``restart``, ``kill9`` and ``data_dir``)."""

    port: int
    controller_port: int
    data_dir: Path
    log_file: Path
    version: str
    java: str
    libs: Path
    process: subprocess.Popen | None = None
    config: dict = field(default_factory=dict)
    start_timeout: float = 120.0
    owns_data_dir: bool = False
    owns_log_file: bool = False
    #: Within a cluster (``broker/kafka_cluster.py``): this node's id, the quorum's
    #: voters, the cluster's size and its id (every node formats with the same one).
    node_id: int = NODE_ID
    voters: str = ""
    replicas: int = 1
    cluster_id: str = ""

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    # -- lifecycle ----------------------------------------------------------------------

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        return [self.java, *JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp", f"{self.libs}/*", main, *args]

    def _launch(self) -> None:
        self.spawn()
        self.wait_started()

    def spawn(self) -> None:
        """Start the JVM (formatting the data dir the first time), without waiting for it:
        a cluster's nodes answer only once a quorum of them runs."""
        if is_listening(self.port):
            raise BrokerUnavailable(f"port {self.port} on 127.0.0.1 is already in use")
        if not self.voters and is_listening(self.controller_port):
            self.controller_port = free_port()  # a quorum of one: the controller may move
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(_server_properties(
            port=self.port, controller_port=self.controller_port, log_dirs=self.log_dirs, extra=self.config,
            node_id=self.node_id, voters=self.voters, replicas=self.replicas))
        if not (self.log_dirs / "meta.properties").is_file():
            self._format()
        with open(self.log_file, "ab") as out:
            self.process = subprocess.Popen(self._java_cmd("kafka.Kafka", str(self.properties_file)),
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=self.data_dir, start_new_session=True)
        _LIVE.add(self)

    def wait_started(self) -> None:
        """Until the node answers metadata requests (:attr:`start_timeout`); a node that
        does not is stopped and :class:`BrokerUnavailable` raised."""
        try:
            self._wait_ready(self.start_timeout)
        except BaseException:  # includes KeyboardInterrupt: never leave a JVM behind
            self._terminate(10.0)
            _LIVE.discard(self)  # (and keep its log: the error message points to it)
            raise
        log.info("Apache Kafka %s ready on %s (data in %s)", self.version, self.bootstrap, self.data_dir)

    def _format(self) -> None:
        """Format the KRaft storage once per data dir (``meta.properties`` marks it done)."""
        cmd = self._java_cmd("kafka.tools.StorageTool", "format", "-t", self.cluster_id or new_cluster_id(),
                             "-c", str(self.properties_file))
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BrokerUnavailable(f"formatting Kafka storage in {self.log_dirs} failed: {exc}") from None
        with open(self.log_file, "a") as f:
            f.write(done.stdout + done.stderr)
        if done.returncode != 0 or not (self.log_dirs / "meta.properties").is_file():
            lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
            why = _error_line(lines) or (_one_line(lines[-1]) if lines else "no output")
            raise BrokerUnavailable(f"formatting Kafka storage in {self.log_dirs} failed "
                                    f"(exit {done.returncode}): {why} (log: {self.log_file})")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                why = _last_error(self.log_file)
                raise BrokerUnavailable(f"Apache Kafka exited with code {code} while starting"
                                        f"{': ' + why if why else ''} (log: {self.log_file})")
            if is_listening(self.port) and _answers_metadata(self.bootstrap):
                return
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(f"Apache Kafka did not answer on {self.bootstrap} within {timeout:.0f}s "
                                        f"(log: {self.log_file})")
            time.sleep(0.25)

    def _terminate(self, timeout: float) -> None:
        # SIGTERM first: a controlled shutdown, which flushes the logs.
        if self.process is not None and stop_process(self.process, timeout):
            log.warning("Apache Kafka did not stop within %.0fs: killed it", timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait ``timeout`` s, then SIGKILL. A temporary data dir is removed."""
        self._terminate(timeout)
        _LIVE.discard(self)
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.owns_log_file:
            self.log_file.unlink(missing_ok=True)

    def kill9(self) -> None:
        """SIGKILL, as a crash would (the data dir is kept: :meth:`restart` recovers it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, timeout: float = 30.0) -> KafkaBroker:
        """Stop (if running) and start again on the same data dir and port."""
        self._terminate(timeout)
        self._launch()
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_kafka(port: int = 0, *, data_dir: os.PathLike | str | None = None,
                log_file: os.PathLike | str | None = None, timeout: float = 120.0,
                version: str = KAFKA_VERSION, config: Mapping[str, object] | None = None) -> KafkaBroker:
    """Start Apache Kafka on loopback and wait until it answers metadata requests.

    ``port=0`` picks a free port (on a reused ``data_dir``: the previous one if free).
    ``log_file`` defaults to ``<data_dir>/kafka.log``, or with a temporary data dir to
    ``<tmpdir>.log`` beside it, removed on stop but kept when the start fails. ``config``
    overrides or adds ``server.properties`` entries. Raises :class:`BrokerUnavailable`.
    """
    java = find_java()
    libs = ensure_kafka_libs(version)
    owns = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="recsys-kafka-")) if owns else Path(data_dir).resolve()
    try:
        prev_port, prev_controller = previous_ports(root / "server.properties")
        if not port:
            port = prev_port if prev_port and not is_listening(prev_port) else free_port()
        controller_port = prev_controller if prev_controller and not is_listening(prev_controller) else 0
        while not controller_port or controller_port == port:
            controller_port = free_port()
        if log_file:
            log_path = Path(log_file).resolve()
        else:
            log_path = root.with_name(root.name + ".log") if owns else root / "kafka.log"
        broker = KafkaBroker(port=port, controller_port=controller_port, data_dir=root, log_file=log_path,
                             version=version, java=java, libs=libs, config=dict(config or {}),
                             start_timeout=timeout, owns_data_dir=owns, owns_log_file=owns and not log_file)
        broker._launch()
    except BaseException:
        if owns:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return broker


def _answers_metadata(bootstrap: str) -> bool:
    """True once the broker answers a metadata request listing itself and a controller."""
    from aiokafka import AIOKafkaClient

    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers()) and client.cluster.controller is not None
        except Exception:  # noqa: BLE001  not ready, whatever the reason
            return False
        finally:
            await client.close()

    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)  # "Unable connect" while it is still starting
    try:
        return asyncio.run(probe())
    finally:
        aiokafka_log.setLevel(level)


# --- ``recsys broker --engine kafka`` ---------------------------------------------------

class _StopRequested(BaseException):
    """Raised by the SIGINT/SIGTERM handler of :func:`serve_until_signal`."""


def _raise_stop(signum, frame):
    raise _StopRequested(signum)


def serve_until_signal(start: Callable[[], T], serve: Callable[[T], int], stop: Callable[[T], None]) -> int:
    """``serve(start())`` until SIGINT/SIGTERM (exit status 0) or until ``serve`` returns
    its own status; then ``stop``, with both signals ignored (a second Ctrl-C must not cut
    the shutdown short, a supervisor must not restart what is being stopped)."""
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    running = None
    try:
        running = start()
        return serve(running)
    except _StopRequested:
        return 0
    finally:
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        if running is not None:
            stop(running)
        for s, handler in old.items():
            signal.signal(s, handler)


def fetch_libs_loudly(version: str) -> None:
    """Before a first start: say what is missing (Java, Maven), then that the jars are
    being fetched (minutes, once)."""
    if not kafka_libs_cached(version):
        find_java()
        find_mvn(version)
        print(f"fetching Apache Kafka {version} with Maven into {kafka_home(version)} (once) ...",
              file=sys.stderr, flush=True)


def run_kafka_foreground(port: int, data_dir: str | None = None, version: str = KAFKA_VERSION) -> int:
    """Run Kafka until SIGINT/SIGTERM, then stop it cleanly. Prints one line when ready.
    :class:`BrokerUnavailable` propagates (the CLI prints it as one line)."""

    def start() -> KafkaBroker:
        fetch_libs_loudly(version)
        broker = start_kafka(port, data_dir=data_dir, version=version)
        where = f"data in {broker.data_dir}" if data_dir else "temporary data dir, removed on stop"
        print(f"Apache Kafka {version} (KRaft, {where}; log {broker.log_file}) listening on {broker.bootstrap}",
              flush=True)
        return broker

    def serve(broker: KafkaBroker) -> int:
        while broker.process.poll() is None:
            time.sleep(0.5)
        code = broker.process.returncode
        print(f"Apache Kafka exited by itself with code {code}: see {broker.log_file}", file=sys.stderr, flush=True)
        return code or 1

    def stop(broker: KafkaBroker) -> None:
        broker.stop()
        print("Apache Kafka stopped", flush=True)

    return serve_until_signal(start, serve, stop)
