"""Kill drills: a steady stream of ratings, a worker killed with SIGKILL mid-stream, and
the counts that say whether anything was lost.

Used by ``tests/integration/test_failover.py`` (one short run of each drill) and
``benchmarks/failover_bench.py`` (repeated runs, a table of counts). Three drills:

- ``failover``: two workers share the partitions; one is killed, the survivor takes
  over its partitions (from the changelog) and goes on;
- ``restart``: one worker is killed and restarted on its data dir (local RocksDB);
- ``restart-wiped``: the same, with its data dir deleted (state from the changelog only).

Every rating has a unique timestamp, so "every rating got a list" is a set comparison
of (user, ts) pairs with the lists' (user, trigger_ts). "Every final list is right"
compares each user's last list with an in-process replay of the same ratings through
the agent's pure function, as a single worker that never crashed would compute it.
"""
from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.settings import Settings
from harness.local import LocalDeployment, WorkerProcess

#: failover: kill -9 one of two workers; restart: kill -9 the only worker, start it again
#: on its data dir; restart-wiped: the same on an empty data dir (state from changelogs
#: only); broker-restart: restart the broker under the running worker (needs a broker
#: that keeps its data: Apache Kafka; ``broker_handle`` must have ``restart()``);
#: broker-kill: kill -9 the node of a replicated cluster that leads the most ratings and
#: changelog partitions, under a worker and a model worker (``harness.cluster.
#: SupervisedCluster``: its supervisor starts the node again).
DRILLS = ("failover", "restart", "restart-wiped", "broker-restart", "broker-kill")


@dataclass
class Drill:
    """What to run: ``rate`` ratings/s for ``seconds``, the kill at ``kill_at`` seconds."""

    kind: str = "failover"
    rate: float = 400.0
    seconds: float = 24.0
    kill_at: float = 10.0
    users: int = 300
    items: int = 120
    partitions: int = 4
    seed: int = 1
    wait_s: float = 90.0  # at most, for the last lists after the stream ends
    #: Publish a second model (:func:`second_model`, version drill-v2) at this many
    #: seconds: every final list must then be the replay's under the version it names.
    broadcast_at: float | None = None


@dataclass
class DrillResult:
    kind: str
    sent: int = 0
    lists: int = 0
    missing: list = field(default_factory=list)  # (user, ts) of ratings that got no list
    users: int = 0
    wrong_final: list = field(default_factory=list)  # users whose last list is not the replay's
    counters: dict = field(default_factory=dict)  # the surviving worker's /metrics/ counters of interest
    seconds: float = 0.0
    duplicates: int = 0  # lists beyond one per rating (a redelivered rating's second list)
    #: broker-kill: the node killed, whether it was started again, and whether the worker
    #: and the model worker are the processes they were before (no restart) and the model
    #: worker read every rating.
    cluster: dict = field(default_factory=dict)

    def as_row(self) -> dict:
        return {"drill": self.kind, "sent": self.sent, "lists": self.lists, "lost": len(self.missing),
                "duplicates": self.duplicates,
                "users": self.users, "wrong_final_lists": len(self.wrong_final), "seconds": round(self.seconds, 1),
                **{k.split(".", 1)[-1]: v for k, v in self.counters.items()}, **self.cluster}


def model(items: int) -> dict:
    """A small fixed similarity model: every item's 20 next items, similarity 0.99 down to 0.61."""
    return {f"i{a}": {f"i{(a + d) % items}": round(0.99 - d * 0.019, 4) for d in range(1, 21)}
            for a in range(items)}


def second_model(items: int) -> dict:
    """Another model for a broadcast during a drill: every item's 20 previous items."""
    return {f"i{a}": {f"i{(a - d) % items}": round(0.98 - d * 0.019, 4) for d in range(1, 21)}
            for a in range(items)}


def ratings(drill: Drill) -> list[tuple[str, str, float, float]]:
    """The stream: (user, item, rating, ts), ts unique and increasing."""
    rng = random.Random(drill.seed)
    n = int(drill.rate * drill.seconds)
    return [(f"u{rng.randrange(drill.users)}", f"i{rng.randrange(drill.items)}", float(rng.randint(1, 5)),
             1_000_000.0 + k) for k in range(n)]


def expected_final_lists(stream, neighbours: dict, conf) -> dict[str, list]:
    """Each user's last list, replayed in-process like one worker that never crashed
    (each user through its ranker: ``conf.ranking.ranker``, or its arm of ``conf.ranking.ab``)."""
    from ranking import Interaction, Model, SimilarityIndex
    from ranking.ab import Assignment
    from tables.state import UserState

    model, assignment = Model(SimilarityIndex(neighbours)), Assignment.from_settings(conf)
    states: dict[str, UserState] = {}
    for offset, (user, item, rating, ts) in enumerate(stream):
        state = states.setdefault(user, UserState())
        state.apply(offset, assignment.ranker_for(user)[1], Interaction(user, item, rating, ts), model)
    return {user: state.last_list for user, state in states.items()}


async def _produce(conf, stream, rate: float, on_tick: Callable[[float], None]) -> None:
    from app.records import Rating, to_message
    from broker.clients import KafkaClients

    producer = await KafkaClients(conf).producer("bulk", linger_ms=5)
    try:
        started, sent = time.monotonic(), 0
        while sent < len(stream):
            elapsed = time.monotonic() - started
            on_tick(elapsed)
            due = min(len(stream), int(elapsed * rate) + 1)
            for user, item, rating, ts in stream[sent:due]:
                key, value = to_message(Rating(user=user, item=item, rating=rating, ts=ts))
                await producer.send(conf.topics.ratings, key=key, value=value)
            sent = due
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()


async def _read_lists(conf, want: set, timeout: float) -> list[dict]:
    """Every list on the topic, from the beginning, until each wanted (user, ts) has one
    (or ``timeout``); then a few quiet polls more so re-emitted lists are in too."""
    from broker.clients import KafkaClients

    # Under exactly_once only committed lists count: KafkaClients reads read_committed then.
    consumer = await KafkaClients(conf).consumer(conf.topics.recommendations, max_partition_fetch_bytes=8 << 20)
    lists: list[dict] = []
    seen: set = set()
    try:
        deadline, quiet = time.monotonic() + timeout, 0
        while time.monotonic() < deadline and quiet < 8:
            batch = await consumer.getmany(timeout_ms=250, max_records=50_000)
            records = [r for rs in batch.values() for r in rs if r.value is not None]
            lists += [json.loads(r.value) for r in records]
            seen.update((rec["user"], rec["trigger_ts"]) for rec in lists[len(lists) - len(records):])
            quiet = quiet + 1 if (not records and want <= seen) else 0
    finally:
        await consumer.stop()
    return lists


def run_drill(drill: Drill, broker, tmp: Path, *, base: Settings | None = None,
              say: Callable[[str], None] = lambda msg: None, **settings) -> DrillResult:
    """Run one drill on ``broker`` (a running broker handle, or an engine name for a fresh
    one: ``LocalDeployment``; Apache Kafka for the broker-restart drill), from the
    settings ``base``; ``settings``: more ``RECSYS_*`` variables of the workers."""
    import threading

    if drill.kind not in DRILLS:
        raise ValueError(f"unknown drill {drill.kind!r}: one of {', '.join(DRILLS)}")
    t0 = time.monotonic()
    settings = {"RECSYS_SESSION_TIMEOUT_S": 6, "RECSYS_HEARTBEAT_INTERVAL_S": 1, "RECSYS_LOG_EVERY_S": 5, **settings}
    deployment = LocalDeployment(tmp, broker=broker, base=base, partitions=drill.partitions, **settings)
    conf = deployment.conf
    neighbours = model(drill.items)
    try:
        model_worker = None
        if deployment.engine == "kafka":  # Apache Kafka compacts: the drill counts every list
            asyncio.run(_create_topics_keeping_every_list(conf))
        if drill.kind == "broker-kill":
            model_worker = start_model_worker(deployment)
        w1 = deployment.start_worker("w1")
        deployment.publish_model(neighbours, "drill-v1")
        victim, survivor = w1, w1
        if drill.kind == "failover":
            victim = deployment.start_worker("w2", ready=False)
            deployment.wait_for_split()
        stream = ratings(drill)
        state = {"killed": False}

        def on_tick(elapsed: float) -> None:
            nonlocal survivor
            if drill.broadcast_at is not None and elapsed >= drill.broadcast_at and "broadcast" not in state:
                state["broadcast"] = threading.Thread(target=_publish, args=(second_model(drill.items), "drill-v2", conf),
                                                      daemon=True)
                state["broadcast"].start()  # in a thread: the producer keeps its pace
                say(f"publishing model drill-v2 at {elapsed:.1f} s")
            if state["killed"] or elapsed < drill.kill_at:
                return
            state["killed"] = True
            if drill.kind == "broker-restart":  # in a thread: the producer keeps trying meanwhile
                say(f"restarting the broker at {elapsed:.1f} s")
                restarting = threading.Thread(target=deployment.broker.restart, daemon=True)
                restarting.start()
                state["restarting"] = restarting
                return
            if drill.kind == "broker-kill":
                pid = deployment.broker.kill9(state["victim"])
                say(f"killed broker node {state['victim']} (pid {pid}) at {elapsed:.1f} s")
                return
            victim.kill9()
            say(f"killed {victim.name} (pid {victim.pid}) at {elapsed:.1f} s")
            if drill.kind != "failover":
                if drill.kind == "restart-wiped":
                    shutil.rmtree(conf.data_dir, ignore_errors=True)
                survivor = deployment.restart_worker(w1)

        if drill.kind == "broker-kill":  # chosen before the stream: leaders stay where they are until the kill
            state["victim"] = deployment.broker.busiest_leader(
                [conf.topics.ratings, f"{conf.worker.app_id}-user_state-changelog"])
        asyncio.run(_produce(conf, stream, drill.rate, on_tick))
        for waiting in ("restarting", "broadcast"):
            if waiting in state:
                state[waiting].join(timeout=180)
        say(f"sent {len(stream)} ratings")
        want = {(u, ts) for u, _, _, ts in stream}
        lists = asyncio.run(_read_lists(conf, want, drill.wait_s))
        counters = _counters(survivor)
        cluster = {}
        if drill.kind == "broker-kill":
            cluster = {"killed_node": state["victim"] if state["killed"] else None,
                       "node_restarted": deployment.broker.wait_restarted(1, timeout=drill.wait_s),
                       "worker_carried_on": w1.alive() and len(deployment.workers) == 1,
                       "model_worker_carried_on": model_worker.alive(),
                       "model_worker_read": _model_worker_consumed(model_worker, len(stream), drill.wait_s)}
    finally:
        deployment.stop()
    result = _judge(drill, stream, lists, neighbours, conf, counters, time.monotonic() - t0)
    result.cluster = cluster
    return result


def _publish(neighbours: dict, version: str, conf) -> None:
    from offline_als.publish import publish_similarity

    asyncio.run(publish_similarity(neighbours, version, conf=conf))


async def _create_topics_keeping_every_list(conf) -> None:
    """The topics, with ``recommendations`` compacted only after 5 minutes: the drill
    counts every list ever written (a local Apache Kafka compacts within seconds)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from broker.clients import KafkaClients
    from broker.topics import create_topics

    await create_topics(conf)
    admin = await KafkaClients(conf).admin()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, conf.topics.recommendations,
                                                  {"min.compaction.lag.ms": "300000"})])
    finally:
        await admin.close()


def start_model_worker(deployment: LocalDeployment, timeout: float = 90.0) -> WorkerProcess:
    """``recsys als-worker`` reading the ratings but not retraining during a drill (a new
    model would change the lists the drill compares with its replay); returns once its
    metrics answer (it reads)."""
    env = {**deployment.child_env, "RECSYS_ALS_EVERY_MIN": "600", "RECSYS_ALS_EVERY_RATINGS": "10000000"}
    worker = WorkerProcess("model-worker", env, deployment.root / "model-worker.log", command=("als-worker",)).start()
    deployment.learners.append(worker)  # stopped with the deployment
    deadline = time.monotonic() + timeout
    while _model_worker_read(worker) is None:  # its metrics answer once it runs
        if not worker.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the model worker did not start:\n{worker.log_tail(20)}")
        time.sleep(0.5)
    return worker


def _model_worker_read(worker: WorkerProcess) -> int | None:
    """Ratings the model worker has read, by its metrics (None: they do not answer)."""
    import urllib.request

    url = f"http://127.0.0.1:{worker.env['RECSYS_MODEL_METRICS_PORT']}/metrics/json"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(json.load(response)["consumed"])
    except (OSError, ValueError, KeyError):
        return None


def _model_worker_consumed(worker: WorkerProcess, wanted: int, timeout: float) -> int | None:
    """Ratings the model worker has read, waiting up to ``timeout`` for ``wanted``."""
    deadline = time.monotonic() + timeout
    while True:
        consumed = _model_worker_read(worker)
        if (consumed or 0) >= wanted or not worker.alive() or time.monotonic() >= deadline:
            return consumed
        time.sleep(1.0)


def _judge(drill, stream, lists, neighbours, conf, counters, seconds) -> DrillResult:
    got = {(rec["user"], rec["trigger_ts"]) for rec in lists}
    final: dict[str, dict] = {}
    for rec in lists:  # topic order per key is emission order: the last one wins
        final[rec["user"]] = rec
    by_version = {"drill-v1": expected_final_lists(stream, neighbours, conf)}
    if drill.broadcast_at is not None:
        by_version["drill-v2"] = expected_final_lists(stream, second_model(drill.items), conf)
    expected = by_version["drill-v1"]

    def right(user: str) -> bool:
        rec = final.get(user)
        want = by_version.get(rec.get("model_version"), {}).get(user) if rec else None
        return rec is not None and want is not None and _items(rec["items"]) == _items(want)

    wrong = [u for u in expected if not right(u)]
    missing = [(u, ts) for u, _, _, ts in stream if (u, ts) not in got]
    return DrillResult(kind=drill.kind, sent=len(stream), lists=len(lists), missing=missing, users=len(expected),
                       wrong_final=wrong, counters=counters, seconds=seconds, duplicates=len(lists) - len(got))


def _items(entries: list | None) -> list | None:
    from app.records import wire_list  # lists on the topic carry rounded scores

    return None if entries is None else wire_list(entries)



def _counters(worker: WorkerProcess) -> dict:
    try:
        counters = worker.get("/metrics/json/")["counters"]
    except (OSError, ValueError, KeyError):
        return {}
    wanted = ("consumer.", "ratings.redelivered", "ratings.rerouted")
    return {k: v for k, v in sorted(counters.items()) if k.startswith(wanted)}
