"""``recsys demo``: the whole system on one machine, with live list updates on screen.

    recsys demo [--seconds N] [--input PATH --format FMT] [--rate R]

On a fresh machine (no broker configured) this

1. starts the embedded broker (Tansu) on loopback, unless ``RECSYS_BROKER`` is set or a
   broker already listens on ``RECSYS_EMBEDDED_PORT`` (then that one is used, with
   topic names unique to this run so old data does not show up);
2. creates the topics and starts one worker subprocess (``python -m cli.main worker``)
   with its own temporary data directory, app id and web port;
3. trains ALS once on the first part of the data (default: a seeded synthetic shop
   written by :func:`datatools.generator.generate_shop`; or ``--input``/``--format``) and
   publishes the item similarities;
4. injects a few malformed messages (to show them being dead-lettered), then replays
   the rest of the data at ``--rate`` ratings per second (plus the shop's behaviour
   events, interleaved by time) and prints one line per list update read from the
   recommendations topic: user, top-5 (with item names where known) and latency.

With ``--seconds N`` the replay stops after N seconds (counted from the first replayed
message; start-up takes ~10-20 s more), worker and broker are stopped, and the LAST
stdout line is JSON: ``ratings_sent, lists_received, users_updated, p50_ms, p99_ms,
dead_letters, ...``. Without ``--seconds`` it runs until Ctrl-C.

The pieces here (topic counts, ALS training) are also used by
``benchmarks/realtime_bench.py``; the worker subprocess and its environment come from
``harness.local``. Nothing in this module imports the Faust app at import time: the
environment is set up first, because ``app.app`` reads it when imported.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from harness.local import LocalDeployment


def log(msg: str) -> None:
    """Progress messages go to stderr, so stdout stays list lines + the final JSON."""
    print(msg, file=sys.stderr, flush=True)


# ============================================================== reusable pieces
async def create_topics(conf) -> dict:
    from broker.topics import create_topics as create

    return await create(conf)


async def topic_end_offsets(conf, topics: list[str] | None = None) -> dict[str, int]:
    """Messages held per topic (sum of partition end offsets); all topics if ``topics`` is None."""
    from aiokafka.structs import TopicPartition

    from broker.clients import KafkaClients

    clients = KafkaClients(conf)
    consumer = await clients.consumer()
    try:
        names = sorted(await consumer.topics()) if topics is None else topics
        tps = []
        for name in names:
            parts = consumer.partitions_for_topic(name)
            if parts is None:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(name) or set()
            tps.extend(TopicPartition(name, p) for p in sorted(parts))
        if not tps:
            return {name: 0 for name in names}
        ends = await clients.end_offsets(consumer, tps)
        out = {name: 0 for name in names}
        for tp, end in ends.items():
            out[tp.topic] += int(end)
        return out
    finally:
        await consumer.stop()


def train_neighbours(users, items, ratings, *, conf, m: int | None = None) -> tuple[dict, dict, dict]:
    """ALS on (user, item, rating) triples in time order -> ``{item: {neighbour: sim}}``.

    Returns the neighbour lists, a few facts about the training (for printing) and the
    rest of what the ALS worker publishes (``TrainedModel.publication()``: keyword
    arguments of :func:`offline_als.publish.publish_similarity`).
    """
    from offline_als.als import ratings_to_csr
    from offline_als.model import times_csr, train_and_similar

    started = time.perf_counter()
    user_ids, uidx = np.unique(np.asarray(users).astype(str), return_inverse=True)
    item_ids, iidx = np.unique(np.asarray(items).astype(str), return_inverse=True)
    R = ratings_to_csr(uidx.ravel(), iidx.ravel(), np.asarray(ratings, dtype=np.float32),
                       shape=(len(user_ids), len(item_ids)))
    trained = train_and_similar(R, user_ids, item_ids, conf=conf, m=m,  # exactly what the ALS worker does
                                times=times_csr(uidx.ravel(), iidx.ravel(), R.shape))
    sims = np.array([s for neigh in trained.neighbours.values() for s in neigh.values()])
    facts = {"ratings": int(R.nnz), "users": len(user_ids), "items": len(item_ids),
             "neighbours_per_item": max((len(n) for n in trained.neighbours.values()), default=0),
             "share_above_theta": round(float((sims > conf.ranking.theta).mean()) if sims.size else 0.0, 3),
             "seconds": round(time.perf_counter() - started, 2)}
    if trained.selection is not None:
        facts["blend"] = trained.selection.blend.name
    return trained.neighbours, facts, trained.publication()


def percentile_ms(values, q: float) -> float | None:
    if not len(values):
        return None
    return round(float(np.percentile(np.asarray(values, dtype=float), q)), 1)


# ============================================================== the demo
def _parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="recsys demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=None,
                   help="stop by itself after N seconds of replay (default: run until Ctrl-C)")
    p.add_argument("--input", default=None, help="a real data file (default: a generated synthetic shop)")
    p.add_argument("--format", dest="fmt", default=None, help="format of --input (see `recsys load --help`)")
    p.add_argument("--rate", type=float, default=50.0, help="ratings per second to replay (default 50)")
    p.add_argument("--train-fraction", type=float, default=0.8,
                   help="share of the data (oldest first) ALS is trained on; the rest is replayed")
    p.add_argument("--limit", type=int, default=200_000, help="rows read from --input (default 200,000)")
    p.add_argument("--users", type=int, default=2000, help="synthetic shop: users")
    p.add_argument("--items", type=int, default=500, help="synthetic shop: items")
    p.add_argument("--ratings", type=int, default=20000, help="synthetic shop: ratings")
    p.add_argument("--seed", type=int, default=42, help="synthetic shop: seed")
    p.add_argument("--no-events", action="store_true", help="do not replay behaviour events")
    p.add_argument("--no-bad", action="store_true", help="do not inject malformed messages")
    p.add_argument("--verbose", action="store_true",
                   help="a line per list update (which items entered and left) instead of a summary per second")
    p.add_argument("--quiet", action="store_true", help="no live lines at all (the final summary only)")
    p.add_argument("--ab", default=None, metavar="ARMS",
                   help="A/B arms (RECSYS_AB), default: RECSYS_AB if set, else default:50,paper:50; '' for none")
    p.add_argument("--no-web", action="store_true", help="do not start the shop page and dashboard (recsys web)")
    p.add_argument("--web-port", type=int, default=0, help="port of the shop page (default: a free one)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = p.parse_args(argv)
    if args.input and not args.fmt:
        p.error("--input needs --format")
    from datatools.datasets import FORMATS

    if args.fmt and args.fmt not in FORMATS:
        p.error(f"--format {args.fmt!r}: one of {', '.join(sorted(FORMATS))}")
    if args.input and not Path(args.input).is_file():
        p.error(f"--input {args.input}: no such file")
    if args.rate <= 0:
        p.error("--rate must be positive")
    return args


class DemoData:
    """What the demo trains on and what it replays, as ``(kind, ts, user, item, value)``."""

    def __init__(self) -> None:
        self.train: tuple = ((), (), ())
        self.replay: list[tuple] = []
        self.catalogue: dict[str, dict] = {}  # item -> {"item", "name", "category"} (the items topic)
        self.scale: tuple[float, float] | None = None
        self.description = ""
        #: The generated shop's hidden truth (``datatools.generator.ShopModel``): shoppers who
        #: click and buy what they are shown when it fits their tastes. None for a real file.
        self.shoppers = None


def _split_ratings(arrays, fraction: float):
    data = arrays.sorted_by_time()
    cut = max(1, min(len(data) - 1, int(len(data) * fraction))) if len(data) > 1 else len(data)
    return data, cut


def prepare_data(args, tmp: Path, event_weights: dict[str, float]) -> DemoData:
    from datatools.datasets import SCALES, format_kind, iter_rows, load_ratings

    out = DemoData()
    if not args.input:
        from datatools.generator import generate_shop

        shop = generate_shop(tmp / "shop", n_users=args.users, n_items=args.items, n_ratings=args.ratings,
                             seed=args.seed)
        data, cut = _split_ratings(load_ratings(shop["ratings"], "csv"), args.train_fraction)
        out.train = (data.users[:cut], data.items[:cut], data.ratings[:cut])
        out.replay = [("rating", float(t), u, i, float(r)) for u, i, r, t in
                      zip(data.users[cut:], data.items[cut:], data.ratings[cut:], data.ts[cut:], strict=False)]
        if not args.no_events and out.replay:
            # The newest events, interleaved with the replayed ratings by relative position
            # (the generator's events do not always span the ratings' time range).
            events = list(iter_rows(shop["events"], "events-csv"))
            events = events[int(len(events) * args.train_fraction):]
            n_r, n_e = len(out.replay), max(len(events), 1)
            keyed = [(k / n_r, 0, x) for k, x in enumerate(out.replay)]
            keyed += [(j / n_e, 1, ("event", e.ts, e.user, e.item, (e.event, e.category)))
                      for j, e in enumerate(events)]
            keyed.sort(key=lambda t: (t[0], t[1]))
            out.replay = [x for *_, x in keyed]
        from datatools.catalogue import catalogue_for
        from datatools.generator import ShopModel

        out.catalogue = catalogue_for(shop["ratings"], "csv")
        out.shoppers = ShopModel(args.users, args.items, seed=args.seed)  # the shoppers react to their lists
        out.scale = tuple(shop["scale"])
        out.description = (f"synthetic shop (seed {args.seed}): {shop['n_users']} users, {shop['n_items']} items, "
                           f"{shop['n_ratings']} ratings, {shop['n_events']} events in {tmp / 'shop'}")
        return out

    path = Path(args.input)
    kind = format_kind(args.fmt)
    if kind == "ratings":
        arrays = load_ratings(path, args.fmt, limit=args.limit)
        if not len(arrays):
            raise SystemExit(f"no valid ratings in {path} as {args.fmt}")
        data, cut = _split_ratings(arrays, args.train_fraction)
        out.train = (data.users[:cut], data.items[:cut], data.ratings[:cut])
        out.replay = [("rating", float(t), u, i, float(r)) for u, i, r, t in
                      zip(data.users[cut:], data.items[cut:], data.ratings[cut:], data.ts[cut:], strict=False)]
        out.scale = SCALES.get(args.fmt) or (float(data.ratings.min()), float(data.ratings.max()))
    else:  # behaviour events: ALS learns from the events with a weight (RECSYS_EVENT_WEIGHTS)
        weights = event_weights
        rows = sorted(iter_rows(path, args.fmt, limit=args.limit), key=lambda e: e.ts)
        cut = int(len(rows) * args.train_fraction)
        head = [(e.user, e.item, weights[e.event]) for e in rows[:cut] if e.item and e.event in weights]
        out.train = tuple(zip(*head, strict=False)) if head else ((), (), ())
        out.replay = [("event", e.ts, e.user, e.item, (e.event, e.category)) for e in rows[cut:]]
    from datatools.catalogue import catalogue_for

    out.catalogue = catalogue_for(path, args.fmt)
    out.description = f"{path} ({args.fmt}): training on the oldest {args.train_fraction:.0%}, replaying the rest"
    return out


#: Malformed messages the demo injects, with the reason the worker should give.
BAD_MESSAGES = [
    (b"demo-bad-1", b"{this is not json", "bad_json"),
    (b"demo-bad-2", b'{"user": "demo-bad-2", "item": "i1", "rating": 99, "ts": 1}', "rating_out_of_range"),
    (b"demo-bad-3", b'{"item": "i1", "rating": 3, "ts": 1}', "missing_user"),
]


class LiveStats:
    def __init__(self, live=None) -> None:
        self.ratings_sent = 0
        self.events_sent = 0
        self.bad_sent = 0
        self.reactions = 0
        self.lists = 0
        self.users: set[str] = set()
        self.latencies_ms: list[float] = []
        self.worker_ms: list[float] = []
        self.dead_letters = 0
        self.dead_reasons: dict[str, int] = {}
        #: The online evaluation and A/B join of the web service (``web.live.LiveState``),
        #: fed with what the demo sends and reads.
        self.live = live


def _fmt_item(item: str, score, names: dict[str, str]) -> str:
    name = names.get(item)
    label = f"{item} {name}" if name else item
    if len(label) > 34:
        label = label[:33] + "…"
    return f"{label} ({score:.2f})" if isinstance(score, (int, float)) else f"{label} (hot)"


def _list_line(data: dict, before: list, latency: float, names: dict[str, str]) -> str:
    """``--verbose``: one list update, which items entered and left, and its top 3."""
    now = [e[0] for e in data.get("items") or []]
    entered = [q for q in now if q not in before]
    left = [q for q in before if q not in now]
    why = data.get("reason", "rating")
    top = " | ".join(_fmt_item(e[0], e[1], names) for e in (data.get("items") or [])[:3])
    return (f"{data.get('user'):>8} {latency:5.0f} ms [{data.get('variant', '?')}, {why}] "
            f"+{len(entered)} -{len(left)} {('+' + ','.join(entered[:3])) if entered else ''}  {top or '(empty)'}")


def _summary_line(stats: LiveStats, elapsed: float, last: dict) -> str:
    """The default live output: one compact line per second."""
    d = {k: getattr(stats, k) - last.get(k, 0) for k in ("ratings_sent", "events_sent", "lists", "reactions")}
    last.update({k: getattr(stats, k) for k in d})
    recent = stats.latencies_ms[-2000:]
    hits = " · ".join(f"{row['variant']} {row['hit_rate']:.1%} (n={row['n']:,})"
                      for row in stats.live.evaluation()["by_variant"] if row["n"]) or "(no joined events yet)"
    return (f"t={elapsed:4.0f}s | sent {d['ratings_sent']} ratings + {d['events_sent']} events "
            f"+ {d['reactions']} reactions | lists {d['lists']}/s, p50 {percentile_ms(recent, 50)} ms "
            f"p99 {percentile_ms(recent, 99)} ms | dead letters {stats.dead_letters} | hit rate {hits}")


async def _read_outputs(conf, stats: LiveStats, data: DemoData, args, stop: asyncio.Event,
                        ready: asyncio.Event | None = None) -> None:
    """Read every list (and dead letter) as it arrives: into the live join, the shoppers'
    reactions, and the ``--verbose`` lines. ``ready`` is set once the consumer knows where
    it reads from (the replay waits for it: the first lists would otherwise wait for the
    demo's own consumer to start, not for the service)."""
    import numpy as np

    from app.records import UserEvent, to_json_bytes
    from broker.clients import KafkaClients

    names = {q: e["name"] for q, e in data.catalogue.items()}
    rng = np.random.default_rng(args.seed)
    consumer = await KafkaClients(conf).consumer(conf.topics.recommendations, conf.topics.dead_letters)
    producer = await KafkaClients(conf).producer("latency")
    previous: dict[str, list] = {}
    try:
        for tp in consumer.assignment():
            await consumer.position(tp)
        if ready is not None:
            ready.set()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            now = time.time()
            for tp, records in batches.items():
                for record in records:
                    if record.value is None:
                        continue
                    try:
                        rec = json.loads(record.value)
                    except ValueError:
                        continue
                    if tp.topic == conf.topics.dead_letters:
                        stats.dead_letters += 1
                        reason = str(rec.get("reason"))
                        stats.dead_reasons[reason] = stats.dead_reasons.get(reason, 0) + 1
                        stats.live.add_dead_letter(reason)
                        if args.verbose:
                            print(f"DEAD LETTER  {rec.get('topic')}@{rec.get('offset')}  reason={reason}  "
                                  f"value={str(rec.get('value'))[:60]!r}", flush=True)
                        continue
                    user = str(rec.get("user"))
                    stats.lists += 1
                    stats.users.add(user)
                    stats.live.add_list(rec, now)
                    produced = float(rec.get("produced_at") or 0.0)
                    latency = (now - produced) * 1000.0 if produced else float("nan")
                    if produced:
                        stats.latencies_ms.append(latency)
                    stats.worker_ms.append(float(rec.get("worker_ms") or 0.0))
                    if args.verbose:
                        print(_list_line(rec, previous.get(user, []), latency, names), flush=True)
                    previous[user] = [e[0] for e in rec.get("items") or []]
                    reaction = _react(data.shoppers, user, previous[user], rng)
                    if reaction:
                        event, item = reaction
                        msg = UserEvent(user=user, item=item, event=event, ts=time.time(), from_list=True,
                                        category=data.catalogue.get(item, {}).get("category") or None)
                        await producer.send(conf.topics.events, key=user.encode(), value=to_json_bytes(msg))
                        stats.live.add_event(user, item, event, time.time())
                        stats.reactions += 1
            stats.live.settle(time.time())
    finally:
        await producer.stop()
        await consumer.stop()


def _react(shoppers, user: str, shown: list[str], rng) -> tuple[str, str] | None:
    """A generated shopper's reaction to their new list (ids ``u<n>`` / ``i<n>``), or None."""
    if shoppers is None or not user[1:].isdigit() or int(user[1:]) >= shoppers.n_users:
        return None
    items = [int(q[1:]) for q in shown if q[1:].isdigit() and int(q[1:]) < shoppers.n_items]
    reaction = shoppers.react(int(user[1:]), items, rng)
    return None if reaction is None else (reaction[0], f"i{reaction[1]}")


def ab_summary(live) -> list[dict]:
    """Hit rate per variant (events joined with the list shown just before), with counts
    and a Wilson 95% interval: the demo's A/B result."""
    if live is None:
        return []
    live.settle(time.time() + live.grace_s)  # join what is still pending
    return [{"variant": r["variant"], "events": r["n"], "hits": r["hits"],
             "hit_rate": None if r["hit_rate"] is None else round(r["hit_rate"], 4),
             "ci95": [round(r["ci_low"], 4), round(r["ci_high"], 4)]} for r in live.evaluation()["by_variant"]]


async def _print_summaries(stats: LiveStats, stop: asyncio.Event) -> None:
    started, last = time.monotonic(), {}
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            print(_summary_line(stats, time.monotonic() - started, last), flush=True)


async def _replay(conf, data: DemoData, args, stats: LiveStats, stop: asyncio.Event) -> None:
    from app.records import Rating, UserEvent, to_json_bytes
    from broker.clients import KafkaClients

    producer = await KafkaClients(conf).producer("latency")
    try:
        if not args.no_bad:
            for key, value, _reason in BAD_MESSAGES:
                await producer.send(conf.topics.ratings, key=key, value=value)
                stats.bad_sent += 1
            log(f"injected {stats.bad_sent} malformed ratings ({', '.join(r for *_, r in BAD_MESSAGES)}): "
                "the worker must dead-letter them, not crash")
        started = time.monotonic()
        for kind, ts, user, item, value in data.replay:
            if stop.is_set():
                break
            user, item = str(user), str(item)
            if kind == "rating":
                ahead = stats.ratings_sent / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=ahead)
                        break
                    except TimeoutError:
                        pass
                record = Rating(user=user, item=item, rating=float(value), ts=float(ts))
                await producer.send(conf.topics.ratings, key=user.encode(), value=to_json_bytes(record))
                stats.live.add_event(user, item, "rating", time.time())
                stats.ratings_sent += 1
            else:
                event, category = value
                record = UserEvent(user=user, item=item, event=event, ts=float(ts), category=category)
                await producer.send(conf.topics.events, key=user.encode(), value=to_json_bytes(record))
                stats.live.add_event(user, item, event, time.time())
                stats.events_sent += 1
        await producer.flush()
        if not stop.is_set():
            log("replay finished: every message has been sent" + ("" if args.seconds else "; Ctrl-C to stop"))
    finally:
        await producer.stop()


async def _live(conf, data: DemoData, args, stats: LiveStats) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            pass
    reading = asyncio.Event()
    reader = asyncio.create_task(_read_outputs(conf, stats, data, args, stop, reading))
    try:
        await asyncio.wait_for(reading.wait(), timeout=30.0)
    except TimeoutError:
        log("the demo's consumer took over 30 s to start; replaying anyway")
    replay_stop = asyncio.Event()
    replayer = asyncio.create_task(_replay(conf, data, args, stats, replay_stop))
    ticker = asyncio.create_task(_print_summaries(stats, stop)) if not (args.quiet or args.verbose) else None
    try:
        if args.seconds is not None:
            try:
                await asyncio.wait_for(stop.wait(), timeout=args.seconds)
            except TimeoutError:
                pass
        else:
            await stop.wait()
        replay_stop.set()
        await replayer
        if not stop.is_set():
            # Give lists still in flight a moment (~ one fetch round trip each way).
            await asyncio.sleep(1.5)
        stop.set()
        await reader
    finally:
        stop.set()
        for task in (replayer, reader, ticker):
            if task is not None and not task.done():
                task.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass


def main(argv=None, conf=None) -> int:
    """``recsys demo``; ``conf``: the caller's Settings (default: the environment's)."""
    args = _parse_args(argv)
    from app.settings import load_settings
    from datatools.catalogue import publish_catalogue
    from ranking.ab import parse_ab
    from web.live import LiveState

    base = conf or load_settings()
    tmp = Path(tempfile.mkdtemp(prefix="recsys-demo-"))
    tag = uuid.uuid4().hex[:8]
    deployment = worker = web = None
    stats = LiveStats()
    started = time.monotonic()
    summary: dict = {}
    failure: str | None = None  # what went wrong in a demo that ran to its end

    def _terminate(signum, frame):  # SIGTERM before the live phase: clean up like Ctrl-C
        raise KeyboardInterrupt

    previous_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        # --- 1. the data (the worker must know the rating scale of a real file)
        data = prepare_data(args, tmp, base.event_weight_map())
        log(f"data: {data.description}; {len(data.train[0])} ratings to train on, {len(data.replay)} messages "
            f"to replay")
        extra = {"RECSYS_LOG_EVERY_S": "10",
                 "RECSYS_AB": args.ab if args.ab is not None else (base.ranking.ab or "default:50,paper:50")}
        if data.scale:
            extra.update(RECSYS_RATING_MIN=data.scale[0], RECSYS_RATING_MAX=data.scale[1])

        # --- 2. the broker: a configured cluster (topics demo-<tag>-*), else one of its own
        # on a free port (never someone else's that happens to listen on 9092), default topics.
        own = base.kafka.uses_embedded_broker
        deployment = LocalDeployment(tmp, broker="tansu" if own else None, base=base, partitions=None,
                                     tag=f"demo-{tag}", **extra)
        conf, broker = deployment.conf, deployment.broker
        port = broker.port if own else int(base.kafka.bootstrap_servers[0].rsplit(":", 1)[1])
        log(f"started the embedded broker (Tansu, memory only) on 127.0.0.1:{port}, pid {broker.process.pid}"
            if own else f"using the configured broker {base.kafka.broker}, topics demo-{tag}-*")
        asyncio.run(create_topics(conf))
        published = asyncio.run(publish_catalogue(data.catalogue, conf=conf))
        log(f"published {published:,} items (names, categories) to {conf.topics.items}")

        # --- 3. the worker (it joins its group while ALS trains)
        worker = deployment.start_worker("demo", ready=False)
        log(f"started a worker (pid {worker.pid}, web {worker.url}/health/, log {worker.log_path})")
        learners = deployment.learners
        if learners:
            log(f"started the learner (pid {learners[0].pid}, log {learners[0].log_path}): the learned ranker's "
                "weights, from every list's outcome")
        if len(data.train[0]):
            neighbours, facts, extras = train_neighbours(*data.train, conf=conf)
            log(f"ALS trained: {facts}")
        else:
            neighbours, facts, extras = {}, {}, {}
            log("nothing to train ALS on: lists will come from hot items only")
        worker.wait_ready()
        version = f"demo-{time.strftime('%Y%m%dT%H%M%S')}"
        sent = deployment.publish_model(neighbours, version, **extras)
        log(f"published model {version} ({sent} messages); the worker loaded it")
        stats.live = LiveState(arms=parse_ab(conf.ranking.ab), default_variant=conf.ranking.ranker,
                               started_at=time.time())
        if not args.no_web:
            web = deployment.start_web(worker, port=args.web_port)
            web.wait_ready()
            log(f"shop page: {web.url}/   dashboard: {web.url}/dashboard   (A/B arms: {conf.ranking.ab or 'none'})")
        log("live: " + ("a line per list update (+ entered, - left)" if args.verbose else
                        "the final summary only" if args.quiet else "a summary line per second (--verbose: every list)"))

        # --- 4. live
        live_started = time.monotonic()
        asyncio.run(_live(conf, data, args, stats))
        live_s = time.monotonic() - live_started
        held = {}
        try:
            held = asyncio.run(topic_end_offsets(conf, [conf.topics.dead_letters]))
        except Exception as exc:  # noqa: BLE001  a count is a nicety at this point
            log(f"could not count dead letters on the broker: {exc}")
        summary = {
            "ratings_sent": stats.ratings_sent,
            "events_sent": stats.events_sent,
            "malformed_injected": stats.bad_sent,
            "lists_received": stats.lists,
            "users_updated": len(stats.users),
            "p50_ms": percentile_ms(stats.latencies_ms, 50),
            "p99_ms": percentile_ms(stats.latencies_ms, 99),
            "worker_p50_ms": percentile_ms(stats.worker_ms, 50),
            "worker_p99_ms": percentile_ms(stats.worker_ms, 99),
            "dead_letters": max(stats.dead_letters, held.get(conf.topics.dead_letters, 0)),
            "dead_letter_reasons": stats.dead_reasons,
            "model_version": version,
            "model_items": facts.get("items", 0),
            "shopper_reactions": stats.reactions,
            "ab": ab_summary(stats.live),
            "learned": (worker.health() or {}).get("learned"),
            "web_url": web.url if web else None,
            "web_pid": web.process.pid if web else None,
            "live_seconds": round(live_s, 1),
            "total_seconds": round(time.monotonic() - started, 1),
            "broker": "embedded (started by the demo)" if own else "existing",
            "broker_pid": broker.process.pid if own else None,
            "broker_port": port,
            "worker_pid": worker.pid,
            "worker_exit_code": worker.process.poll(),
            "learner_pid": deployment.learners[0].pid if deployment.learners else None,
        }
        failure = demo_failure(summary)
        if failure:  # loud, and the logs stay for a look
            log(f"FAILED: {failure}; the worker's log ends:\n{worker.log_tail(30)}")
            args.keep = True
    except KeyboardInterrupt:
        log("interrupted: stopping")
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if deployment is not None:
            deployment.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if not summary:
        summary = {"ratings_sent": stats.ratings_sent, "lists_received": stats.lists,
                   "users_updated": len(stats.users), "p50_ms": percentile_ms(stats.latencies_ms, 50),
                   "p99_ms": percentile_ms(stats.latencies_ms, 99), "dead_letters": stats.dead_letters,
                   "interrupted": True}
    log(f"stopped worker and broker; {summary.get('dead_letters', 0)} dead letters "
        f"({summary.get('malformed_injected', 0)} malformed messages were injected on purpose)")
    print(json.dumps(summary, sort_keys=True), flush=True)
    if summary.get("interrupted"):
        return 130
    return 1 if failure else 0


def demo_failure(summary: dict) -> str | None:
    """What went wrong in a finished demo, in one line (None: nothing): the worker died,
    or ratings were sent and no list came back."""
    code = summary.get("worker_exit_code")
    if code is not None:
        return f"the worker exited during the demo (exit status {code})"
    if summary.get("ratings_sent") and not summary.get("lists_received"):
        return f"{summary['ratings_sent']} ratings were sent and no list came back"
    return None


if __name__ == "__main__":
    sys.exit(main())
