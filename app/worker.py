"""The one place that builds a stream worker: :func:`build_worker`.

``recsys worker`` (and any test that needs a worker in process) calls
``build_worker(settings)``: it applies the Faust patches, creates the ``faust.App``,
declares the topics and tables, and registers the agents, timers and web views, each
handed the one :class:`Worker` that holds everything they share. Nothing of this
happens at import: importing any module of the project connects to nothing and patches
nothing. This module is the composition root: the only one that imports ``agents/``
and ``api/`` (they see :class:`Worker` as a type only).
"""
from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass, field

import faust

from agents import behaviour, expiry, log_cleaning, realtime, transactions
from agents.dead_letters import DeadLetters
from agents.transactions import PartitionTransactions
from api import views
from app import faust_patches
from app.app import broker_engine, create_app
from app.metrics import Metrics
from app.settings import Settings
from app.topics import Topics, declare_topics
from broker.clients import KafkaClients
from broker.detect import TANSU
from ranking.ab import Assignment, served_rankers
from ranking.content import CatalogueText, ContentIndex
from ranking.features import Context, KeptCandidates
from ranking.model import Model
from tables.broadcast import Catalogue, LearnedBroadcast, SimilarityBroadcast, keep_following
from tables.definitions import Tables, declare_tables, forget_offsets
from tables.state import UserState

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """What a worker's agents, timers and views share (built by :func:`build_worker`).

    Attributes
    ----------
    settings : Settings
        The one configuration the command line built.
    app : faust.App
        The Faust application every agent, table and view hangs off.
    topics, tables : Topics, Tables
        Declared once, on ``app``.
    model : SimilarityBroadcast
        The model in service (every item's neighbours), read from ``item-similarity``.
    catalogue : Catalogue
        item -> category, read from ``items`` (for ``?category=``).
    learned : LearnedBroadcast
        The learned ranker's serving weights, read from ``ranker-model``.
    kept : KeptCandidates
        The candidates of the learned ranker's users' lists, until their next interaction.
    ranking : Assignment
        Which ranker makes each user's list (``RECSYS_RANKER``, the A/B arms).
    metrics : Metrics
        Counters and latencies served by ``GET /metrics/``.
    dead_letters : DeadLetters
        Where rejected input goes (``agents/dead_letters.py``).
    content : ContentIndex or None
        The cold items' content neighbours, from the catalogue's text and the model's
        counts (:meth:`refresh_content`; None: no catalogue text).
    hot_items : list of str
        This worker's hottest items (refreshed by the behaviour agent's timer).
    in_flight : dict
        user key -> newest state of the batch being published: sent, not yet
        acknowledged, so not yet in the store (``agents/batches.py``).
    watermarks : dict
        input partition -> the newest interaction time ranked on it (``agents/expiry.py``).
    transactions : PartitionTransactions or None
        Under ``exactly_once``, one transactional producer per owned ``ratings`` partition
        (``agents/transactions.py``); None under ``at_least_once``.
    state_lock : asyncio.Lock
        Held by the realtime agent for each batch and by the expiry of quiet users: a user
        is never removed while one of their ratings is being ranked or published.
    """

    settings: Settings
    app: faust.App
    topics: Topics
    tables: Tables
    model: SimilarityBroadcast
    catalogue: Catalogue
    ranking: Assignment
    metrics: Metrics
    dead_letters: DeadLetters
    learned: LearnedBroadcast = field(default_factory=LearnedBroadcast)
    kept: KeptCandidates = field(default_factory=KeptCandidates)
    content: ContentIndex | None = None
    #: What :attr:`content` was built from: the catalogue's changes, the model version, the vectors.
    content_basis: dict = field(default_factory=dict, repr=False)
    hot_items: list[str] = field(default_factory=list)
    in_flight: dict[bytes, UserState] = field(default_factory=dict)
    watermarks: dict[int, float] = field(default_factory=dict)
    #: exactly_once: the transactional producers of the owned ``ratings`` partitions.
    transactions: PartitionTransactions | None = None
    state_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def current_model(self) -> Model:
        """What the rankers read now: the similarity model, the hot items, the learned
        weights and the catalogue (the realtime agent takes one per batch)."""
        hot = tuple(self.hot_items)
        return Model(self.model.index, hot, self.model.version, learned=self.learned.weights,
                     context=Context(hot_items=hot, categories=self.catalogue.category, first_seen=self.catalogue.added),
                     content=self.content)

    async def refresh_content(self) -> None:
        """Rebuild :attr:`content` when the catalogue or the model moved since it was built,
        in a thread (a large catalogue takes seconds): the text vectors only when the
        catalogue moved, the cold items' lists for every model version."""
        seen, changes, version = self.content_basis, self.catalogue.changes, self.model.version
        if seen.get("changes") == changes and seen.get("version") == version:
            return
        if seen.get("changes") != changes:
            seen["text"] = await asyncio.to_thread(CatalogueText, dict(self.catalogue.text))
        seen.update(changes=changes, version=version)
        text = seen["text"]
        self.content = (await asyncio.to_thread(ContentIndex, text, self.model.index.counts,
                                                self.settings.ranking.cold_item_min) if len(text) else None)

    def popular_now(self, n: int) -> tuple[list[str], str]:
        """``(items, source)``: this worker's hot items (``trending``: the behaviour events'
        window) or, while that window is empty (ratings only, or no events lately), the
        model's most counted items (``popular``)."""
        if self.hot_items:
            return list(self.hot_items[:n]), "trending"
        return list(self.model.index.popular[:n]), "popular"

    def newest_user_state(self, key: bytes) -> UserState:
        """The user's newest state on this worker: being published, else as stored."""
        state = self.in_flight.get(key)
        return state if state is not None else UserState.from_bytes(self.tables.user_state.get(key))


def build_worker(conf: Settings) -> Worker:
    """The worker of ``conf``: app, topics, tables, agents, timers and views, registered."""
    conf = conf.replace(kafka={"broker_engine": broker_engine(conf)})  # asked once, if "auto"
    metrics = Metrics()
    app = create_app(conf, metrics)
    topics = declare_topics(app, conf)
    worker = Worker(settings=conf, app=app, topics=topics, tables=declare_tables(app, conf),
                    model=SimilarityBroadcast(keep_sources=learned_served(conf)), catalogue=Catalogue(),
                    ranking=Assignment.from_settings(conf),
                    metrics=metrics, kept=KeptCandidates(conf.ranking.learned_kept_users),
                    dead_letters=DeadLetters(topics.dead_letters, metrics, max_bytes=conf.input.dead_letter_max_bytes),
                    transactions=partition_transactions(conf))
    faust_patches.apply(tansu=conf.kafka.broker_engine == TANSU, metrics=metrics, guard=conf.worker.faust_guard,
                        value_resets={worker.tables.user_state.name: forget_offsets},
                        fetch_wait_ms=conf.worker.fetch_wait_ms,
                        external_commits={conf.topics.ratings} if worker.transactions else set())
    transactions.register(worker)
    realtime.register(worker)
    expiry.register(worker)
    behaviour.register(worker)
    log_cleaning.register(worker)
    register_readers(worker)
    views.register(worker)
    return worker


def partition_transactions(conf: Settings) -> PartitionTransactions | None:
    """Under ``exactly_once``: the producers of ``agents/transactions.py``, made with the
    project's client settings (idempotent, acks=all) and the transaction timeout."""
    if conf.worker.processing_guarantee != "exactly_once":
        return None
    clients = KafkaClients(conf)

    async def make_producer(transactional_id: str):
        return await clients.producer("latency", transactional_id=transactional_id,
                                      transaction_timeout_ms=int(conf.worker.transaction_timeout_s * 1000))

    return PartitionTransactions(make_producer, conf.worker.app_id, conf.topics.ratings)


def learned_served(conf: Settings) -> bool:
    """Whether the learned ranker serves anyone (``RECSYS_RANKER`` or an A/B arm)."""
    return "learned" in served_rankers(conf)


def freeze_long_lived(basis: dict) -> None:
    """Move everything alive to the collector's permanent generation once the model (and
    the content index built on it) is in service, and again after each new one: a full
    collection walked Faust, the libraries and the model every time, 70-95 ms, in bursts
    of five while a batch's objects aged (the demo's produce->list p99 on Apache Kafka
    was these pauses). Frozen objects are still freed when their last reference goes;
    only cycles among them wait (a model version's few)."""
    key = (basis.get("version"), basis.get("changes"))
    if key[0] and basis.get("frozen") != key:
        gc.freeze()
        basis["frozen"] = key


def register_readers(worker: Worker) -> None:
    """Tasks that keep the worker's copies of the model and the catalogue current, and
    the once-a-second metrics sample."""
    app, conf = worker.app, worker.settings

    @app.task
    async def follow_similarity() -> None:
        await keep_following("similarity", worker.model.follow, conf)

    @app.task
    async def follow_catalogue() -> None:
        await keep_following("catalogue", worker.catalogue.follow, conf)

    if learned_served(conf):
        @app.task
        async def follow_learned() -> None:
            await keep_following("ranker-model", worker.learned.follow, conf)

    @app.timer(interval=1.0)
    async def refresh_content() -> None:
        await worker.refresh_content()
        freeze_long_lived(worker.content_basis)

    @app.timer(interval=1.0)
    async def sample_metrics() -> None:
        worker.metrics.tick()
