"""All settings of the service, in one place, read from environment variables.

Every knob has a sensible default so that ``make demo`` works on a fresh machine.
``RECSYS_BROKER`` unset means "the local broker on 127.0.0.1:RECSYS_EMBEDDED_PORT"
(``recsys broker`` starts one); set it to ``kafka://host:9092`` (comma-separate several)
to talk to a real cluster. Kafka security settings (SASL/SSL) are passed through to every
client (``broker/clients.py``) and to Faust (``app/app.py``).

Settings are frozen sections, one per concern (Kafka connection, topic names, the
worker, ranking, input validation, behaviour events, the ALS model worker, the API),
each field declared with its environment variable (:func:`env`). A :class:`Settings`
is built once at the edge (the command line: :func:`load_settings`; a test or
benchmark: :meth:`Settings.from_env` of a mapping, or ``Settings().replace(...)``) and
passed down; nothing else reads the environment. A value that does not parse raises
:class:`SettingError` naming the variable, which the command line prints as one line
(exit status 2).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

# The rankers a list can come from (RECSYS_RANKER, the arms of RECSYS_AB) and the arms' parser.
from ranking import RANKERS
from ranking.ab import parse_ab
from ranking.learned import parse_objective


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot take."""


@dataclass(frozen=True)
class Secret:
    """A password or token: ``repr`` and ``str`` mask it (settings get logged); read
    :attr:`value` where it is used."""

    value: str = ""

    def __repr__(self) -> str:
        return "Secret('********')" if self.value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.value)


NO_SECRET = Secret()
DEFAULT_DATA_DIR = Path("data")


def env(name: str, default, *, choices: tuple[str, ...] = (), alias: str = "", low=None, high=None):
    """A setting read from the environment variable ``name`` by :meth:`Settings.from_env`
    (``alias``: an older name read when ``name`` is unset), parsed by the field's type; a
    number must lie in ``[low, high]`` (checked whenever a :class:`Settings` is built)."""
    return field(default=default, metadata={"env": name, "choices": choices, "alias": alias, "low": low,
                                            "high": high})


def _check_ranges(obj) -> None:
    """:class:`SettingError` for the first number of ``obj`` (a settings section, its
    sections included) outside its ``low``/``high`` range, naming its variable."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if "section" in f.metadata:
            _check_ranges(value)
            continue
        low, high = f.metadata.get("low"), f.metadata.get("high")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = (f"between {low:g} and {high:g}" if low is not None and high is not None
                      else f"at least {low:g}" if low is not None else f"at most {high:g}")
            raise SettingError(f"{f.metadata['env']}={value!r} is out of range: it must be {bounds}")


def section(cls):
    """A field holding a whole section (its defaults unless the environment says otherwise)."""
    return field(default_factory=cls, metadata={"section": cls})


def _from_env(cls, environ: Mapping[str, str]):
    """An instance of the settings dataclass ``cls`` from ``environ``: every :func:`env`
    field parsed, every :func:`section` built the same way."""
    values = {}
    for f in fields(cls):
        if "section" in f.metadata:
            values[f.name] = _from_env(f.metadata["section"], environ)
            continue
        for name in (n for n in (f.metadata.get("env"), f.metadata.get("alias")) if n):
            raw = environ.get(name)
            if raw is not None and raw.strip():
                values[f.name] = _parse(name, raw, f.type, f.metadata["choices"])
                break
    return cls(**values)


def _to_env(obj) -> dict[str, str]:
    """The environment that gives ``obj`` back through :func:`_from_env` (for child processes)."""
    out: dict[str, str] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if "section" in f.metadata:
            out.update(_to_env(value))
        elif "env" in f.metadata:
            text = value.value if isinstance(value, Secret) else str(value).lower() if isinstance(value, bool) \
                else str(value)
            out[f.metadata["env"]] = text
    return out


def _parse(name: str, raw: str, kind: str, choices: tuple[str, ...]):
    """``raw`` as a value of type ``kind`` (the field's annotation); :class:`SettingError` if not."""
    text = raw.strip()
    if choices and text not in choices:
        raise SettingError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    parsers = {"int": (int, "an integer"), "float": (float, "a number"), "bool": (_boolean, _BOOLEAN_HELP),
               "Path": (Path, "a path"), "Secret": (lambda t: Secret(raw), "a secret")}
    parse, what = parsers.get(kind, (lambda t: raw, "text"))
    try:
        return parse(text)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not {what}") from None


def _boolean(text: str) -> bool:
    if text.lower() not in _BOOLEANS:
        raise ValueError(text)
    return _BOOLEANS[text.lower()]


_BOOLEAN_HELP = "a boolean (1/0, true/false, yes/no, on/off)"
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


#: How strongly each behaviour event says "I want this", on a 1..5 scale.
DEFAULT_EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "cart": 3.0, "fav": 3.0, "purchase": 5.0}



@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka connection (every client and Faust), and how topics are created."""

    #: ``kafka://host:port[;host2:port]``; empty means the embedded broker.
    broker: str = env("RECSYS_BROKER", "")
    #: Which broker answers: ``auto`` asks it (Tansu gets its workarounds, Kafka none:
    #: ``broker/detect.py``); ``tansu`` or ``kafka`` skip the question.
    broker_engine: str = env("RECSYS_BROKER_ENGINE", "auto", choices=("auto", "tansu", "kafka"))
    #: Port of the embedded broker when ``broker`` is empty.
    embedded_port: int = env("RECSYS_EMBEDDED_PORT", 9092, low=1, high=65535)
    #: SASL/SSL pass-through: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    security_protocol: str = env("RECSYS_SECURITY_PROTOCOL", "PLAINTEXT")
    sasl_mechanism: str = env("RECSYS_SASL_MECHANISM", "PLAIN")
    sasl_username: str = env("RECSYS_SASL_USERNAME", "")
    sasl_password: Secret = env("RECSYS_SASL_PASSWORD", NO_SECRET)
    ssl_cafile: str = env("RECSYS_SSL_CAFILE", "")
    #: Partitions of every topic we create (ratings, user-events, ... and changelogs).
    partitions: int = env("RECSYS_PARTITIONS", 4, low=1)
    #: Replicas of every topic we create (Faust's changelogs too), and how many of them
    #: must hold a write before it is acknowledged (``min.insync.replicas``; 0 = one
    #: less than ``replication``, at least 1). Three-broker cluster: 3 and 2. Topic
    #: creation waits until ``replication`` brokers are registered.
    replication: int = env("RECSYS_REPLICATION", 1, low=1)
    min_insync: int = env("RECSYS_MIN_INSYNC", 0, low=0)

    @property
    def min_insync_replicas(self) -> int:
        return min(self.replication, self.min_insync) if self.min_insync else max(1, self.replication - 1)
    #: How long the group waits for a silent member before giving its partitions to
    #: the others, and the heartbeat period. 0 = the default: Faust's (60 s / 3 s) on
    #: Kafka, 6 s / 1 s on the embedded Tansu broker (whose joins take session/2).
    #: Tests and kill drills shorten them so a killed worker's partitions move in seconds.
    session_timeout_s: float = env("RECSYS_SESSION_TIMEOUT_S", 0.0, low=0)
    heartbeat_interval_s: float = env("RECSYS_HEARTBEAT_INTERVAL_S", 0.0, low=0)

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.broker

    @property
    def broker_url(self) -> str:
        """The Kafka URL Faust should use (the embedded broker's when none is set)."""
        if self.broker:
            return self.broker if "://" in self.broker else f"kafka://{self.broker}"
        return f"kafka://127.0.0.1:{self.embedded_port}"

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` strings for plain aiokafka clients (loaders, ALS worker)."""
        url = self.broker_url.split("://", 1)[1]
        return [s.strip() for s in url.replace(";", ",").split(",") if s.strip()]

    def __post_init__(self) -> None:
        _check_broker_url(self.broker)


@dataclass(frozen=True)
class TopicNames:
    """The topics of a deployment (``broker/topics.py`` creates them)."""

    ratings: str = env("RECSYS_TOPIC_RATINGS", "ratings")
    events: str = env("RECSYS_TOPIC_EVENTS", "user-events")
    raw_logs: str = env("RECSYS_TOPIC_RAW_LOGS", "raw-logs")
    similarity: str = env("RECSYS_TOPIC_SIMILARITY", "item-similarity")
    recommendations: str = env("RECSYS_TOPIC_RECOMMENDATIONS", "recommendations")
    dead_letters: str = env("RECSYS_TOPIC_DEAD_LETTERS", "dead-letters")
    #: The learned ranker: every interaction's examples (to the learner) and its weight sets (compacted).
    ranker_examples: str = env("RECSYS_TOPIC_RANKER_EXAMPLES", "ranker-examples")
    ranker_model: str = env("RECSYS_TOPIC_RANKER_MODEL", "ranker-model")
    #: Compacted catalogue (key item id: {"item", "name", "category"}) the web frontend shows.
    items: str = env("RECSYS_TOPIC_ITEMS", "items")


@dataclass(frozen=True)
class WorkerSettings:
    """The stream worker (Faust): app, guarantee, store, batching and client tuning."""

    app_id: str = env("RECSYS_APP_ID", "recsys")
    #: ``at_least_once`` (default) or ``exactly_once`` (one transaction per input partition
    #: and batch, ``agents/transactions.py``; Apache Kafka only).
    processing_guarantee: str = env("RECSYS_PROCESSING_GUARANTEE", "at_least_once",
                                    choices=("at_least_once", "exactly_once"))
    #: exactly_once: how long the broker lets a transaction stay open before aborting it
    #: (a worker killed mid-batch blocks read_committed readers of its partitions that long
    #: at most, unless its successor fences it first).
    transaction_timeout_s: float = env("RECSYS_TRANSACTION_TIMEOUT_S", 10.0, low=1, high=900)
    #: Faust table store: ``rocksdb://`` (default, with changelog) or ``memory://``.
    store: str = env("RECSYS_STORE", "rocksdb://")
    #: RocksDB memory per table partition (each table has one database per partition):
    #: the write buffer (memtable; at most two in memory) and the block cache. Faust's
    #: defaults (64 MB x 3 and a 2 GB cache, each partition) let a worker's memory grow
    #: with its state for hours before any cap bites (docs/RESULTS.md, one million users).
    rocksdb_write_buffer_mb: float = env("RECSYS_ROCKSDB_WRITE_BUFFER_MB", 4.0, low=0.5, high=1024)
    rocksdb_block_cache_mb: float = env("RECSYS_ROCKSDB_BLOCK_CACHE_MB", 8.0, low=0.5, high=65536)
    log_every_s: float = env("RECSYS_LOG_EVERY_S", 10.0, low=0.1)
    #: A user with no interaction for this many days (by event time: the newest seen on
    #: the user's partition) is removed: state and list tombstoned (0 = keep every user).
    user_ttl_days: float = env("RECSYS_USER_TTL_DAYS", 0.0, low=0)
    #: How often a worker looks for such users (seconds).
    user_expiry_every_s: float = env("RECSYS_USER_EXPIRY_EVERY_S", 60.0, low=0.1)
    #: Batching of Faust's own sends (behaviour counts, implicit ratings, dead letters; the
    #: realtime agent's states and lists go as complete record batches, never lingering):
    #: how long a batch may wait for more messages, and its size. 0: a behaviour event's
    #: implicit rating leaves at once (the demo's produce->list p50 on Kafka 25 -> 17 ms);
    #: the sender still groups what arrives while a request is in flight (docs/RESULTS.md).
    producer_linger_ms: float = env("RECSYS_PRODUCER_LINGER_MS", 0.0, low=0)
    producer_batch_bytes: int = env("RECSYS_PRODUCER_BATCH_BYTES", 262144, low=1)
    #: Records one consumer poll may return (Kafka's own default, 500; Faust passes
    #: "unlimited"). Keep it below a fifth of Faust's stream buffer (4096): a stream
    #: stops fetching at 80% full, so a bounded poll never finds the buffer full, and a
    #: full buffer costs every further message a task and a wait (docs/RESULTS.md).
    max_poll_records: int = env("RECSYS_MAX_POLL_RECORDS", 500, low=1)
    #: The realtime agent takes ratings in batches of at most this many, waiting at most
    #: ``batch_wait_ms`` for a batch to fill: per batch, one read and one write per user
    #: and a few record batches to Kafka instead of two Faust sends per rating. 1 turns
    #: batching off (one rating at a time); the wait adds at most that much latency. Not 0:
    #: Faust's ``take_events`` reads ``within=0`` as "until the batch is full" (lists came
    #: seconds late in the demo).
    batch_max: int = env("RECSYS_BATCH_MAX", 500, low=1)
    batch_wait_ms: float = env("RECSYS_BATCH_WAIT_MS", 5.0, low=0.1)
    #: How long the broker may hold a fetch of the worker (or of any reader of lists:
    #: the web, the demo) when its partitions are quiet (Faust's own is 1500 ms, a
    #: message's wait on a just-drained partition: ``app/faust_patches/fetch_wait.py``).
    #: Shorter: more idle fetches. Tansu: 100 ms.
    fetch_wait_ms: int = env("RECSYS_FETCH_WAIT_MS", 20, low=1, high=1500)
    #: Refuse to start a worker when faust-streaming, mode or aiokafka differ from what the
    #: patches of their internals were checked against (``app/faust_patches/UPSTREAM.md``).
    #: off: start anyway, with a warning, at your own risk.
    faust_guard: bool = env("RECSYS_FAUST_GUARD", True)


@dataclass(frozen=True)
class RankingSettings:
    """Which ranker makes a user's list, and the online algorithm's knobs (ARCHITECTURE.md)."""

    #: The ranker variant of every list when no A/B test runs.
    ranker: str = env("RECSYS_RANKER", "default")
    #: ``variant:weight,...`` (e.g. ``default:50,paper:50``): users assigned by a stable hash.
    ab: str = env("RECSYS_AB", "")
    #: K: length of a recommendation list and number of recent ratings kept per user.
    k: int = env("RECSYS_K", 20, low=1)
    #: M: neighbours per item used as candidates (the ALS worker publishes ``similar``).
    m: int = env("RECSYS_M", 20, low=1)
    #: theta: minimum similarity between a candidate and a recent item to count.
    theta: float = env("RECSYS_THETA", 0.6, low=-1, high=1)
    #: Weight of the previous list's scores in the merge (1.0 = the paper). 0.1 with
    #: theta 0.5 makes ~98% of a list new after every rating (see evaluation/README.md).
    decay: float = env("RECSYS_DECAY", 1.0, low=0, high=1)
    #: How many already-rated items per user are remembered (and never recommended).
    rated_items_max: int = env("RECSYS_RATED_ITEMS_MAX", 1000, low=1)
    #: The learned ranker's objective: ``task:weight,...`` over ``interaction`` (any event)
    #: and ``conversion`` (cart, purchase, a rating above the middle of the scale).
    objective: str = env("RECSYS_OBJECTIVE", "interaction:1,conversion:1")
    #: The learned ranker's exploration: the chance that one slot of a list goes to a
    #: candidate from outside its top (its propensity is logged on the list; 0 = never).
    explore: float = env("RECSYS_EXPLORE", 0.0, low=0, high=1)
    #: Whether shoppers see the lists (a shop page shows them): the learned ranker then
    #: counts a listed item the shopper passed over as a stronger negative.
    impressions: bool = env("RECSYS_LEARNED_IMPRESSIONS", True)
    #: Users whose list's candidates a worker keeps in memory until their next interaction
    #: makes its examples from them (about 10 KB each: 70 candidates x 30 features
    #: in float32, their ids; others are recomputed).
    learned_kept_users: int = env("RECSYS_LEARNED_KEPT_USERS", 20000, low=0)
    #: An item with fewer interactions than this in the model's training data is recalled
    #: by its catalogue text (``ranking/content.py``; 0 = never).
    cold_item_min: int = env("RECSYS_COLD_ITEM_MIN", 5, low=0)

    def __post_init__(self) -> None:
        _check_rankers(self)
        try:
            parse_objective(self.objective)
        except ValueError as exc:
            raise SettingError(f"RECSYS_OBJECTIVE={self.objective!r}: {exc}") from None


@dataclass(frozen=True)
class InputSettings:
    """What input is valid: the shop's rating scale, timestamps, and dead letters."""

    #: Rating scale of the shop; out-of-range ratings are dead-lettered, and the
    #: high/low cut of the paper's formula is the middle of this scale.
    rating_min: float = env("RECSYS_RATING_MIN", 1.0)
    rating_max: float = env("RECSYS_RATING_MAX", 5.0)
    #: A ``ts`` more than this many seconds after the worker's clock is rejected
    #: (``ts_in_future``): it would stay the user's newest rating of the item for ever.
    max_future_s: float = env("RECSYS_MAX_FUTURE_S", 86400.0, low=0)
    #: Bytes of a rejected message kept in its dead letter; the letter holds them twice
    #: (text and base64), so 64 KiB keeps any letter far below the producer's 1 MB limit.
    dead_letter_max_bytes: int = env("RECSYS_DEAD_LETTER_MAX_BYTES", 65536, low=1)


@dataclass(frozen=True)
class BehaviourSettings:
    """Behaviour events: windows, implicit ratings, segments, hot items."""

    #: Tumbling window (seconds) for per-user event counts; hopping window size/step.
    tumbling_s: float = env("RECSYS_TUMBLING_S", 600, low=1)
    hopping_size_s: float = env("RECSYS_HOPPING_SIZE_S", 3600, low=1)
    hopping_step_s: float = env("RECSYS_HOPPING_STEP_S", 300, low=1)
    #: How long closed windows are kept before expiry (seconds).
    window_expires_s: float = env("RECSYS_WINDOW_EXPIRES_S", 7200, low=1)
    #: Behaviour events that become interactions (implicit ratings on ``ratings``, so one
    #: agent writes a user's state, in one order), "event:weight,..." on the rating
    #: scale; an event type left out changes only the counters. ``RECSYS_IMPLICIT_RATINGS``
    #: (its old name) is read when it is unset. Unset: :data:`DEFAULT_EVENT_WEIGHTS`.
    event_weights: str = env("RECSYS_EVENT_WEIGHTS", "", alias="RECSYS_IMPLICIT_RATINGS")
    #: Segment thresholds over the hopping-window counts.
    segment_high_value_purchases: int = env("RECSYS_SEGMENT_HIGH_VALUE_PURCHASES", 2, low=1)
    segment_active_events: int = env("RECSYS_SEGMENT_ACTIVE_EVENTS", 20, low=1)
    hot_items: int = env("RECSYS_HOT_ITEMS", 50, low=1)


@dataclass(frozen=True)
class LearnerSettings:
    """The learned ranker's learner (``recsys learner``): when it offers a new weight set."""

    #: Seconds, or example rows, between two offers to the gate (whichever comes first).
    every_s: float = env("RECSYS_LEARNER_EVERY_S", 10.0, low=0.01)
    every_examples: int = env("RECSYS_LEARNER_EVERY_EXAMPLES", 5000, low=1)
    #: Interactions in the gate's progressive-validation window.
    window: int = env("RECSYS_LEARNER_WINDOW", 2000, low=1)
    #: Consumer group (for lag monitoring: the offsets it resumes from are its checkpoint's).
    group: str = env("RECSYS_LEARNER_GROUP", "recsys-learner")


@dataclass(frozen=True)
class AlsSettings:
    """The ALS model worker: the model, what it publishes, and when it retrains."""

    #: Where the model worker serves GET /metrics (Prometheus) and /metrics/json, on
    #: RECSYS_WEB_HOST; 0: no server.
    metrics_port: int = env("RECSYS_MODEL_METRICS_PORT", 6067, low=0, high=65535)
    rank: int = env("RECSYS_ALS_RANK", 20, low=1)
    reg: float = env("RECSYS_ALS_REG", 1.0, low=0)
    #: Pseudo-ratings added to every user's/item's count in the weighted-lambda penalty,
    #: reg * (n + offset): shrinks one-rating users harder (0 = Zhou et al./Spark exactly).
    reg_offset: float = env("RECSYS_ALS_REG_OFFSET", 5.0, low=0)
    iters: int = env("RECSYS_ALS_ITERS", 10, low=1)
    biases: bool = env("RECSYS_ALS_BIASES", True)
    seed: int = env("RECSYS_ALS_SEED", 42, low=0)
    #: Neighbours published per item, and the minimum similarity to publish one.
    similar: int = env("RECSYS_ALS_SIMILAR", 50, low=1)
    min_similarity: float = env("RECSYS_ALS_MIN_SIMILARITY", 0.0, low=-1, high=1)
    #: explicit (ratings), implicit (Hu-Koren-Volinsky confidence weighting, for behaviour
    #: events) or auto: implicit when most of the input is behaviour events.
    feedback: str = env("RECSYS_ALS_FEEDBACK", "auto")
    #: Implicit feedback: confidence per unit of event weight (c = 1 + alpha * w), ridge term.
    alpha: float = env("RECSYS_ALS_ALPHA", 1.0, low=0)
    implicit_reg: float = env("RECSYS_ALS_IMPLICIT_REG", 0.01, low=0)
    #: Neighbours published per item and source (co-occurrence, sequential rules, EASE/RP3beta):
    #: what the default ranker blends for each recent interaction (docs/RESULTS.md: how it was chosen).
    related: int = env("RECSYS_ALS_RELATED", 200, low=0)
    #: Retrain every this many minutes, or after this many new ratings, if anything changed.
    every_min: float = env("RECSYS_ALS_EVERY_MIN", 10.0, low=0.001)
    every_ratings: int = env("RECSYS_ALS_EVERY_RATINGS", 10_000, low=1)
    #: Train on the last this many days of ratings only (by rating time: the newest stored
    #: is "now", so a replayed file behaves), and drop older ones from the store (0 = all).
    window_days: float = env("RECSYS_MODEL_WINDOW_DAYS", 0.0, low=0)
    group: str = env("RECSYS_ALS_GROUP", "recsys-als")

    def __post_init__(self) -> None:
        if self.feedback not in ALS_FEEDBACK:
            raise SettingError(f"RECSYS_ALS_FEEDBACK={self.feedback!r}: use one of {', '.join(ALS_FEEDBACK)}")


@dataclass(frozen=True)
class ApiSettings:
    """The worker's HTTP API (Faust's web server)."""

    web_port: int = env("RECSYS_WEB_PORT", 6066, low=1, high=65535)
    web_host: str = env("RECSYS_WEB_HOST", "127.0.0.1")
    #: Faust's own web views (/router/, /table/..., /graph/, statistics): they expose table
    #: data and the cluster topology, so they are off unless asked for.
    debug_endpoints: bool = env("RECSYS_DEBUG_ENDPOINTS", False)
    #: When set, every endpoint but /health/ needs ``Authorization: Bearer <token>``.
    #: Masked in repr(): settings get logged.
    api_token: Secret = env("RECSYS_API_TOKEN", NO_SECRET)


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, frozen, by concern. ``Settings()`` is the defaults;
    :meth:`from_env` reads an environment mapping (the command line passes ``os.environ``)."""

    kafka: KafkaSettings = section(KafkaSettings)
    topics: TopicNames = section(TopicNames)
    worker: WorkerSettings = section(WorkerSettings)
    ranking: RankingSettings = section(RankingSettings)
    input: InputSettings = section(InputSettings)
    behaviour: BehaviourSettings = section(BehaviourSettings)
    als: AlsSettings = section(AlsSettings)
    learner: LearnerSettings = section(LearnerSettings)
    api: ApiSettings = section(ApiSettings)
    #: Where RocksDB tables, the ALS rating store and saved models live.
    data_dir: Path = env("RECSYS_DATA_DIR", DEFAULT_DATA_DIR)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """The settings an environment ``environ`` gives (only ``RECSYS_*`` names are read;
        a blank value is the default). Raises :class:`SettingError` naming the variable."""
        return _from_env(cls, environ)

    def to_env(self) -> dict[str, str]:
        """Every ``RECSYS_*`` variable of these settings: a child process given them reads
        the same settings (``Settings.from_env(s.to_env()) == s``)."""
        return _to_env(self)

    def replace(self, **changes) -> Settings:
        """A copy with some values changed: a section's fields as a mapping, e.g.
        ``conf.replace(kafka={"broker_engine": "tansu"}, data_dir=Path("x"))``."""
        updated = {}
        for name, value in changes.items():
            current = getattr(self, name)
            updated[name] = dataclasses.replace(current, **value) if dataclasses.is_dataclass(current) else value
        return dataclasses.replace(self, **updated)

    def event_weight_map(self) -> dict[str, float]:
        """``RECSYS_EVENT_WEIGHTS`` as ``{event: weight}`` (checked in ``__post_init__``);
        unset, :data:`DEFAULT_EVENT_WEIGHTS` mapped linearly from 1..5 onto the rating scale."""
        spec = self.behaviour.event_weights
        if not spec.strip():
            lo, hi = self.input.rating_min, self.input.rating_max
            return {e: lo + (w - 1.0) * (hi - lo) / 4.0 for e, w in DEFAULT_EVENT_WEIGHTS.items()}
        pairs = (p.split(":", 1) for p in spec.split(",") if p.strip())
        return {name.strip(): float(value) for name, value in pairs}

    def __post_init__(self) -> None:
        _check_ranges(self)
        _check_event_weights(self)


def _check_event_weights(conf: Settings) -> None:
    from app.records import EVENT_TYPES

    name, scale = "RECSYS_EVENT_WEIGHTS", conf.input
    for part in (p.strip() for p in conf.behaviour.event_weights.split(",") if p.strip()):
        event, colon, weight = part.partition(":")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not colon or event.strip() not in EVENT_TYPES - {"dislike"} or value is None:
            raise SettingError(f"{name}: {part!r} is not event:weight with event one of "
                               f"{', '.join(sorted(EVENT_TYPES - {'dislike'}))} (a dislike is never a weight)")
        if not scale.rating_min <= value <= scale.rating_max:
            raise SettingError(f"{name}: {part!r}: the weight must be on the rating scale "
                               f"[{scale.rating_min:g}, {scale.rating_max:g}]")


#: What the ALS worker may learn from (``RECSYS_ALS_FEEDBACK``).
ALS_FEEDBACK = ("auto", "explicit", "implicit")


def _check_rankers(conf: RankingSettings) -> None:
    if conf.ranker not in RANKERS:
        raise SettingError(f"RECSYS_RANKER={conf.ranker!r}: use one of {', '.join(RANKERS)}")
    try:
        arms = parse_ab(conf.ab)
    except ValueError as exc:
        raise SettingError(str(exc)) from None
    for arm, _weight in arms:
        if arm not in RANKERS:
            raise SettingError(f"RECSYS_AB: variant {arm!r} is not a ranker ({', '.join(RANKERS)})")


def _check_broker_url(broker: str) -> None:
    """``RECSYS_BROKER`` must be ``[kafka://]host:port[,host:port...]``."""
    if not broker:
        return
    scheme, sep, rest = broker.partition("://")
    if sep and scheme != "kafka":
        raise SettingError(f"RECSYS_BROKER={broker!r}: use kafka://host:port (not {scheme}://)")
    for server in (rest if sep else broker).replace(";", ",").split(","):
        host, colon, port = server.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingError(f"RECSYS_BROKER={broker!r}: {server.strip() or '(empty)'!r} is not host:port")


#: ``RECSYS_*`` names that are read but are not settings: the test suite's broker choice.
OTHER_NAMES = frozenset({"RECSYS_TEST_ENGINE"})


def setting_names(cls=None) -> set[str]:
    """Every environment variable a setting is read from (aliases included)."""
    out: set[str] = set()
    for f in fields(cls or Settings):
        if "section" in f.metadata:
            out |= setting_names(f.metadata["section"])
        else:
            out |= {n for n in (f.metadata.get("env"), f.metadata.get("alias")) if n}
    return out


def near_misses(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``RECSYS_*`` name of ``environ`` that is no setting but is close
    to one (``RECSYS_PARTITONS``): unknown names are otherwise ignored, silently."""
    known = setting_names() | OTHER_NAMES
    out = []
    for name in sorted(n for n in environ if n.startswith("RECSYS_") and n not in known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close:
            out.append(f"{name} is not a setting (ignored): did you mean {close[0]}?")
    return out


def load_settings() -> Settings:
    """The settings of this process's environment: the one place that reads ``os.environ``
    (called at the command line's edge; everything else is handed a :class:`Settings`)."""
    return Settings.from_env(os.environ)
