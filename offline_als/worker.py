"""The periodic ALS worker (``recsys als-worker``; Procfile ``als``).

It reads the ``ratings`` topic with its own consumer group from the earliest offset,
keeps the latest rating of every (user, item) in a durable :class:`RatingStore`, and
every ``als_every_min`` minutes or ``als_every_ratings`` changed ratings (whichever
comes first, and only if something changed since the last training) retrains in a
thread (``offline_als.model.train_and_similar``: ALS and its factor neighbours, the
named sources of ``offline_als/sources.py`` and the default ranker's blend chosen on
the newest events by ``offline_als/selection.py``, all within a quarter of the
interval), publishes every item's lists to ``item-similarity`` (the blend in the
marker, last) and saves the ALS model to ``<data_dir>/als/model.npz``.

Decisions:

* Offsets: the store keeps the next offset of every partition, written atomically with
  the ratings of the batch; the same offsets are then committed to the Kafka group
  (``als_group``) for lag monitoring. On start the worker resumes from the store's
  offsets, so a restart never re-reads what it already stored, and a lost store
  re-reads the topic from the beginning instead of resuming from the group's offsets
  with an empty history.
* The worker assigns itself every partition of the topic (no group join): it is a
  single process by design (it scales up, not out), and Tansu's group joins are slow.
* Invalid messages are counted by reason and skipped; the stream agents dead-letter
  them already.
* Training waits until the consumer has (nearly) caught up, so a cold start with a
  long backlog trains once on all of it rather than on every slice; a consumer that
  never catches up still trains after ``3 * als_every_min``.
* A failed training or publish is logged and leaves the last published similarity in
  place; the next attempt comes after the next time/count trigger.
* Items never leave the model (the store is append-only, no expiry). Tombstones are
  still sent for items of the previously saved model that are missing from the new one
  (e.g. after the store was rebuilt from a topic with different data).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import sys
import time
from dataclasses import dataclass, field

from app.records import InvalidInput, parse_rating
from app.settings import Settings, load_settings
from broker.clients import KafkaClients
from broker.ports import require_free_port
from broker.service import run_service

from .model import (
    TrainedModel,
    als_from_settings,
    make_version,
    model_path,
    saved_item_ids,
    store_path,
    times_csr,
    train_and_similar,
)
from .publish import publish_similarity
from .store import RatingsSnapshot, RatingStore

log = logging.getLogger("offline_als.worker")

#: Records per poll (and per atomic store write).
MAX_RECORDS = 10_000
#: Total lag (records) under which the consumer counts as caught up.
CAUGHT_UP_LAG = 1_000
#: Share of the retrain interval a retrain (fits and the blend's selection) may take.
RETRAIN_BUDGET = 0.25


@dataclass
class WorkerStats:
    consumed: int = 0
    stored_changes: int = 0
    unchanged: int = 0
    invalid: collections.Counter = field(default_factory=collections.Counter)
    trainings: int = 0
    failed_trainings: int = 0
    last_version: str | None = None
    last_trained_at: float | None = None
    last_train_rmse: float | None = None
    last_error: str | None = None
    published_messages: int = 0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["invalid"] = dict(self.invalid)
        d["invalid_total"] = sum(self.invalid.values())
        return d


class ALSWorker:
    """One ALS worker: a consumer, a rating store and a training loop. See module doc."""

    def __init__(self, conf: Settings, *, store: RatingStore | None = None) -> None:
        self.conf = conf
        self.store = store or RatingStore(store_path(conf))
        self.model_file = model_path(conf)
        self.stats = WorkerStats()
        trained = self.store.get_meta("trained") or {}
        self.trained_seq: int = int(trained.get("seq", 0))
        self.stats.last_version = trained.get("version")
        self.stats.last_trained_at = trained.get("trained_at")
        self.stats.last_train_rmse = trained.get("train_rmse")
        # Trigger bookkeeping: the last attempt (successful or not).
        self._attempt_mono = time.monotonic()
        self._attempt_seq = self.store.seq if trained else 0
        self._training: asyncio.Task | None = None
        self._consumer = None
        self.clients = KafkaClients(conf)
        self._tps: list = []
        self._last_lag: int | None = None
        #: Ratings stored by kind ("explicit", "implicit": from behaviour events), for
        #: RECSYS_ALS_FEEDBACK=auto; kept in the store so a restart remembers them.
        self.sources = collections.Counter(self.store.get_meta("sources") or {})

    # ------------------------------------------------------------------ consumer
    async def _start_consumer(self) -> None:
        from aiokafka.structs import TopicPartition

        conf = self.conf
        consumer = await self.clients.consumer(group_id=conf.als.group, max_poll_records=MAX_RECORDS)
        try:
            partitions = None
            for _ in range(50):
                partitions = consumer.partitions_for_topic(conf.topics.ratings)
                if partitions:
                    break
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(conf.topics.ratings)
                if partitions:
                    break
                await asyncio.sleep(0.2)
            if not partitions:
                raise RuntimeError(f"topic {conf.topics.ratings!r} does not exist (run `recsys create-topics`)")
            self._tps = [TopicPartition(conf.topics.ratings, p) for p in sorted(partitions)]
            consumer.assign(self._tps)
            stored = self.store.offsets(conf.topics.ratings)
            for tp in self._tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
                else:
                    committed = await consumer.committed(tp)
                    if committed:
                        log.warning("ALS store has no offset for %s but group %s committed %s: the store is "
                                    "new or was lost, re-reading the partition from the beginning",
                                    tp, conf.als.group, committed)
                    await consumer.seek_to_beginning(tp)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        log.info("ALS worker consuming %s (%d partitions) from %s; store %s", conf.topics.ratings, len(self._tps),
                 {tp.partition: stored.get(tp.partition, "beginning") for tp in self._tps}, self.store)

    async def _end_offsets(self) -> dict:
        return await self.clients.end_offsets(self._consumer, self._tps)

    async def _positions(self) -> dict:
        return {tp: await self._consumer.position(tp) for tp in self._tps}

    async def _lag(self) -> int | None:
        """Records behind the high watermarks of the last fetches (None if not known yet)."""
        total = 0
        for tp in self._tps:
            hw = self._consumer.highwater(tp)
            if hw is None:
                return None
            total += max(0, hw - await self._consumer.position(tp))
        self._last_lag = total
        return total

    async def poll_once(self, timeout_ms: int = 500) -> int:
        """Fetch one batch, store it durably, commit it; return the records read."""
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=MAX_RECORDS)
        if not batch:
            return 0
        conf = self.conf
        rows, offsets, n = [], {}, 0
        for tp, records in batch.items():
            for msg in records:
                n += 1
                if msg.value is None:
                    self.stats.invalid["null_value"] += 1
                    continue
                try:
                    r = parse_rating(msg.value, rating_min=conf.input.rating_min, rating_max=conf.input.rating_max,
                                     max_future_s=conf.input.max_future_s)
                except InvalidInput as exc:
                    self.stats.invalid[exc.reason] += 1
                    continue
                except Exception as exc:  # noqa: BLE001  never let one message stop the worker
                    self.stats.invalid[f"error:{type(exc).__name__}"] += 1
                    continue
                rows.append((r.user, r.item, r.rating, r.ts))
                self.sources["explicit" if r.source == "explicit" else "implicit"] += 1
            if records:
                offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
        res = self.store.apply(rows, offsets)
        if rows:
            self.store.set_meta("sources", dict(self.sources))
        self.stats.consumed += n
        self.stats.stored_changes += res.changed
        self.stats.unchanged += res.unchanged
        from aiokafka.structs import TopicPartition

        try:
            await self._consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except Exception as exc:  # noqa: BLE001  the store has the offsets; the group's copy is informative
            log.warning("could not commit offsets to group %s: %s", conf.als.group, exc)
        return n

    # ------------------------------------------------------------------ training
    def pending_changes(self) -> int:
        """Changed ratings since the last successful training."""
        return self.store.seq - self.trained_seq

    def should_train(self, caught_up: bool, now: float | None = None) -> bool:
        if self._training is not None or self.pending_changes() <= 0:
            return False
        now = time.monotonic() if now is None else now
        since = now - self._attempt_mono
        every_s = self.conf.als.every_min * 60.0
        by_time = since >= every_s
        by_count = self.store.seq - self._attempt_seq >= self.conf.als.every_ratings
        if caught_up:
            return by_time or by_count
        return since >= 3 * every_s  # starvation guard for a consumer that never catches up

    def expire_old_ratings(self, snap: RatingsSnapshot) -> RatingsSnapshot:
        """With ``RECSYS_MODEL_WINDOW_DAYS``: drop from the store the ratings older than that
        before the newest one in ``snap`` (event time: a replayed file behaves), so the store
        stays bounded and the model trains on the window; the store's export after it."""
        days = self.conf.als.window_days
        if days <= 0 or not len(snap):
            return snap
        old = snap.ts < snap.ts.max() - days * 86400.0
        if not old.any():
            return snap
        dropped = self.store.delete(snap.user_idx[old], snap.item_idx[old])
        log.info("dropped %d ratings older than %g days before the newest", dropped, days)
        return self.store.export()

    async def train_and_publish(self) -> TrainedModel | None:
        """Export, train in a thread, publish, save the model. Never raises (logs)."""
        self._attempt_mono = time.monotonic()
        self._attempt_seq = self.store.seq
        conf = self.conf
        try:
            snap = self.expire_old_ratings(self.store.export())
            als = als_from_settings(conf, behaviour=self.sources["implicit"] > self.sources["explicit"])
            log.info("ALS training on %d ratings (%d users, %d items), %d changed since the last model; %r",
                     len(snap), snap.n_users, snap.n_items, snap.seq - self.trained_seq, als)

            def fit():
                return train_and_similar(snap.to_csr(), snap.user_ids, snap.item_ids, conf=conf, als=als,
                                         version=make_version(len(snap)),
                                         times=times_csr(snap.user_idx, snap.item_idx, (snap.n_users, snap.n_items),
                                                         snap.ts),
                                         budget_s=RETRAIN_BUDGET * conf.als.every_min * 60)

            trained = await asyncio.to_thread(fit)
            previous = await asyncio.to_thread(saved_item_ids, self.model_file)
            removed = sorted(set(previous) - set(trained.neighbours))
            sent = await publish_similarity(trained.neighbours, trained.version, conf=conf, removed=removed,
                                            **trained.publication())
            await asyncio.to_thread(trained.save, self.model_file)
        except Exception as exc:
            self.stats.failed_trainings += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("ALS training failed (the last published similarity, version %s, stays in place)",
                          self.stats.last_version)
            return None
        self.trained_seq = snap.seq
        info = {"seq": snap.seq, "version": trained.version, "trained_at": trained.trained_at,
                "train_rmse": trained.train_rmse, "ratings": len(snap), "items": snap.n_items}
        self.store.set_meta("trained", info)
        self.stats.trainings += 1
        self.stats.published_messages += sent
        self.stats.last_version = trained.version
        self.stats.last_trained_at = trained.trained_at
        self.stats.last_train_rmse = trained.train_rmse
        self.stats.last_error = None
        log.info("ALS model %s published: %d items, %d messages (%d tombstones), fit %.2fs, similarity %.2fs, "
                 "train RMSE %.4f; saved to %s", trained.version, snap.n_items, sent, len(removed), trained.fit_s,
                 trained.sim_s, trained.train_rmse or float("nan"), self.model_file)
        return trained

    # ------------------------------------------------------------------ logging
    def log_progress(self) -> None:
        s = self.stats
        lag = self._last_lag
        trained = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.last_trained_at)) + "Z"
                   if s.last_trained_at else "never")
        log.info("ALS worker: consumed %d (invalid %d, unchanged %d), lag %s; store %d ratings, %d users, "
                 "%d items; %d changes pending; last model %s trained %s train RMSE %s%s",
                 s.consumed, sum(s.invalid.values()), s.unchanged, "?" if lag is None else lag, self.store.count,
                 len(self.store.users), len(self.store.items), self.pending_changes(), s.last_version, trained,
                 "-" if s.last_train_rmse is None else f"{s.last_train_rmse:.4f}",
                 " (training now)" if self._training is not None else "")

    # ------------------------------------------------------------------ main loops
    async def run(self, *, once: bool = False, stop_event: asyncio.Event | None = None) -> dict:
        """Consume (and train) until ``stop_event`` is set; ``once``: consume what is
        there now, train once if anything changed, return."""
        await self._start_consumer()
        try:
            if once:
                await self._run_once()
            else:
                await self._run_forever(stop_event or asyncio.Event())
        finally:
            await self._consumer.stop()
            self._consumer = None
        self.log_progress()
        return self.stats.as_dict()

    async def _run_once(self) -> None:
        ends = await self._end_offsets()
        log.info("ALS worker --once: reading up to %s", {tp.partition: o for tp, o in ends.items()})
        next_log = time.monotonic() + self.conf.worker.log_every_s
        while True:
            positions = await self._positions()
            if all(positions[tp] >= ends[tp] for tp in self._tps):
                break
            await self.poll_once(timeout_ms=200)
            await self._lag()
            if time.monotonic() >= next_log:
                self.log_progress()
                next_log = time.monotonic() + self.conf.worker.log_every_s
        if self.pending_changes() > 0:
            await self.train_and_publish()
        else:
            log.info("ALS worker --once: nothing changed since model %s, not retraining", self.stats.last_version)

    async def _run_forever(self, stop: asyncio.Event) -> None:
        next_log = time.monotonic() + self.conf.worker.log_every_s
        while not stop.is_set():
            n = await self.poll_once(timeout_ms=500)
            lag = await self._lag()
            caught_up = n == 0 or (lag is not None and lag < CAUGHT_UP_LAG)
            if self._training is not None and self._training.done():
                self._training = None
            if self.should_train(caught_up):
                self._training = asyncio.create_task(self.train_and_publish(), name="als-training")
            if time.monotonic() >= next_log:
                self.log_progress()
                next_log = time.monotonic() + self.conf.worker.log_every_s
        if self._training is not None and not self._training.done():
            log.info("ALS worker stopping: waiting for the running training to finish")
            await self._training
        self._training = None

    def close(self) -> None:
        self.store.close()


async def run_als_worker(conf: Settings, *, once: bool = False,
                         stop_event: asyncio.Event | None = None) -> dict:
    """Run the ALS worker (see the module doc); returns its stats when it stops.

    ``once=True``: read the ratings topic up to its current end, train and publish once
    if anything changed since the last model, and return. Otherwise run until
    ``stop_event`` is set.
    """
    worker = ALSWorker(conf)
    server = None
    try:
        if not once and conf.als.metrics_port:
            server = await serve_metrics(worker, conf.api.web_host, conf.als.metrics_port)
        return await worker.run(once=once, stop_event=stop_event)
    finally:
        if server is not None:
            await server.cleanup()
        worker.close()


async def serve_metrics(worker: ALSWorker, host: str, port: int):
    """``GET /metrics`` (Prometheus text) and ``/metrics/json`` of ``worker`` on ``host:port``
    (an aiohttp ``AppRunner``: ``cleanup()`` stops it)."""
    from aiohttp import web

    from app.metrics import PROMETHEUS_TYPE, Metrics, prometheus_text, wants_json

    async def metrics(request: web.Request) -> web.Response:
        stats = worker.stats.as_dict()
        if wants_json(request.path, request.headers.get("Accept", "")):
            return web.json_response(stats)
        counts = Metrics()
        counts.counters.update({"ratings.consumed": stats["consumed"], "ratings.stored_changes": stats["stored_changes"],
                                "trainings": stats["trainings"], "trainings.failed": stats["failed_trainings"],
                                "model_messages.published": stats["published_messages"],
                                **{f"invalid.{reason}": n for reason, n in stats["invalid"].items()}})
        gauges = {"model_info": ("the newest model published (value 1)", [({"version": stats["last_version"] or ""}, 1.0)]),
                  "ratings_stored": ("ratings in the worker's store", [({}, float(worker.store.count))])}
        if stats["last_trained_at"]:
            gauges["model_age_seconds"] = ("seconds since the newest model was trained",
                                           [({}, max(time.time() - stats["last_trained_at"], 0.0))])
        if worker._last_lag is not None:
            gauges["consumer_lag"] = ("ratings not read yet, over every partition", [({}, float(worker._last_lag))])
        body = prometheus_text(counts, gauges, prefix="recsys_model")
        return web.Response(body=body, headers={"Content-Type": PROMETHEUS_TYPE})

    app = web.Application()
    for path in ("/metrics", "/metrics/", "/metrics/json", "/metrics/json/"):
        app.router.add_get(path, metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("model worker metrics on http://%s:%d/metrics", host, port)
    return runner


def main(argv: list[str] | None = None, conf: Settings | None = None) -> int:
    """``recsys als-worker [--once]``."""
    parser = argparse.ArgumentParser(
        prog="recsys als-worker",
        description="Offline ALS worker: consume ratings into a durable store, retrain every RECSYS_ALS_EVERY_MIN "
                    "minutes or RECSYS_ALS_EVERY_RATINGS changed ratings, publish item similarities.")
    parser.add_argument("--once", action="store_true",
                        help="read the ratings available now, train and publish once (if anything changed), exit")
    parser.add_argument("-l", "--loglevel", default="info", help="logging level (default: info)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    conf = conf or load_settings()
    if not args.once and conf.als.metrics_port:
        require_free_port(conf.als.metrics_port, conf.api.web_host, "the model worker's RECSYS_MODEL_METRICS_PORT")
    stats = run_service(conf, lambda stop: run_als_worker(conf, once=args.once, stop_event=stop))
    if stats is None:
        return 2
    print(json.dumps(stats, sort_keys=True, default=str), flush=True)
    return 0 if not stats.get("last_error") else 1


if __name__ == "__main__":
    sys.exit(main())
