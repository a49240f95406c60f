"""``--through-stream``: the same replay through the real topics and a real worker.

Starts the embedded broker (unless ``RECSYS_BROKER`` names one, or a port is given),
one ``recsys worker`` process in an isolated deployment (own topics, app id, data dir)
configured like the offline run (K, M, theta, rating scale), publishes the offline
run's similarity model with :func:`offline_als.publish.publish_similarity`, produces
every selected user's history and trigger ratings to the ratings topic (paced, in
global time order; key = user id) and reads the recommendations topic until one list
per produced rating arrived. Each list is compared with the offline replay of the
same user through the paper ranker (``ranking.PaperRanker``).

The worker has no behaviour events, so its hot-item list is empty and its lists are
not padded; the offline lists it is compared with are replayed without hot items too
(padding only appends unscored items after the scored ones, so the scored part of a
list does not depend on it).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.records import Rating, to_message, wire_list
from broker.clients import KafkaClients

from .engine import Model, replay_user
from .protocol import UserCase


def rating_messages(cases: Sequence[UserCase]) -> list[tuple[bytes, bytes, str]]:
    """Every user's history + trigger as (key, value, user), in global time order
    (ties keep user order, and each user's own order is kept: the sort is stable)."""
    events = [(ts, n, j, case.user, item, rating)
              for n, case in enumerate(cases) for j, (item, rating, ts) in enumerate(case.recent_ratings)]
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return [(*to_message(Rating(user=user, item=item, rating=float(rating), ts=float(ts))), user)
            for ts, _n, _j, user, item, rating in events]


async def _produce(conf, messages, rate: float) -> None:
    producer = await KafkaClients(conf).producer("bulk", linger_ms=2)
    try:
        t0 = time.monotonic()
        for n, (key, value, _user) in enumerate(messages):
            if rate > 0:
                wait = t0 + n / rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            await producer.send(conf.topics.ratings, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def _consume(conf, want: dict[str, int], timeout: float) -> dict[str, list[dict]]:
    """Read recommendations from the beginning until every user has ``want[user]`` lists."""
    consumer = await KafkaClients(conf).consumer(conf.topics.recommendations)
    got: dict[str, list[dict]] = {u: [] for u in want}
    missing = sum(want.values())
    try:
        deadline = time.monotonic() + timeout
        while missing > 0 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    if rec.value is None:
                        continue
                    value = json.loads(rec.value)
                    user = value.get("user")
                    if user in got:
                        got[user].append(value)
                        if len(got[user]) <= want[user]:
                            missing -= 1
    finally:
        await consumer.stop()
    return got


def _same(a: Sequence[Sequence], b: Sequence[Sequence]) -> tuple[bool, float]:
    """Same items in the same order; and the largest score difference (``b`` rounded as
    scores are on the wire)."""
    b = wire_list(b)
    if [x[0] for x in a] != [x[0] for x in b]:
        return False, float("inf")
    diff = 0.0
    for x, y in zip(a, b, strict=False):
        if (x[1] is None) != (y[1] is None):
            return False, float("inf")
        if x[1] is not None:
            diff = max(diff, abs(float(x[1]) - float(y[1])))
    return True, diff


@contextlib.contextmanager
def deployment(settings: dict, model: dict, version: str, *, base=None, broker_port: int | None = None,
               work_dir=None, say=lambda msg: None, weights: list | None = None):
    """A broker (the one on ``broker_port``; else ``base``'s ``RECSYS_BROKER`` if set;
    else an embedded one started here), one worker with ``settings`` (``RECSYS_*``
    variables) and the model published (``model``: the keyword arguments of
    :func:`offline_als.publish.publish_similarity`, ``neighbours`` at least); yields
    ``(conf, broker description, model load seconds)``."""
    from harness.local import LocalDeployment

    configured = base is not None and not base.kafka.uses_embedded_broker
    broker = broker_port if broker_port is not None else None if configured else "tansu"
    tmp = tempfile.TemporaryDirectory(prefix="recsys-eval-stream-") if work_dir is None else None
    root = Path(work_dir) if work_dir is not None else Path(tmp.name)
    try:
        with LocalDeployment(root, broker=broker, base=base, RECSYS_LOG_EVERY_S=5, **settings) as local:
            say(f"broker: {local.describe_broker()}")
            worker = local.start_worker("eval", learner=False)  # a frozen model: nothing learns
            t0 = time.perf_counter()
            model = dict(model)
            local.publish_model(model.pop("neighbours"), version, **model)
            t_model = time.perf_counter() - t0
            say(f"model {version} loaded by the worker in {t_model:.1f} s")
            if weights:
                asyncio.run(_publish_weights(local.conf, weights))
                _wait_for_weights(worker, json.loads(weights[-1][1])["version"])
                say("learned weights loaded by the worker")
            yield local.conf, local.describe_broker(), t_model
    finally:
        if tmp is not None:
            tmp.cleanup()


async def _publish_weights(conf, messages) -> None:
    producer = await KafkaClients(conf).producer("bulk")
    try:
        for key, value in messages:
            await producer.send(conf.topics.ranker_model, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def _wait_for_weights(worker, version: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while ((worker.health() or {}).get("learned") or {}).get("version") != version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not load the learned weights {version}:\n{worker.log_tail()}")
        time.sleep(0.2)


def replay_messages(conf, messages, rate: float, timeout: float, say) -> tuple[dict, float, dict]:
    """Produce ``(key, value, user)`` messages to ``ratings`` and read one list per message;
    returns ``(lists wanted per user, produce seconds, lists got per user)``."""
    want: dict[str, int] = {}
    for _key, _value, user in messages:
        want[user] = want.get(user, 0) + 1
    t0 = time.perf_counter()
    asyncio.run(_produce(conf, messages, rate))
    t_produce = time.perf_counter() - t0
    got = asyncio.run(_consume(conf, want, timeout))
    say(f"{len(messages)} ratings produced in {t_produce:.1f} s, lists read after {time.perf_counter() - t0:.1f} s")
    return want, t_produce, got


def run_through_stream(cases: Sequence[UserCase], model: Model, *, scale: tuple[float, float], k: int, m: int,
                       theta: float, high_cut: float, rated_limit: int = 1000, decay: float = 1.0,
                       rate: float = 300.0,
                       broker_port: int | None = None, timeout: float = 240.0, work_dir=None,
                       version: str | None = None, log=None, base=None) -> dict:
    """Run the replay through the embedded broker and a worker process; see the module doc.

    ``broker_port``: use an already running embedded broker on that port; otherwise
    ``base``'s ``RECSYS_BROKER`` if set, else a broker started (and stopped) here. ``rate``:
    ratings produced per second (0 = as fast as possible); latency is produced ->
    emitted as the worker stamps it on each list.
    """
    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    version = version or f"eval-{int(time.time())}"
    settings = {"RECSYS_RATING_MIN": scale[0], "RECSYS_RATING_MAX": scale[1], "RECSYS_K": k, "RECSYS_M": m,
                    "RECSYS_THETA": theta, "RECSYS_DECAY": decay, "RECSYS_RATED_ITEMS_MAX": rated_limit,
                    "RECSYS_RANKER": "paper"}  # the paper protocol checks the paper ranker
    with deployment(settings, {"neighbours": model.neighbours}, version, base=base, broker_port=broker_port,
                    work_dir=work_dir, say=say) as (conf, source, t_model):
        messages = rating_messages(cases)
        want, t_produce, got = replay_messages(conf, messages, rate, timeout, say)

    # The offline replay of the same users, without hot items (the worker has none).
    same_final = same_all = complete = 0
    max_diff = 0.0
    latencies, worker_ms = [], []
    mismatches = []
    for case in cases:
        offline = replay_user(case, model, k=k, m=m, theta=theta, high_cut=high_cut, rated_limit=rated_limit,
                              hot_items=(), decay=decay)
        lists = got.get(case.user, [])
        for rec in lists:
            if rec.get("produced_at"):
                latencies.append((rec["emitted_at"] - rec["produced_at"]) * 1000.0)
            worker_ms.append(rec.get("worker_ms", 0.0))
        if len(lists) != len(offline.lists):
            mismatches.append(case.user)
            continue
        complete += 1
        ok_all = True
        for rec, want_list in zip(lists, offline.lists, strict=False):
            ok, diff = _same(rec["items"], want_list)
            ok_all &= ok
            if ok:
                max_diff = max(max_diff, diff)
        ok_final, _ = _same(lists[-1]["items"], offline.lists[-1])
        same_final += ok_final
        same_all += ok_all
        if not ok_final:
            mismatches.append(case.user)

    def pct(xs, q):
        return float(np.percentile(xs, q)) if xs else float("nan")

    return {"mode": "real worker process on the broker (ratings topic -> realtime agent -> recommendations "
                    "topic), compared with the offline replay without hot items",
            "broker": source,
            "users": len(cases), "ratings_produced": sum(want.values()),
            "lists_received": sum(min(len(v), want[u]) for u, v in got.items()),
            "users_complete": complete, "identical_lists": same_final, "identical_all_lists": same_all,
            "mismatched_users": mismatches[:20],
            "max_abs_score_diff": max_diff if complete else None,
            "produce_rate_per_s": rate,
            "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99), "max_ms": max(latencies, default=float("nan")),
            "worker_p50_ms": pct(worker_ms, 50), "worker_p99_ms": pct(worker_ms, 99),
            "model_load_seconds": t_model, "produce_seconds": t_produce, "seconds": time.perf_counter() - t_start}


# ----------------------------------------------------------- the streaming protocol's check
def check_default_through_stream(stream, conf, **kwargs) -> dict:
    """:func:`check_through_stream` of the default ranker."""
    return check_through_stream(stream, conf, ranker="default", **kwargs)


def frozen_learned_weights(stream, n: int, ranker, model) -> object:
    """The weights the learner has after the first ``n`` events of ``stream`` (learnt
    test-then-learn with ``model`` frozen, as the evaluation's learned ranker learns)."""
    from learner.online import OnlineLearner
    from ranking import Interaction
    from ranking.features import FEATURES, KeptCandidates
    from tables.state import UserState

    learner = OnlineLearner(FEATURES, dict(ranker.objective), every=1 << 62)
    states: dict[str, UserState] = {}
    kept = KeptCandidates(len(stream))
    for j in range(n):
        user = stream.users[j]
        state = states.setdefault(user, UserState())
        interaction = Interaction(user, stream.items[j], float(stream.ratings[j]), float(stream.ts[j]),
                                  event=stream.events[j] if stream.events else "rating")
        examples = ranker.examples(state, interaction, model, made=kept.take(user, state.offset))
        if examples is not None:
            learner.learn(examples)
        kept.put(user, j, state.apply(j, ranker, interaction, model)[1].made)
    return learner.weights(version="frozen-warm-up", copy=True)


def check_through_stream(stream, conf, *, ranker: str = "default", users: int = 100, rate: float = 300.0,
                         seed: int = 0, broker_port: int | None = None, timeout: float = 300.0, log=None) -> dict:
    """``--protocol stream --through-stream``: ``users`` sampled users' events (all of them,
    in time order) through a real broker and worker running ``ranker`` (``default`` or
    ``learned``), with the model frozen (trained on the warm-up half, published once, as
    the evaluation's first model; for ``learned``, the weights it learnt over the warm-up
    half, published once to ``ranker-model``); every list the worker emits must equal the
    evaluation's list for the same events (``UserState.apply`` with the evaluation's
    ranker on the same index and weights), its ``because`` included. Neither ranker reads
    hot items here (the worker gets ratings only), so none are frozen."""
    from app.records import weights_messages
    from ranking import DefaultRanker, Interaction, Model
    from tables.state import UserState

    from .baselines import make_rankers
    from .prequential import interactions, train

    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    n_warm = len(stream) // 2
    trained = train(interactions(stream, n_warm), conf)
    if ranker == "learned":
        chosen_ranker = make_rankers(conf, sum(stream.scale) / 2.0)["learned"]
        model = Model(trained.index(keep_sources=True))
        model = Model(model.index, learned=frozen_learned_weights(stream, n_warm, chosen_ranker, model))
        say(f"weights learnt over the {n_warm} warm-up events")
    else:
        chosen_ranker, model = DefaultRanker.from_settings(conf), Model(trained.index())
    counts: dict[str, int] = {}
    for u in stream.users:
        counts[u] = counts.get(u, 0) + 1
    rng = np.random.default_rng(seed)
    eligible = sorted(u for u, c in counts.items() if c >= 2)
    chosen = set(rng.choice(eligible, size=min(users, len(eligible)), replace=False).tolist())
    events = [(stream.users[j], stream.items[j], float(stream.ratings[j]), float(stream.ts[j]))
              for j in range(len(stream)) if stream.users[j] in chosen]
    offline: dict[str, list] = {u: [] for u in chosen}
    states: dict[str, UserState] = {u: UserState() for u in chosen}
    for offset, (user, item, rating, ts) in enumerate(events):
        state = states[user]
        state.apply(offset, chosen_ranker, Interaction(user, item, rating, ts), model)
        offline[user].append((wire_list(state.last_list), state.recs["because"]))
    messages = [(*to_message(Rating(user=u, item=i, rating=r, ts=t)), u) for u, i, r, t in events]
    published = {"neighbours": trained.neighbours, **trained.publication()}
    settings = {"RECSYS_RATING_MIN": stream.scale[0], "RECSYS_RATING_MAX": stream.scale[1], "RECSYS_K": conf.ranking.k,
                "RECSYS_RATED_ITEMS_MAX": conf.ranking.rated_items_max, "RECSYS_RANKER": ranker, "RECSYS_AB": "",
                "RECSYS_LEARNED_IMPRESSIONS": "false"}
    with deployment(settings, published, f"eval-stream-{int(time.time())}", base=conf, broker_port=broker_port,
                    say=say, weights=weights_messages(model.learned, time.time()) if model.learned else None) \
            as (wconf, source, t_model):
        want, t_produce, got = replay_messages(wconf, messages, rate, timeout, say)
    same = sum(1 for u in chosen for rec, (lst, because) in zip(got[u], offline[u], strict=False)
               if rec["items"] == lst and rec.get("because") == because and rec.get("variant") == ranker)
    complete = sum(1 for u in chosen if len(got[u]) == want.get(u, 0))
    return {"ranker": ranker, "users": len(chosen), "events": len(messages),
            "lists_received": sum(len(v) for v in got.values()),
            "users_complete": complete, "identical_lists": same, "all_identical": same == len(messages),
            "broker": source, "model_load_seconds": round(t_model, 2), "produce_seconds": round(t_produce, 2),
            "seconds": round(time.perf_counter() - t_start, 1),
            "blend": trained.selection.as_dict() if trained.selection else None}
