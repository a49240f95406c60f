"""Real-time path benchmark: one worker on a fresh local broker, Tansu or Apache Kafka.

``--engine tansu|kafka|both`` (default tansu): with ``both`` every phase runs on each
engine in turn (never at once) and a side-by-side table closes the output.

Three measurements (each phase on its OWN fresh broker: Tansu never deletes anything
and every fetch scans all batches of a partition, so data left by one phase slows the
next; see ../shared/EMBEDDED_BROKER.md):

1. throughput: a similarity model is published first (ALS on a generated shop, or
   synthetic neighbour lists with ``--model synthetic``; default 5,000 items x 50
   neighbours), the worker loads it, then ``--ratings`` ratings over ``--users`` users
   are produced as fast as aiokafka goes; the rate is read from the lists on the
   recommendations topic (their ``emitted_at``: first to last list, and the steady part
   after the producer finished).
2. memory: worker RSS and the size of its data dir (RocksDB) before and after phase 1,
   scaled to 100k users with state.
3. latency: ``--latency-rate`` ratings/s for ``--latency-seconds`` s on a second fresh
   broker; produce -> list received p50/p99 (``produced_at`` is the rating's Kafka
   timestamp), split into produce -> emitted (worker fetch + processing), emitted ->
   received (output path) and ``worker_ms`` (time inside the worker).

``--profile`` samples the worker with py-spy during phase 1 and prints where the time
goes (``--flamegraph SVG`` also draws it). Prints a table; the LAST line is JSON.

``--peers`` runs only phase 1, three times on identical input, each on a fresh broker:
the worker, the same pipeline on Quix Streams and a plain aiokafka + rocksdict loop
(``benchmarks/peers/``, the ``bench`` extra); it prints their table and a JSON line
with the keys ``engine ranker ours quix aiokafka ours_committed quix_committed
aiokafka_committed cores``. One engine per invocation.

    .venv/bin/python benchmarks/realtime_bench.py                   # ~3-4 minutes
    .venv/bin/python benchmarks/realtime_bench.py --latency-seconds 20 --ratings 30000 --profile
    .venv/bin/python benchmarks/realtime_bench.py --peers --engine kafka          # ~6 minutes
    # what the worker costs besides ranking (every list a copy of the first; an experiment):
    .venv/bin/python benchmarks/realtime_bench.py --latency-seconds 0 --without-ranking
    # throughput-tuned producer batching (lists ~30 ms later):
    RECSYS_PRODUCER_LINGER_MS=50 RECSYS_PRODUCER_BATCH_BYTES=262144 .venv/bin/python benchmarks/realtime_bench.py
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.records import Rating, to_message
from broker.clients import KafkaClients
from harness.demo import create_topics, log, percentile_ms, topic_end_offsets, train_neighbours
from harness.local import LocalDeployment, WorkerProcess, process_rss


def cpu_seconds(pid) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def dir_bytes(path: Path) -> int:
    """Bytes on disk under ``path`` (allocated blocks, like ``du``)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


# ------------------------------------------------------------------ data and model
def make_data(args):
    """Ratings for the phases (and ALS training), from one seeded synthetic shop."""
    from datatools.generator import generate_ratings_arrays

    n_bench = args.ratings + int(args.latency_rate * args.latency_seconds) + 1000
    n_train = args.train_ratings if args.model == "als" else 0
    u, i, r, ts = generate_ratings_arrays(args.users, args.items, n_train + n_bench, seed=args.seed)
    train = (u[:n_train], i[:n_train], r[:n_train])
    bench = (u[n_train:], i[n_train:], r[n_train:], ts[n_train:])
    # Spread the benchmark ratings over all users (the generator's power law would touch
    # only part of them): user ids are re-drawn uniformly, items and values are kept.
    rng = np.random.default_rng(args.seed + 1)
    bench = (rng.integers(args.users, size=bench[0].shape[0]).astype(np.int32),) + bench[1:]
    return train, bench


def synthetic_neighbours(n_items: int, m: int, seed: int) -> dict:
    """``m`` random neighbours per item, mostly in its own block of 100, similarities
    0.3..0.99 (about half above theta = 0.6), best first."""
    rng = np.random.default_rng(seed)
    out = {}
    for a in range(n_items):
        block = (a // 100) * 100
        pool = np.concatenate([np.arange(block, min(block + 100, n_items)), rng.integers(n_items, size=m)])
        pool = np.unique(pool[pool != a])
        pick = rng.choice(pool, size=min(m, pool.size), replace=False)
        sims = np.sort(rng.uniform(0.3, 0.99, pick.size))[::-1]
        out[f"i{a}"] = {f"i{b}": round(float(s), 4) for b, s in zip(pick, sims, strict=False)}
    return out


def messages(bench, lo: int, hi: int) -> list[tuple[bytes, bytes]]:
    u, i, r, ts = bench
    out = []
    for k in range(lo, hi):
        out.append(to_message(Rating(user=f"u{int(u[k])}", item=f"i{int(i[k])}", rating=float(r[k]),
                                     ts=float(ts[k]))))
    return out


def frozen_learned_weights(model: tuple[dict, dict], bench, n: int, conf) -> tuple[list, dict]:
    """``--ranker learned``: the learner run over the benchmark's first ``n`` ratings (each
    user's examples made as a worker makes them), its weight set frozen; returns the
    ``ranker-model`` messages and the learner's speed (example messages parsed and learnt
    per second, one core)."""
    from app.records import examples_message, parse_examples, weights_messages
    from learner.online import OnlineLearner
    from ranking import Blend, Interaction, LearnedRanker, Model, SimilarityIndex
    from ranking.features import FEATURES, KeptCandidates
    from tables.state import UserState

    neighbours, extras = model
    index = SimilarityIndex(neighbours, related=extras.get("related"), counts=extras.get("counts"),
                            sources=extras.get("sources"),
                            blend=Blend.from_dict(extras["blend"]) if extras.get("blend") else None, keep_sources=True)
    ranker, served = LearnedRanker.from_settings(conf), Model(index)
    states: dict[str, UserState] = {}
    kept, sent = KeptCandidates(), []
    u, i, r, ts = bench
    t0 = time.perf_counter()
    for k in range(n):
        user = f"u{int(u[k])}"
        state = states.setdefault(user, UserState())
        interaction = Interaction(user, f"i{int(i[k])}", float(r[k]), float(ts[k]))
        ex = ranker.examples(state, interaction, served, made=kept.take(user, state.offset))
        if ex is not None:
            sent.append(examples_message(ex)[1])
        kept.put(user, k, state.apply(k, ranker, interaction, served)[1].made)
    replay_s = time.perf_counter() - t0
    learner = OnlineLearner(FEATURES, dict(ranker.objective))
    t0 = time.perf_counter()
    for value in sent:
        learner.learn(parse_examples(value))
    learn_s = time.perf_counter() - t0
    weights = learner.weights(version="bench-frozen", copy=True)
    speed = {"ratings_replayed": n, "replay_s": round(replay_s, 1), "example_messages": len(sent),
             "example_rows": learner.examples_learnt,
             "learner_messages_per_s": round(len(sent) / learn_s) if learn_s else None,
             "learner_rows_per_s": round(learner.examples_learnt / learn_s) if learn_s else None}
    return weights_messages(weights, time.time()), speed


# ------------------------------------------------------------------ deployment
def worker_prelude(args) -> str:
    """Experiments without editing the app: the worker's GIL switch interval; the worker
    without its ranking (``benchmarks/without_ranking.py``)."""
    lines = [f"sys.setswitchinterval({float(args.switch_interval)!r})"] if args.switch_interval else []
    if args.without_ranking:
        lines.append("from benchmarks.without_ranking import install; install()")
    return "\n".join(lines)


def ranker_label(args) -> str:
    """The ranker as the tables name it (a run without ranking says so)."""
    return f"{args.ranker} (without ranking: an experiment)" if args.without_ranking else args.ranker


class Deployment:
    """A fresh broker + the worker(s) with a published model (``LocalDeployment``), and
    the figures a phase reports about them."""

    def __init__(self, name: str, tmp: Path, args, model: tuple[dict, dict]) -> None:
        # model: (neighbours, extras): publish_similarity's arguments (extras: related, counts)
        self.name, self.tmp, self.args = name, tmp / f"{args.engine}-{name}", args
        self.neighbours, self.extras = model
        self.local = None

    def __enter__(self) -> Self:
        args = self.args
        # Lists are counted on the compacted topic: keep young ones (as the tests do).
        self.local = LocalDeployment(self.tmp, broker=args.engine, base=args.base, partitions=args.partitions,
                                     kafka_config={"log.cleaner.min.compaction.lag.ms": 600_000},
                                     RECSYS_LOG_EVERY_S=5, RECSYS_RANKER=args.ranker, RECSYS_AB="")
        self.conf = self.local.conf
        self.fresh_topics = asyncio.run(topic_end_offsets(self.conf))
        asyncio.run(create_topics(self.conf))
        prelude = worker_prelude(args)
        # --ranker learned: its weights frozen (args.learned_weights), no learner running
        self.worker = self.local.start_worker(self.name, prelude=prelude, learner=False)
        self.version = f"bench-{self.local.tag}"
        t0 = time.perf_counter()
        self.model_messages = self.local.publish_model(self.neighbours, self.version, **self.extras)
        self.model_load_s = time.perf_counter() - t0
        if args.ranker == "learned":
            from evaluation.stream import _publish_weights, _wait_for_weights

            asyncio.run(_publish_weights(self.conf, args.learned_weights))
            _wait_for_weights(self.worker, "bench-frozen")
        # --workers N: more workers of the same app share the partitions (scaling out).
        self.extra_workers = [self.local.start_worker(f"{self.name}-{n}", ready=False, prelude=prelude)
                              for n in range(2, getattr(args, "workers", 1) + 1)]
        if self.extra_workers:
            owned = self.local.wait_for_split()
            log(f"[{self.name}] partitions split: {owned}")
        time.sleep(1.0)  # let the start-up settle (first changelog/commit rounds)
        return self

    def __exit__(self, *exc) -> None:
        if self.local is not None:
            self.local.stop()

    @property
    def broker(self):
        return self.local.broker

    def held(self) -> dict:
        return asyncio.run(topic_end_offsets(self.conf))


def workers_cpu(d: Deployment) -> tuple[float, float]:
    """(user, sys) CPU seconds of all the deployment's workers together."""
    times = [cpu_seconds(w.pid) for w in [d.worker, *d.extra_workers]]
    return sum(t[0] for t in times), sum(t[1] for t in times)


async def produce_fast(conf, msgs) -> float:
    producer = await KafkaClients(conf).producer("bulk")
    t0 = time.perf_counter()
    try:
        for lo in range(0, len(msgs), 10_000):  # at most 10,000 sends in flight
            await asyncio.gather(*[await producer.send(conf.topics.ratings, key=key, value=value)
                                   for key, value in msgs[lo:lo + 10_000]])
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def fetch_received(consumer, timeout_ms: int, max_records=None, keep: tuple[str, ...] | None = None
                         ) -> list[dict]:
    """One ``getmany``: its JSON values (only the fields ``keep``, if given), each with
    ``_received`` (when the batch arrived), ``_sent`` (the list's Kafka timestamp) and
    ``_partition``."""
    batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    now = time.time()
    out = []
    for records in batch.values():
        for rec in records:
            if rec.value is not None:
                data = json.loads(rec.value)
                if keep is not None:
                    data = {key: data[key] for key in keep}
                data["_received"] = now
                data["_sent"] = rec.timestamp / 1000.0  # CreateTime: the worker's send(), before any linger
                data["_partition"] = rec.partition
                out.append(data)
    return out


async def read_all(conf, topic: str, n: int, timeout: float) -> list[dict]:
    """The first ``n`` (or all, after ``timeout``) JSON values of ``topic``, with receive times."""
    consumer = await KafkaClients(conf).consumer(topic, max_partition_fetch_bytes=4 * 1024 * 1024)
    out: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            out += await fetch_received(consumer, timeout_ms=200, max_records=20_000)
    finally:
        await consumer.stop()
    return out


async def newest_values(conf, topic: str, n: int, timeout: float) -> dict[bytes, bytes]:
    """Each key's newest value among the first ``n`` messages of ``topic`` (or all, after
    ``timeout``): what a compacted topic keeps per key."""
    consumer = await KafkaClients(conf).consumer(topic, max_partition_fetch_bytes=4 * 1024 * 1024)
    values, seen = {}, 0
    try:
        deadline = time.monotonic() + timeout
        while seen < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200, max_records=20_000)).values():
                seen += len(records)
                values.update((rec.key, rec.value) for rec in records)
    finally:
        await consumer.stop()
    return values


def state_bytes(values: dict[bytes, bytes]) -> dict:
    """Mean bytes per user of the stored states, and of the same states as the JSON
    object of schema 2 (``tables/state.py``)."""
    from tables.state import UserState

    states = [v for v in values.values() if v]
    if not states:
        return {"state_bytes_per_user": None, "state_json_bytes_per_user": None}
    return {"state_bytes_per_user": round(sum(map(len, states)) / len(states)),
            "state_json_bytes_per_user": round(sum(len(json.dumps(UserState.from_bytes(v).to_value(),
                                                                   separators=(",", ":"))) for v in states)
                                               / len(states))}


async def wait_for_count(conf, topic: str, n: int, timeout: float, worker: WorkerProcess, broker) -> int:
    """Poll the topic's message count (end offsets, one client) until it reaches ``n``."""
    from aiokafka.structs import TopicPartition

    clients = KafkaClients(conf)
    consumer = await clients.consumer()
    deadline = time.monotonic() + timeout
    count = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(conf.kafka.partitions)]
        while time.monotonic() < deadline:
            if broker.process.poll() is not None:
                raise RuntimeError(f"the broker exited with code {broker.process.returncode}")
            try:
                count = sum((await clients.end_offsets(consumer, tps)).values())
            except Exception as exc:  # noqa: BLE001  a transient connection error: retry
                log(f"(polling the topic count failed: {exc!r}; retrying)")
            if count >= n or not worker.alive():
                return count
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
    return count


# ------------------------------------------------------------------ profiling
def start_profile(pid: int, seconds: float, path: Path, fmt: str = "raw"):
    """py-spy sampling ``pid`` for ``seconds`` into ``path``: ``raw`` (collapsed stacks,
    for :func:`summarise_profile`) or ``flamegraph`` (an SVG)."""
    pyspy = Path(sys.executable).with_name("py-spy")
    cmd = [str(pyspy), "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200",
           "--threads",
           "--format", fmt, "--output", str(path), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


#: (label, substring of a py-spy frame): where a rating's CPU goes, inclusive.
PROFILE_BUCKETS = [
    ("agent: rank_batch (all app work of a batch)", "rank_batch (agents/realtime.py"),
    ("  read_one (parse, state, history, per rating)", "read_one (agents/realtime.py"),
    ("    parse_rating", "parse_rating (app/records.py"),
    ("    state read (once per user per batch)", "state_of (agents/batches.py"),
    ("  default ranker, the whole batch: rank_many", "rank_many (ranking/batch.py"),
    ("  default ranker, one rating: DefaultRanker.rank", "rank (ranking/default.py"),
    ("  stage_one (list, per rating)", "stage_one (agents/realtime.py"),
    ("    paper ranker: PaperRanker.step", "step (ranking/paper.py"),
    ("    list: recommendation_for", "recommendation_for (agents/lists.py"),
    ("    list: to_json_bytes", "to_json_bytes (app/records.py"),
    ("  publish: record batches, acks, store write", "publish (agents/batches.py"),
    ("    store write (apply_changelog_batch)", "apply_changelog_batch (faust/tables/"),
    ("faust: stream iteration / take_events", "(faust/streams.py"),
    ("faust: conductor (consumer -> agent handoff)", "(faust/transport/conductor.py"),
    ("faust: consumer bookkeeping / commits", "(faust/transport/consumer.py"),
    ("faust: topic publish (exactly_once, dead letters)", "publish_message (faust/topics.py"),
    ("aiokafka: sender (produce requests)", "(aiokafka/producer/sender.py"),
    ("aiokafka: socket write (includes waiting for the CPU)", "_SelectorSocketTransport.write"),
    ("aiokafka: fetcher", "(aiokafka/consumer/fetcher.py"),
    ("idle in epoll", "EpollSelector.select"),
]


def summarise_profile(path: Path, top: int = 15) -> list[str]:
    """Where the worker's samples went: fixed buckets (inclusive) + top self frames."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ["(no profile written)"]
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        total += n
        for label, pattern in PROFILE_BUCKETS:
            if pattern in stack:
                inclusive[label] += n
        own[_frame_name(stack.split(";")[-1])] += n
    if not total:
        return ["(no samples)"]
    rows = [f"{total} samples (all threads, wall clock while not idle)", "inclusive % | where"]
    rows += [f"{100.0 * inclusive[label] / total:10.1f}% | {label}" for label, _ in PROFILE_BUCKETS]
    rows += ["    self % | function"]
    rows += [f"{100.0 * c / total:10.1f}% | {name}" for name, c in own.most_common(top)]
    return rows


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"
    func, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{func} ({file})"


# ------------------------------------------------------------------ phases
def phase_throughput(args, tmp, model, bench, name: str = "throughput") -> dict:
    n = args.ratings
    msgs = messages(bench, 0, n)
    users = len({k for k, _ in msgs})
    with Deployment(name, tmp, args, model) as d:
        data_dir = d.tmp / "data"
        rss0, disk0 = d.worker.rss_bytes(), dir_bytes(data_dir)
        prof = None
        if args.profile:
            prof_path = d.tmp / "profile.txt"
            prof = start_profile(d.worker.pid, args.profile_seconds, prof_path)
        flame = None
        if args.flamegraph and name == "throughput":
            flame = start_profile(d.worker.pid, args.profile_seconds, Path(args.flamegraph), "flamegraph")
        cpu0, bcpu0 = workers_cpu(d), cpu_seconds(d.broker.process.pid)
        t_start = time.time()
        produce_s = asyncio.run(produce_fast(d.conf, msgs))
        t_produced = time.time()
        log(f"[throughput] produced {n} ratings over {users} users in {produce_s:.2f}s "
            f"({n / produce_s:,.0f}/s); waiting for the lists")
        got = asyncio.run(wait_for_count(d.conf, d.conf.topics.recommendations, n, args.timeout, d.worker,
                                         d.broker))
        t_done = time.time()
        cpu1, bcpu1 = workers_cpu(d), cpu_seconds(d.broker.process.pid)
        from benchmarks.peers.run import wait_committed

        t_committed = asyncio.run(wait_committed(d.conf, d.conf.worker.app_id, timeout=60.0))
        time.sleep(max(0.0, 3.5 - (time.time() - t_done)))  # a commit interval: the state is written out
        rss1, disk1 = d.worker.rss_bytes(), dir_bytes(data_dir)
        recs = asyncio.run(read_all(d.conf, d.conf.topics.recommendations, got, timeout=120))
        held = d.held()
        changelog = f"{d.conf.worker.app_id}-user_state-changelog"
        stored = state_bytes(asyncio.run(newest_values(d.conf, changelog, held.get(changelog, 0), timeout=60)))
        profile_rows = []
        if prof is not None:
            _, err = prof.communicate(timeout=args.profile_seconds + 60)
            profile_rows = summarise_profile(prof_path)
            if prof.returncode:
                profile_rows.insert(0, f"py-spy exit {prof.returncode}: {err.decode(errors='replace')[-300:]}")
        if flame is not None:
            flame.communicate(timeout=args.profile_seconds + 60)
            log(f"flame graph of the worker: {args.flamegraph} (py-spy exit {flame.returncode})")
        worker_log = d.worker.log_tail(8)
        broker_rss = process_rss(d.broker.process.pid)

    emitted = np.sort(np.array([r["emitted_at"] for r in recs]))
    worker_ms = np.array([r["worker_ms"] for r in recs])
    n_lists = len(recs)
    span = float(emitted[-1] - emitted[0]) if n_lists > 1 else float("nan")
    steady = emitted[emitted >= t_produced]
    steady_span = float(steady[-1] - steady[0]) if steady.size > 1 else float("nan")
    lens = np.array([len(r["items"]) for r in recs]) if recs else np.zeros(1)
    scored = np.array([sum(1 for e in r["items"] if e[1] is not None) for r in recs]) if recs else np.zeros(1)
    per_100k = 100_000 / max(users, 1)
    w_user, w_sys = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    wall = t_done - t_start
    return {
        "worker_cpu_user_s": round(w_user, 2), "worker_cpu_sys_s": round(w_sys, 2), "wall_s": round(wall, 2),
        "worker_cpu_share": round((w_user + w_sys) / wall, 2) if wall else None,
        "ratings_per_worker_cpu_s": round(n_lists / (w_user + w_sys)) if w_user + w_sys else None,
        "broker_cpu_s": round(sum(bcpu1) - sum(bcpu0), 2),
        "workers": 1 + len(d.extra_workers),
        "ratings": n, "users": users, "lists": n_lists, "lists_counted_on_topic": got,
        "produce_s": round(produce_s, 2), "produce_per_s": round(n / produce_s),
        "rate_first_to_last": round((n_lists - 1) / span) if n_lists > 1 else None,
        "rate_steady": round((steady.size - 1) / steady_span) if steady.size > 1 else None,
        "rate_wall": round(n_lists / (t_done - t_start)) if n_lists else None,
        "rate_committed": round(n_lists / (t_committed - emitted[0])) if t_committed and n_lists else None,
        "cpu_us_per_rating": round(1e6 * (w_user + w_sys) / n_lists, 1) if n_lists else None,
        "worker_ms_p50": percentile_ms(worker_ms, 50), "worker_ms_p99": percentile_ms(worker_ms, 99),
        "list_len_mean": round(float(lens.mean()), 1), "scored_items_mean": round(float(scored.mean()), 1),
        "model_version_ok": all(r.get("model_version") == d.version for r in recs),
        "broker_fresh_topics_at_start": d.fresh_topics,
        "broker_messages_held": sum(held.values()), "broker_topics": held,
        "broker_rss_mb": round(broker_rss / 2**20, 1),
        "worker_rss_before_mb": round(rss0 / 2**20, 1), "worker_rss_after_mb": round(rss1 / 2**20, 1),
        "data_dir_before_mb": round(disk0 / 2**20, 2), "data_dir_after_mb": round(disk1 / 2**20, 2),
        "rss_mb_per_100k_users": round((rss1 - rss0) / 2**20 * per_100k, 1),
        "disk_mb_per_100k_users": round((disk1 - disk0) / 2**20 * per_100k, 1),
        **stored,
        "model_load_s": round(d.model_load_s, 2), "model_messages": d.model_messages,
        "profile": profile_rows, "worker_log_tail": worker_log,
    }


async def paced_run(conf, msgs, rate: float, seconds: float) -> tuple[int, float]:
    """Produce ``msgs`` at ``rate``/s (ticks of 10 ms) while nothing else runs here."""
    producer = await KafkaClients(conf).producer("latency")
    sent = 0
    t0 = time.monotonic()
    try:
        total = min(len(msgs), int(rate * seconds))
        while sent < total:
            due = min(total, int((time.monotonic() - t0) * rate) + 1)
            while sent < due:
                key, value = msgs[sent]
                await producer.send(conf.topics.ratings, key=key, value=value)
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent, time.monotonic() - t0


#: What the latency phase keeps of each list: scalars only. A list's whole JSON (its items,
#: ``because``) is ~25 containers; with 30,000 of them kept, a full collection of the
#: benchmark's own took ~240 ms, in which its producer and reader stood still: stalls of
#: 150-460 ms counted as the worker's latency (docs/RESULTS.md).
LATENCY_FIELDS = ("user", "produced_at", "emitted_at", "worker_ms")


class CollectorPauses:
    """Every pause of this process's garbage collector while in use, reported as their
    count and the longest (a client that stops measures its own stop as latency). Freezes
    what is alive on entry and unfreezes everything on exit: not to be nested."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000.0)

    def __enter__(self) -> Self:
        gc.collect()
        gc.freeze()  # the model and the messages stay alive all phase: no collection walks them
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._on_gc)
        gc.unfreeze()

    def summary(self) -> dict:
        return {"client_gc_pauses": len(self.pauses_ms),
                "client_gc_max_ms": round(max(self.pauses_ms, default=0.0), 1)}


async def latency_run(conf, msgs, rate: float, seconds: float):
    consumer = await KafkaClients(conf).consumer(conf.topics.recommendations)
    recs: list[dict] = []
    done = asyncio.Event()

    async def reader():
        while True:
            recs.extend(await fetch_received(consumer, timeout_ms=100, keep=LATENCY_FIELDS))
            if done.is_set() and len(recs) >= sent_box[0]:
                return

    sent_box = [10**12]
    task = asyncio.create_task(reader())
    try:
        sent, took = await paced_run(conf, msgs, rate, seconds)
        sent_box[0] = sent
        done.set()
        try:
            await asyncio.wait_for(task, timeout=30)
        except TimeoutError:
            pass
    finally:
        task.cancel()
        await consumer.stop()
    return sent, took, recs


def p99_by_window(recs: list[dict], e2e: list[float], seconds: float) -> list[float | None]:
    """The p99 of ``e2e`` in each ``seconds``-long window of production time (a stall at
    the start, or one that recurs, shows here)."""
    if not recs:
        return []
    produced = np.array([r["produced_at"] for r in recs])
    window = ((produced - produced.min()) // seconds).astype(int)
    values = np.array(e2e)
    return [percentile_ms(values[window == w], 99) for w in range(int(window.max()) + 1)]


def write_latency_lists(path: Path, recs: list[dict]) -> None:
    """``--latency-lists``: one CSV row per list, in production order (where a stall is)."""
    with path.open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["produced_at", "emitted_at", "sent_at", "received_at", "worker_ms", "partition", "user"])
        rows.writerows([r["produced_at"], r["emitted_at"], r["_sent"], r["_received"], r["worker_ms"], r["_partition"],
                        r["user"]] for r in sorted(recs, key=lambda r: r["produced_at"]))
    log(f"every list's times: {path}")


def phase_latency(args, tmp, model, bench) -> dict:
    lo = args.ratings
    n = int(args.latency_rate * args.latency_seconds)
    msgs = messages(bench, lo, lo + n)
    with Deployment("latency", tmp, args, model) as d:
        with CollectorPauses() as client_gc:
            sent, took, recs = asyncio.run(latency_run(d.conf, msgs, args.latency_rate, args.latency_seconds))
        held = d.held()
        worker_log = d.worker.log_tail(6)
    if args.latency_lists:
        write_latency_lists(Path(args.latency_lists), recs)
    e2e = [(r["_received"] - r["produced_at"]) * 1000 for r in recs]
    to_emit = [(r["emitted_at"] - r["produced_at"]) * 1000 for r in recs]
    out_path = [(r["_received"] - r["emitted_at"]) * 1000 for r in recs]
    inside = [r["worker_ms"] for r in recs]
    p99_e2e = percentile_ms(e2e, 99) or float("nan")
    return {
        "rate": args.latency_rate, "seconds": round(took, 1), "sent": sent, "lists": len(recs),
        "achieved_rate": round(sent / took, 1) if took else None,
        "e2e_p50_ms": percentile_ms(e2e, 50), "e2e_p99_ms": percentile_ms(e2e, 99),
        "e2e_max_ms": round(max(e2e), 1) if e2e else None,
        "e2e_p99_ms_by_10s": p99_by_window(recs, e2e, 10.0),
        "produce_to_emit_p50_ms": percentile_ms(to_emit, 50), "produce_to_emit_p99_ms": percentile_ms(to_emit, 99),
        "emit_to_received_p50_ms": percentile_ms(out_path, 50),
        "emit_to_received_p99_ms": percentile_ms(out_path, 99),
        "worker_ms_p50": percentile_ms(inside, 50), "worker_ms_p99": percentile_ms(inside, 99),
        "worker_share_of_p99": round((percentile_ms(inside, 99) or 0) / p99_e2e, 3) if e2e else None,
        "worker_share_of_mean": round(float(np.mean(inside) / np.mean(e2e)), 3) if e2e else None,
        "broker_fresh_topics_at_start": d.fresh_topics, "broker_messages_held": sum(held.values()),
        "worker_log_tail": worker_log, **client_gc.summary(),
    }


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ratings", type=int, default=60_000, help="throughput phase: ratings pre-loaded")
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument("--neighbours", type=int, default=50, help="neighbours per item in the model")
    p.add_argument("--model", choices=("als", "synthetic"), default="als")
    p.add_argument("--train-ratings", type=int, default=200_000, help="ALS training ratings (--model als)")
    p.add_argument("--latency-rate", type=float, default=500.0)
    p.add_argument("--latency-seconds", type=float, default=60.0, help="0 skips the latency phase")
    p.add_argument("--engine", choices=("tansu", "kafka", "both"), default="tansu",
                   help="the local broker: Tansu (memory), Apache Kafka (KRaft; java + mvn), or both in turn")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--workers", type=int, default=1, help="throughput phase: workers sharing the partitions")
    p.add_argument("--ranker", choices=("default", "paper", "learned"), default="default",
                   help="the worker's RECSYS_RANKER (learned: weights learnt over the input first, then frozen)")
    p.add_argument("--compare-paper", action="store_true",
                   help="also run the throughput phase with RECSYS_RANKER=paper and print the CPU cost of both")
    p.add_argument("--scale-workers", type=int, default=0, metavar="N",
                   help="also run the throughput phase with N workers sharing the partitions (0: skip)")
    p.add_argument("--recovery-users", type=int, default=0, metavar="N",
                   help="also time the recovery of a killed worker holding N users (benchmarks/recovery_bench.py; "
                        "0: skip)")
    p.add_argument("--peers", action="store_true",
                   help="only the throughput phase, for the worker, a Quix Streams peer and a plain aiokafka + "
                        "rocksdict loop on identical input (benchmarks/peers/; needs the bench extra); one engine")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=300.0, help="max seconds to wait for the lists")
    p.add_argument("--profile", action="store_true", help="py-spy the worker during the throughput phase")
    p.add_argument("--profile-seconds", type=float, default=12.0)
    p.add_argument("--flamegraph", metavar="SVG", help="also write a py-spy flame graph of the worker (throughput "
                                                        "phase, --profile-seconds long) to SVG")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (worker logs, profile)")
    p.add_argument("--switch-interval", type=float, default=None,
                   help="experiment: sys.setswitchinterval() in the worker (Python default 0.005)")
    p.add_argument("--latency-lists", metavar="CSV", help="also write every list's times in the latency phase "
                                                          "(produced, emitted, sent, received) to CSV")
    p.add_argument("--without-ranking", action="store_true",
                   help="experiment (--ranker default): every list a copy of the first one, to measure what the "
                        "worker costs besides ranking (benchmarks/without_ranking.py)")
    args = p.parse_args(argv)
    if args.without_ranking and args.ranker != "default":
        p.error("--without-ranking replaces the default ranker's batch ranking: use it with --ranker default")
    if args.peers and args.engine == "both":
        p.error("--peers runs on one engine per invocation (its JSON line is per engine): "
                "--engine tansu or --engine kafka")
    if args.peers:
        try:
            import quixstreams  # noqa: F401
        except ImportError:
            p.error("--peers needs Quix Streams: pip install -e '.[bench]'")

    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="recsys-rtbench-"))
    try:
        train, bench = make_data(args)
        from app.settings import load_settings

        args.base = load_settings()  # this script's edge: every deployment starts from it
        conf0 = args.base.replace(data_dir=tmp / "client")
        if args.model == "als":
            neighbours, facts, extras = train_neighbours(*[[f"{p}{x}" for x in a.tolist()] if p else a
                                                   for p, a in zip(("u", "i", ""), train, strict=False)],
                                                 conf=conf0, m=args.neighbours)
        else:
            t0 = time.perf_counter()
            neighbours, extras = synthetic_neighbours(args.items, args.neighbours, args.seed), {}
            facts = {"items": len(neighbours), "neighbours_per_item": args.neighbours,
                     "seconds": round(time.perf_counter() - t0, 2)}
        sims = np.array([s for d in neighbours.values() for s in d.values()])
        facts["model"] = args.model
        facts["neighbour_entries"] = int(sims.size)
        facts["share_above_theta"] = round(float((sims > conf0.ranking.theta).mean()), 3) if sims.size else 0.0
        log(f"model: {facts}")
        if args.ranker == "learned":
            args.learned_weights, learner_speed = frozen_learned_weights(
                (neighbours, extras), bench, min(args.ratings, 20_000), conf0)
            log(f"learned ranker: weights learnt over the benchmark's first ratings, frozen; learner {learner_speed}")
            facts["learner"] = learner_speed
        runs = {}
        if args.peers:
            return run_peers(args, tmp, (neighbours, extras), bench)
        for engine in (["tansu", "kafka"] if args.engine == "both" else [args.engine]):
            engine_args = argparse.Namespace(**{**vars(args), "engine": engine})
            thr = phase_throughput(engine_args, tmp, (neighbours, extras), bench)
            log(f"[{engine} throughput] {thr['lists']} lists, {thr['rate_first_to_last']}/s first-to-last")
            lat = phase_latency(engine_args, tmp, (neighbours, extras), bench) if args.latency_seconds > 0 else None
            phases = {"thr": thr, "lat": lat}
            if args.compare_paper and args.ranker != "paper":
                paper = argparse.Namespace(**{**vars(engine_args), "ranker": "paper"})
                phases["paper"] = phase_throughput(paper, tmp, (neighbours, extras), bench, name="paper")
                ours, theirs = thr["ratings_per_worker_cpu_s"], phases["paper"]["ratings_per_worker_cpu_s"]
                phases["paper"]["default_cpu_vs_paper"] = round(theirs / ours, 3) if ours and theirs else None
                log(f"[{engine} paper ranker] {phases['paper']['rate_first_to_last']}/s; CPU per rating, default "
                    f"vs paper: {phases['paper']['default_cpu_vs_paper']}x")
            if args.scale_workers > 1:
                scaled = argparse.Namespace(**{**vars(engine_args), "workers": args.scale_workers})
                phases["scaled"] = phase_throughput(scaled, tmp, (neighbours, extras), bench, name="scaled")
                log(f"[{engine} {args.scale_workers} workers] {phases['scaled']['rate_first_to_last']}/s")
            if args.recovery_users:
                from benchmarks.recovery_bench import run_engine as run_recovery

                phases["rec"] = run_recovery(engine, argparse.Namespace(
                    users=args.recovery_users, items=200, partitions=args.partitions, timeout=900.0), tmp)
            runs[engine] = phases
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for engine, phases in runs.items():
        print(f"==== engine: {engine}")
        print_engine_table(args, conf0, facts, phases["thr"], phases["lat"])
    if len(runs) > 1:
        print_side_by_side(runs)
    load = os.getloadavg()
    result = {
        "cores": os.cpu_count(), "loadavg_1m": round(load[0], 2), "model": facts, "without_ranking": args.without_ranking,
        "producer_linger_ms": conf0.worker.producer_linger_ms, "producer_batch_bytes": conf0.worker.producer_batch_bytes,
        "max_poll_records": conf0.worker.max_poll_records, "total_seconds": round(time.perf_counter() - t_all, 1),
        "engines": {engine: {
            "throughput": _brief(p["thr"]), "broker_topics_after_throughput": p["thr"]["broker_topics"],
            "latency": _brief(p["lat"]), "scaled_workers": _brief(p.get("scaled")), "recovery": p.get("rec"),
            "paper_ranker": _brief(p.get("paper")),
            "target_3000_met": bool(p["thr"]["rate_first_to_last"] and p["thr"]["rate_first_to_last"] >= 3000),
        } for engine, p in runs.items()},
    }
    print(json.dumps(result, sort_keys=True))
    return 0


def run_peers(args, tmp: Path, model, bench) -> int:
    """``--peers``: the worker, then each peer, on a fresh broker each, the same ratings."""
    from benchmarks.peers.run import phase_peer

    ours = phase_throughput(args, tmp, model, bench)
    log(f"[ours] {ours['rate_first_to_last']}/s first-to-last")
    rows = {"ours (Faust worker)": {**ours, "cores": ours["worker_cpu_share"]}}
    for peer, label in (("quix", "Quix Streams peer"), ("aiokafka", "aiokafka + rocksdict loop")):
        rows[label] = phase_peer(args, tmp, model, messages(bench, 0, args.ratings), peer)
        log(f"[{peer}] {rows[label]['rate_first_to_last']}/s first-to-last")
    (ours_row, quix, plain) = rows.values()
    print(f"==== engine {args.engine}, ranker {ranker_label(args)}: {args.ratings:,} ratings over {ours['users']:,} users, "
          f"{args.partitions} partitions, one process each, a fresh broker each")
    print(f"{'pipeline':<28}{'ratings/s':>11}{'committed/s':>13}{'cores':>7}{'CPU us/rating':>15}{'vs Quix':>9}")
    for label, r in rows.items():
        ratio = (r["rate_first_to_last"] / quix["rate_first_to_last"]
                 if r["rate_first_to_last"] and quix["rate_first_to_last"] else None)
        print(f"{label:<28}{r['rate_first_to_last']!s:>11}{r['rate_committed']!s:>13}{r['cores']!s:>7}"
              f"{r['cpu_us_per_rating']!s:>15}{'-' if ratio is None else f'{ratio:.2f}x':>9}")
    for label, r in rows.items():  # a pipeline that stopped early would look fast over fewer ratings
        if r["lists"] != args.ratings:
            print(f"WARNING: {label} sent {r['lists']:,} lists for {args.ratings:,} ratings: its figures are not comparable")
    print(json.dumps({"engine": args.engine, "ranker": args.ranker, "without_ranking": args.without_ranking,
                      "ours": ours_row["rate_first_to_last"], "quix": quix["rate_first_to_last"],
                      "aiokafka": plain["rate_first_to_last"], "ours_committed": ours_row["rate_committed"],
                      "quix_committed": quix["rate_committed"], "aiokafka_committed": plain["rate_committed"],
                      "cores": {"ours": ours_row["cores"], "quix": quix["cores"], "aiokafka": plain["cores"]}}))
    return 0


def _brief(phase: dict | None) -> dict | None:
    """A phase's figures without its bulky parts (profile, log tail, per-topic counts)."""
    if phase is None:
        return None
    return {k: v for k, v in phase.items() if k not in ("profile", "worker_log_tail", "broker_topics")}


SIDE_BY_SIDE = [  # (row, phase, key); phases that did not run print "-"
    ("ratings/s first->last", "thr", "rate_first_to_last"), ("ratings/s steady", "thr", "rate_steady"),
    ("worker cores used", "thr", "worker_cpu_share"), ("ratings per worker CPU-s", "thr", "ratings_per_worker_cpu_s"),
    ("produce->list p50 ms", "lat", "e2e_p50_ms"), ("produce->list p99 ms", "lat", "e2e_p99_ms"),
    ("inside the worker p99 ms", "lat", "worker_ms_p99"), ("lists / sent (latency)", "lat", "lists"),
    ("paper ranker: ratings/s", "paper", "rate_first_to_last"),
    ("paper: ratings per CPU-s", "paper", "ratings_per_worker_cpu_s"),
    ("default/paper CPU per rating", "paper", "default_cpu_vs_paper"),
    ("N workers: ratings/s", "scaled", "rate_first_to_last"), ("N workers: cores used", "scaled", "worker_cpu_share"),
    ("N workers: lists", "scaled", "lists"),
    ("recovery: users held", "rec", "users"), ("recovery: data dir MB", "rec", "data_dir_mb"),
    ("restart on data dir s", "rec", "restart_on_data_dir_s"),
    ("restart from changelog s", "rec", "restart_from_changelog_s"),
    ("recovered state right", "rec", "probes_ok"),
]


def print_side_by_side(runs: dict) -> None:
    engines = list(runs)
    print("==== side by side (same input, same model, one engine at a time)")
    print(f"{'measure':<26}" + "".join(f"{e:>12}" for e in engines))
    scaled = next((p["scaled"]["workers"] for p in runs.values() if p.get("scaled")), "N")
    for row, phase, key in SIDE_BY_SIDE:
        row = row.replace("N workers", f"{scaled} workers")
        cells = []
        for engine in engines:
            cells.append(f"{(runs[engine].get(phase) or {}).get(key, '-')!s:>12}")
        print(f"{row:<26}" + "".join(cells))


def print_engine_table(args, conf0, facts, thr, lat) -> None:
    load = os.getloadavg()
    rows = [
        ("machine", f"{os.cpu_count()} cores, load avg {load[0]:.2f}/{load[1]:.2f} (shared: numbers are noisy)"),
        ("producer batching", (f"linger {conf0.worker.producer_linger_ms:g} ms, batches of {conf0.worker.producer_batch_bytes:,} B "
                              "(RECSYS_PRODUCER_LINGER_MS, RECSYS_PRODUCER_BATCH_BYTES)")),
        ("consumer polls", f"at most {conf0.worker.max_poll_records:,} records (RECSYS_MAX_POLL_RECORDS)"),
        ("model", (f"{facts['model']}: {facts.get('items')} items x {args.neighbours} neighbours, "
                  f"{facts['share_above_theta']:.0%} of similarities > theta; loaded in {thr['model_load_s']}s")),
        ("-- throughput", (f"{thr['ratings']} ratings over {thr['users']} users, {args.partitions} partitions, "
                          f"{thr['workers']} worker(s), ranker {ranker_label(args)}")),
        ("broker", (f"fresh (topics at start: {thr['broker_fresh_topics_at_start'] or 'none'}); "
                   f"held {thr['broker_messages_held']:,} messages at the end, RSS {thr['broker_rss_mb']} MB")),
        ("produce (aiokafka)", f"{thr['produce_s']} s = {thr['produce_per_s']:,}/s"),
        ("lists received", (f"{thr['lists']:,} (topic count {thr['lists_counted_on_topic']:,}), "
                           f"model version ok: {thr['model_version_ok']}")),
        ("ratings/s first->last", f"{thr['rate_first_to_last']}  (target >= 3,000)"),
        ("ratings/s steady", f"{thr['rate_steady']}  (after the producer finished)"),
        ("ratings/s wall", f"{thr['rate_wall']}  (produce start -> last list on the topic)"),
        ("worker(s) CPU", (f"user {thr['worker_cpu_user_s']} s + sys {thr['worker_cpu_sys_s']} s over "
                       f"{thr['wall_s']} s wall = {thr['worker_cpu_share']} cores; "
                       f"{thr['ratings_per_worker_cpu_s']} ratings per worker CPU-second; "
                       f"broker {thr['broker_cpu_s']} CPU-s")),
        ("worker_ms p50/p99", f"{thr['worker_ms_p50']} / {thr['worker_ms_p99']} ms (under full load)"),
        ("list length / scored", f"{thr['list_len_mean']} / {thr['scored_items_mean']} items"),
        ("-- memory", ""),
        ("worker RSS", f"{thr['worker_rss_before_mb']} -> {thr['worker_rss_after_mb']} MB"),
        ("data dir (RocksDB)", f"{thr['data_dir_before_mb']} -> {thr['data_dir_after_mb']} MB"),
        ("per 100k users", f"RSS +{thr['rss_mb_per_100k_users']} MB, disk +{thr['disk_mb_per_100k_users']} MB"),
        ("state per user", (f"{thr['state_bytes_per_user']} bytes stored, {thr['state_json_bytes_per_user']} "
                            f"as the JSON object (the changelog's newest values, mean)")),
    ]
    if lat:
        rows += [
            ("-- latency", (f"{lat['rate']:.0f} ratings/s for {lat['seconds']} s (achieved {lat['achieved_rate']}/s), "
                           f"fresh broker, held {lat['broker_messages_held']:,} msgs at the end")),
            ("lists", f"{lat['lists']} of {lat['sent']}"),
            ("produce->received", f"p50 {lat['e2e_p50_ms']} ms, p99 {lat['e2e_p99_ms']} ms, max {lat['e2e_max_ms']}"),
            ("  p99 per 10 s", ", ".join(f"{v}" for v in lat["e2e_p99_ms_by_10s"])),
            ("produce->emitted", f"p50 {lat['produce_to_emit_p50_ms']} ms, p99 {lat['produce_to_emit_p99_ms']} ms"),
            ("emitted->received", f"p50 {lat['emit_to_received_p50_ms']} ms, p99 {lat['emit_to_received_p99_ms']} ms"),
            ("inside the worker", (f"p50 {lat['worker_ms_p50']} ms, p99 {lat['worker_ms_p99']} ms (target p99 < 5); "
                                  f"share of e2e: {lat['worker_share_of_mean']:.1%} of the mean, "
                                  f"{lat['worker_share_of_p99']:.1%} of p99")),
            ("the benchmark's own GC", (f"{lat['client_gc_pauses']} collections, the longest {lat['client_gc_max_ms']} ms "
                                        "(its producer and reader stand still meanwhile)")),
        ]
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if thr["profile"]:
        print("-- py-spy profile of the worker during the throughput phase")
        for line in thr["profile"]:
            print("   " + line)


if __name__ == "__main__":
    sys.exit(main())
