"""What the patches were written against, and the start-up check that it has not changed.

Every patch in this package replaces, wraps or copies a private function of
faust-streaming, mode or aiokafka, or relies on what one does. Each such function is a
row of :data:`UPSTREAM` with a fingerprint of its source (or, for public API, of its
signature) as installed when the patch was last checked, and :data:`VERSIONS` names
those releases. :func:`check_upstream` compares both with what is installed: any
difference means a patch may now be wrong (or no longer needed), so the worker refuses
to start with one line naming it, until someone has re-read the patch against the new
upstream code (``UPSTREAM.md`` says how) and recorded the new fingerprint
(``python -m app.faust_patches.upstream`` prints them).
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple

log = logging.getLogger(__name__)

#: The releases every fingerprint below was taken from (pinned in ``pyproject.toml``).
VERSIONS = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}


class Upstream(NamedTuple):
    """One upstream function a patch depends on."""

    #: ``module:Class.attribute`` (or ``module:function``)
    target: str
    #: ``source`` (the function's code) or ``signature`` (public API: how it is called)
    kind: str
    #: first 12 hex digits of the sha256 of the source or signature text
    fingerprint: str
    #: which patch depends on it, and how
    used_by: str


#: Every upstream function a patch replaces, wraps or copies, or relies on (UPSTREAM.md).
UPSTREAM = (
    Upstream("faust.transport.consumer:Consumer.ack", "source", "5fcf41cf4515",
             "wrapped by at_least_once.ack; refuse_ack does its bookkeeping for a refused ack"),
    Upstream("faust.types.tuples:Message.ack", "source", "4751b72c4ed8",
             "refuse_ack sets acked under the same ack_lock, so a later ack is a no-op"),
    Upstream("faust.transport.consumer:Consumer._drain_messages", "source", "44a2500309e8",
             "copied: at_least_once.drain_messages"),
    Upstream("faust.transport.consumer:Consumer._add_gap", "source", "4df2573ded7c",
             "copied into at_least_once._check_jump (records a real gap)"),
    Upstream("faust.transport.consumer:Consumer._new_offset", "source", "1d2c7ea89a7a",
             "reads what refuse_ack and _check_jump write: acked offsets and gaps"),
    Upstream("faust.transport.consumer:Consumer.wait_empty", "source", "e4662fe24f09",
             "waits for the unacked messages refuse_ack removes"),
    Upstream("faust.tables.recovery:Recovery.on_recovery_completed", "source", "6ef567acf072",
             "copied: at_least_once.on_recovery_completed; wrapped by changelog_rebuild"),
    Upstream("faust.tables.recovery:Recovery._resume_streams", "source", "d986a6710c1a",
             "copied: at_least_once._resume_streams"),
    Upstream("faust.tables.recovery:Recovery._build_offsets", "source", "27eec86be06c",
             "wrapped by changelog_rebuild._build_offsets"),
    Upstream("faust.stores.rocksdb:Store._db_for_partition", "source", "cb7e67d5f9ef",
             "changelog_rebuild.rewrite_changelog reads a partition's database"),
    Upstream("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer", "source",
             "c2701bfc3e6f", "wrapped by fetch_wait.apply (sets the fetch wait)"),
    Upstream("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._fetch_records", "source",
             "39a2c6c79fc1", "wrapped by fetch_wait.apply (pauses the changelog partitions Faust does not read)"),
    Upstream("faust.transport.drivers.aiokafka:Producer._settings_extra", "source", "a4c7bc41b638",
             "replaced by producer.apply (idempotent, acks=all, outside Faust's transactions too)"),
    Upstream("faust.tables.recovery:Recovery.__init__", "source", "acec96bd78fa",
             "wrapped by exactly_once._recovery_init (the recovery's app says it is in a transaction)"),
    Upstream("faust.tables.recovery:Recovery._slurp_changelogs", "source", "7825c7e50f76",
             "exactly_once._InTransactions: its aborted-transaction check runs only when app.in_transaction"),
    Upstream("faust.transport.consumer:Consumer._commit_offsets", "source", "1a6979904118",
             "wrapped by exactly_once._commit_offsets (leaves the transactions' topics out)"),
    Upstream("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._highwaters", "source", "a7f4f97d9f32",
             "replaced by tansu.apply (end offsets from a Fetch)"),
    Upstream("aiokafka.consumer.consumer:AIOKafkaConsumer.start", "source", "2f1ba7044332",
             "reads the _fetch_max_wait_ms and _isolation_level fetch_wait.apply sets"),
    Upstream("aiokafka.client:AIOKafkaClient.send", "signature", "87bf58ae2f15",
             "broker/tansu_workarounds.fetch_high_watermarks sends its Fetch with it"),
    Upstream("mode.services:Service.wait_first", "source", "feade6a31f8a",
             "at_least_once.drain_messages hands it the rest of a delivery (start_delivery)"),
    Upstream("faust.streams:current_event", "source", "3b821f1a78d8",
             "reads the _current_event BatchWriter.as_current sets"),
    Upstream("faust.transport.drivers.aiokafka:Producer._ensure_producer", "source", "5592a4bbdf25",
             "BatchWriter sends through the aiokafka producer it returns"),
    Upstream("faust.tables.base:Collection.apply_changelog_batch", "source", "b980a78d3ae9",
             "BatchWriter.apply_changelog writes a table's store with it"),
    Upstream("faust.stores.rocksdb:Store.apply_changelog_batch", "source", "ea3344d369fc",
             "reads the changelog records BatchWriter builds (rocksdb://)"),
    Upstream("faust.stores.memory:Store.apply_changelog_batch", "source", "71863e3cd727",
             "reads the changelog records BatchWriter builds (memory://)"),
    Upstream("aiokafka.producer.producer:AIOKafkaProducer.create_batch", "signature", "f4ca892d9e9f",
             "BatchWriter.send packs record batches"),
    Upstream("aiokafka.producer.producer:AIOKafkaProducer.send_batch", "signature", "775601bda3a4",
             "BatchWriter.send sends them"),
    Upstream("aiokafka.producer.message_accumulator:BatchBuilder.append", "signature", "b3eab5ff5328",
             "BatchWriter.send fills a batch"),
    Upstream("faust.transport.drivers.aiokafka:credentials_to_aiokafka_auth", "signature", "e04a83866c16",
             "at_least_once.GapChecker builds its consumer like Faust's"),
    Upstream("faust.transport.drivers.aiokafka:server_list", "signature", "eb68d54f8ff9",
             "at_least_once.GapChecker builds its consumer like Faust's"),
    Upstream("faust.sensors.monitor:Monitor.on_message_in", "signature", "ef784fa73cb4",
             "overridden by QuietMonitor"),
    Upstream("faust.sensors.monitor:Monitor.on_stream_event_in", "signature", "04499aac4427",
             "overridden by QuietMonitor"),
    Upstream("faust.sensors.monitor:Monitor.on_stream_event_out", "signature", "3bad869c2eec",
             "overridden by QuietMonitor"),
    Upstream("faust.sensors.monitor:Monitor.on_message_out", "signature", "ef784fa73cb4",
             "overridden by QuietMonitor"),
    Upstream("faust.sensors.monitor:Monitor.on_table_get", "signature", "27f3137b4779",
             "overridden by QuietMonitor"),
    Upstream("faust.sensors.monitor:Monitor.on_table_set", "signature", "a152b14440f3",
             "overridden by QuietMonitor"),
    Upstream("faust.sensors.monitor:Monitor.on_send_initiated", "signature", "3183457844f2",
             "overridden by QuietMonitor"),
    Upstream("faust.sensors.monitor:Monitor.on_send_completed", "signature", "05a79440aff4",
             "overridden by QuietMonitor"),
)

class UpstreamChanged(RuntimeError):
    """The installed faust-streaming, mode or aiokafka is not what the patches were checked
    against; ``str()`` is one line naming what differs."""


#: (owner, attribute) -> the upstream object a patch replaced (what the guard fingerprints).
_replaced: dict[tuple[type, str], object] = {}


def replace(owner: type, name: str, patch) -> None:
    """Install ``patch`` as ``owner.name``, remembering the upstream one (the first time)."""
    _replaced.setdefault((owner, name), getattr(owner, name))
    setattr(owner, name, patch)


def original(owner: type, name: str):
    """``owner.name`` as upstream has it, even after :func:`replace`."""
    return _replaced.get((owner, name), getattr(owner, name))


def resolve(target: str):
    """The object ``module:Qual.name`` names (upstream's, even if a patch replaced it)."""
    module_name, _, path = target.partition(":")
    *owners, name = path.split(".")
    owner = importlib.import_module(module_name)
    for part in owners:
        owner = getattr(owner, part)
    return original(owner, name) if isinstance(owner, type) else getattr(owner, name)


def fingerprint(obj, kind: str) -> str:
    obj = getattr(obj, "fun", obj)  # a mode ServiceTask: the coroutine function it runs
    text = inspect.getsource(obj) if kind == "source" else str(inspect.signature(obj))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def differences() -> list[str]:
    """One line per installed release or upstream function that is not as recorded."""
    found = []
    for dist, wanted in VERSIONS.items():
        try:
            installed = version(dist)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != wanted:
            found.append(f"{dist} {installed} is installed, but the patches of Faust internals were checked "
                         f"against {wanted}")
    for row in UPSTREAM:
        try:
            now = fingerprint(resolve(row.target), row.kind)
        except (ImportError, AttributeError, KeyError, OSError, TypeError) as exc:
            found.append(f"{row.target} cannot be read upstream ({exc.__class__.__name__}: {exc}; {row.used_by})")
            continue
        if now != row.fingerprint:
            found.append(f"{row.target} changed upstream ({row.kind} fingerprint {now}, recorded {row.fingerprint}; "
                         f"{row.used_by})")
    return found


def check_upstream(guard: bool = True) -> None:
    """Raise :class:`UpstreamChanged` (one line) if anything differs; with ``guard`` off,
    log that line as a warning and go on."""
    found = differences()
    if not found:
        return
    what = found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
    if guard:
        raise UpstreamChanged(f"{what}. Re-check the patches (app/faust_patches/UPSTREAM.md), or set "
                              "RECSYS_FAUST_GUARD=off to start anyway, at your own risk")
    log.warning("RECSYS_FAUST_GUARD is off, starting anyway: %s", what)


def current_rows() -> list[str]:
    """The fingerprints of what is installed now, one ``target kind fingerprint`` per row."""
    return [f"{row.target} {row.kind} {fingerprint(resolve(row.target), row.kind)}" for row in UPSTREAM]


if __name__ == "__main__":  # after re-reading every patch against a new release: the new fingerprints
    print(*(f"{dist}=={version(dist)}" for dist in VERSIONS), sep="\n")
    print(*current_rows(), sep="\n")
