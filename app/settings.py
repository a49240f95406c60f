"""All settings of the service, in one place, read from environment variables.

Every knob has a sensible default so that ``make demo`` works on a fresh machine.
``RECSYS_BROKER`` unset means "the local broker on 127.0.0.1:RECSYS_EMBEDDED_PORT"
(``recsys broker`` starts one); set it to ``kafka://host:9092`` (comma-separate several)
to talk to a real cluster. Kafka security settings (SASL/SSL) are passed through to every
client (``broker/clients.py``) and to Faust (``app/app.py``).

A :class:`Settings` is built once at the edge (the command line, a test, a benchmark)
and passed down; only ``app/app.py`` builds one at import, for Faust's decorators. A
value that does not parse raises :class:`SettingError` naming the variable, which the
command line prints as one line (exit status 2).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The rankers a list can come from (RECSYS_RANKER, the arms of RECSYS_AB) and the arms' parser.
from ranking import RANKERS
from ranking.ab import parse_ab


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _parsed(name: str, default, parse, what: str):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not {what}") from None


def _env_int(name: str, default: int) -> int:
    return _parsed(name, default, int, "an integer")


def _env_float(name: str, default: float) -> float:
    return _parsed(name, default, float, "a number")


def _env_bool(name: str, default: bool) -> bool:
    def parse(text: str) -> bool:
        if text.lower() not in _BOOLEANS:
            raise ValueError(text)
        return _BOOLEANS[text.lower()]

    return _parsed(name, default, parse, "a boolean (1/0, true/false, yes/no, on/off)")


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(text)
        return text

    return _parsed(name, default, parse, "one of " + ", ".join(choices))


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


#: How strongly each behaviour event says "I want this", on a 1..5 scale (issue 13's example).
DEFAULT_EVENT_WEIGHTS = {"view": 1.0, "click": 2.0, "cart": 3.0, "fav": 3.0, "purchase": 5.0}



@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment. Build with :func:`load_settings`."""

    # --- Kafka ------------------------------------------------------------------
    #: ``kafka://host:port[;host2:port]``; empty means the embedded broker.
    broker: str = field(default_factory=lambda: _env("RECSYS_BROKER", ""))
    #: Which broker answers: ``auto`` asks it (Tansu gets its workarounds, Kafka none:
    #: ``broker/detect.py``); ``tansu`` or ``kafka`` skip the question.
    broker_engine: str = field(default_factory=lambda: _env_choice("RECSYS_BROKER_ENGINE", "auto",
                                                                   ("auto", "tansu", "kafka")))
    #: Port of the embedded broker when ``broker`` is empty.
    embedded_port: int = field(default_factory=lambda: _env_int("RECSYS_EMBEDDED_PORT", 9092))
    #: SASL/SSL pass-through: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    security_protocol: str = field(default_factory=lambda: _env("RECSYS_SECURITY_PROTOCOL", "PLAINTEXT"))
    sasl_mechanism: str = field(default_factory=lambda: _env("RECSYS_SASL_MECHANISM", "PLAIN"))
    sasl_username: str = field(default_factory=lambda: _env("RECSYS_SASL_USERNAME", ""))
    sasl_password: str = field(default_factory=lambda: _env("RECSYS_SASL_PASSWORD", ""))
    ssl_cafile: str = field(default_factory=lambda: _env("RECSYS_SSL_CAFILE", ""))
    #: Partitions of every topic we create (ratings, user-events, ... and changelogs).
    partitions: int = field(default_factory=lambda: _env_int("RECSYS_PARTITIONS", 4))
    replication: int = field(default_factory=lambda: _env_int("RECSYS_REPLICATION", 1))

    # --- Faust worker -------------------------------------------------------------
    app_id: str = field(default_factory=lambda: _env("RECSYS_APP_ID", "recsys"))
    #: ``at_least_once`` (default) or ``exactly_once`` (Faust transactions; real Kafka only).
    processing_guarantee: str = field(default_factory=lambda: _env_choice(
        "RECSYS_PROCESSING_GUARANTEE", "at_least_once", ("at_least_once", "exactly_once")))
    #: Faust table store: ``rocksdb://`` (default, with changelog) or ``memory://``.
    store: str = field(default_factory=lambda: _env("RECSYS_STORE", "rocksdb://"))
    #: Where RocksDB tables, the ALS rating store and saved models live.
    data_dir: Path = field(default_factory=lambda: Path(_env("RECSYS_DATA_DIR", "data")))
    web_port: int = field(default_factory=lambda: _env_int("RECSYS_WEB_PORT", 6066))
    web_host: str = field(default_factory=lambda: _env("RECSYS_WEB_HOST", "127.0.0.1"))
    log_every_s: float = field(default_factory=lambda: _env_float("RECSYS_LOG_EVERY_S", 10.0))
    #: Producer batching: how long a batch may wait for more messages, and its size.
    #: Latency vs throughput: longer and bigger batches give a worker more ratings/s and
    #: later lists (the measured trade-off: README, Results).
    producer_linger_ms: float = field(default_factory=lambda: _env_float("RECSYS_PRODUCER_LINGER_MS", 10.0))
    producer_batch_bytes: int = field(default_factory=lambda: _env_int("RECSYS_PRODUCER_BATCH_BYTES", 262144))
    #: Records one consumer poll may return (Kafka's own default, 500; Faust passes
    #: "unlimited"). Keep it below a fifth of Faust's stream buffer (4096): a stream
    #: stops fetching at 80% full, so a bounded poll never finds the buffer full, and a
    #: full buffer costs every further message a task and a wait (README, Results).
    max_poll_records: int = field(default_factory=lambda: _env_int("RECSYS_MAX_POLL_RECORDS", 500))
    #: The realtime agent takes ratings in batches of at most this many, waiting at most
    #: ``batch_wait_ms`` for a batch to fill: per batch, one read and one write per user
    #: and a few record batches to Kafka instead of two Faust sends per rating. 1 turns
    #: batching off (one rating at a time); the wait adds at most that much latency.
    batch_max: int = field(default_factory=lambda: _env_int("RECSYS_BATCH_MAX", 500))
    batch_wait_ms: float = field(default_factory=lambda: _env_float("RECSYS_BATCH_WAIT_MS", 5.0))

    # --- Topic names --------------------------------------------------------------
    topic_ratings: str = field(default_factory=lambda: _env("RECSYS_TOPIC_RATINGS", "ratings"))
    topic_events: str = field(default_factory=lambda: _env("RECSYS_TOPIC_EVENTS", "user-events"))
    topic_raw_logs: str = field(default_factory=lambda: _env("RECSYS_TOPIC_RAW_LOGS", "raw-logs"))
    topic_similarity: str = field(default_factory=lambda: _env("RECSYS_TOPIC_SIMILARITY", "item-similarity"))
    topic_recommendations: str = field(
        default_factory=lambda: _env("RECSYS_TOPIC_RECOMMENDATIONS", "recommendations")
    )
    topic_dead_letters: str = field(default_factory=lambda: _env("RECSYS_TOPIC_DEAD_LETTERS", "dead-letters"))
    #: Compacted catalogue (key item id: {"item", "name", "category"}) the web frontend shows.
    topic_items: str = field(default_factory=lambda: _env("RECSYS_TOPIC_ITEMS", "items"))

    # --- Rankers and A/B tests (issue 13/14; the web frontend reads them today)
    #: The ranker variant of every list when no A/B test runs.
    ranker: str = field(default_factory=lambda: _env("RECSYS_RANKER", "default"))
    #: ``variant:weight,...`` (e.g. ``default:50,paper:50``): users assigned by a stable hash.
    ab: str = field(default_factory=lambda: _env("RECSYS_AB", ""))

    # --- The online algorithm (ARCHITECTURE.md) -------------------------------------
    #: K: length of a recommendation list and number of recent ratings kept per user.
    k: int = field(default_factory=lambda: _env_int("RECSYS_K", 20))
    #: M: neighbours per item used as candidates (the ALS worker publishes ``similar``).
    m: int = field(default_factory=lambda: _env_int("RECSYS_M", 20))
    #: theta: minimum similarity between a candidate and a recent item to count.
    theta: float = field(default_factory=lambda: _env_float("RECSYS_THETA", 0.6))
    #: Weight of the previous list's scores in the merge (1.0 = the paper). 0.1 with
    #: theta 0.5 makes ~98% of a list new after every rating (see evaluation/README.md).
    decay: float = field(default_factory=lambda: _env_float("RECSYS_DECAY", 1.0))
    #: Rating scale of the shop; out-of-range ratings are dead-lettered, and the
    #: high/low cut of the formula is the middle of this scale.
    rating_min: float = field(default_factory=lambda: _env_float("RECSYS_RATING_MIN", 1.0))
    rating_max: float = field(default_factory=lambda: _env_float("RECSYS_RATING_MAX", 5.0))
    #: How many already-rated items per user are remembered (and never recommended).
    rated_items_max: int = field(default_factory=lambda: _env_int("RECSYS_RATED_ITEMS_MAX", 1000))

    # --- Behaviour events ---------------------------------------------------------
    #: Tumbling window (seconds) for per-user event counts; hopping window size/step.
    tumbling_s: float = field(default_factory=lambda: _env_float("RECSYS_TUMBLING_S", 600))
    hopping_size_s: float = field(default_factory=lambda: _env_float("RECSYS_HOPPING_SIZE_S", 3600))
    hopping_step_s: float = field(default_factory=lambda: _env_float("RECSYS_HOPPING_STEP_S", 300))
    #: How long closed windows are kept before expiry (seconds).
    window_expires_s: float = field(default_factory=lambda: _env_float("RECSYS_WINDOW_EXPIRES_S", 7200))
    #: Behaviour events that become interactions (implicit ratings on ``ratings``, so one
    #: agent writes a user's state, in one order), "event:weight,..." on the rating
    #: scale; an event type left out changes only the counters. ``RECSYS_IMPLICIT_RATINGS``
    #: (its old name) is read when it is unset. Unset: :data:`DEFAULT_EVENT_WEIGHTS`.
    event_weights: str = field(default_factory=lambda: _env("RECSYS_EVENT_WEIGHTS", _env("RECSYS_IMPLICIT_RATINGS", "")))
    #: Segment thresholds over the hopping-window counts.
    segment_high_value_purchases: int = field(
        default_factory=lambda: _env_int("RECSYS_SEGMENT_HIGH_VALUE_PURCHASES", 2)
    )
    segment_active_events: int = field(default_factory=lambda: _env_int("RECSYS_SEGMENT_ACTIVE_EVENTS", 20))
    hot_items: int = field(default_factory=lambda: _env_int("RECSYS_HOT_ITEMS", 50))

    # --- Offline ALS ----------------------------------------------------------------
    als_rank: int = field(default_factory=lambda: _env_int("RECSYS_ALS_RANK", 20))
    als_reg: float = field(default_factory=lambda: _env_float("RECSYS_ALS_REG", 1.0))
    #: Pseudo-ratings added to every user's/item's count in the weighted-lambda penalty,
    #: reg * (n + offset): shrinks one-rating users harder (0 = Zhou et al./Spark exactly).
    als_reg_offset: float = field(default_factory=lambda: _env_float("RECSYS_ALS_REG_OFFSET", 5.0))
    als_iters: int = field(default_factory=lambda: _env_int("RECSYS_ALS_ITERS", 10))
    als_biases: bool = field(default_factory=lambda: _env_bool("RECSYS_ALS_BIASES", True))
    als_seed: int = field(default_factory=lambda: _env_int("RECSYS_ALS_SEED", 42))
    #: Neighbours published per item, and the minimum similarity to publish one.
    als_similar: int = field(default_factory=lambda: _env_int("RECSYS_ALS_SIMILAR", 50))
    als_min_similarity: float = field(default_factory=lambda: _env_float("RECSYS_ALS_MIN_SIMILARITY", 0.0))
    #: explicit (ratings), implicit (Hu-Koren-Volinsky confidence weighting, for behaviour
    #: events) or auto: implicit when most of the input is behaviour events.
    als_feedback: str = field(default_factory=lambda: _env("RECSYS_ALS_FEEDBACK", "auto"))
    #: Implicit feedback: confidence per unit of event weight (c = 1 + alpha * w), ridge term.
    als_alpha: float = field(default_factory=lambda: _env_float("RECSYS_ALS_ALPHA", 1.0))
    als_implicit_reg: float = field(default_factory=lambda: _env_float("RECSYS_ALS_IMPLICIT_REG", 0.01))
    #: Co-occurrence neighbours published per item: what the default ranker reads for each
    #: recent interaction, so its cost per rating grows with it (README: how it was chosen).
    als_related: int = field(default_factory=lambda: _env_int("RECSYS_ALS_RELATED", 50))
    #: Retrain every this many minutes, or after this many new ratings, if anything changed.
    als_every_min: float = field(default_factory=lambda: _env_float("RECSYS_ALS_EVERY_MIN", 10.0))
    als_every_ratings: int = field(default_factory=lambda: _env_int("RECSYS_ALS_EVERY_RATINGS", 10_000))
    als_group: str = field(default_factory=lambda: _env("RECSYS_ALS_GROUP", "recsys-als"))

    # --- consumer group timing (every broker)
    #: How long the group waits for a silent member before giving its partitions to
    #: the others, and the heartbeat period. 0 = the default: Faust's (60 s / 3 s) on
    #: Kafka, 6 s / 1 s on the embedded Tansu broker (whose joins take session/2).
    #: Tests and kill drills shorten them so a killed worker's partitions move in seconds.
    session_timeout_s: float = field(default_factory=lambda: _env_float("RECSYS_SESSION_TIMEOUT_S", 0.0))
    heartbeat_interval_s: float = field(default_factory=lambda: _env_float("RECSYS_HEARTBEAT_INTERVAL_S", 0.0))

    # --- input validation and API access
    #: A ``ts`` more than this many seconds after the worker's clock is rejected
    #: (``ts_in_future``): it would stay the user's newest rating of the item for ever.
    max_future_s: float = field(default_factory=lambda: _env_float("RECSYS_MAX_FUTURE_S", 86400.0))
    #: Bytes of a rejected message kept in its dead letter; the letter holds them twice
    #: (text and base64), so 64 KiB keeps any letter far below the producer's 1 MB limit.
    dead_letter_max_bytes: int = field(default_factory=lambda: _env_int("RECSYS_DEAD_LETTER_MAX_BYTES", 65536))
    #: Faust's own web views (/router/, /table/..., /graph/, statistics): they expose table
    #: data and the cluster topology, so they are off unless asked for.
    debug_endpoints: bool = field(default_factory=lambda: _env_bool("RECSYS_DEBUG_ENDPOINTS", False))
    #: When set, every endpoint but /health/ needs ``Authorization: Bearer <token>``.
    #: Kept out of repr(): settings get logged.
    api_token: str = field(default_factory=lambda: _env("RECSYS_API_TOKEN", ""), repr=False)

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

    def event_weight_map(self) -> dict[str, float]:
        """``RECSYS_EVENT_WEIGHTS`` as ``{event: weight}`` (checked in ``__post_init__``);
        unset, :data:`DEFAULT_EVENT_WEIGHTS` mapped linearly from 1..5 onto the rating scale."""
        if not self.event_weights.strip():
            lo, hi = self.rating_min, self.rating_max
            return {e: lo + (w - 1.0) * (hi - lo) / 4.0 for e, w in DEFAULT_EVENT_WEIGHTS.items()}
        pairs = (p.split(":", 1) for p in self.event_weights.split(",") if p.strip())
        return {name.strip(): float(value) for name, value in pairs}

    def __post_init__(self) -> None:
        _check_broker_url(self.broker)
        _check_event_weights(self)
        _check_rankers(self)
        if self.batch_max < 1 or self.batch_wait_ms < 0:
            raise SettingError(f"RECSYS_BATCH_MAX={self.batch_max} / RECSYS_BATCH_WAIT_MS={self.batch_wait_ms:g}: "
                               "need a batch of at least 1 and a wait of at least 0 ms")


def _check_event_weights(conf: Settings) -> None:
    from app.records import EVENT_TYPES

    name = "RECSYS_EVENT_WEIGHTS" if os.environ.get("RECSYS_EVENT_WEIGHTS") is not None else "RECSYS_IMPLICIT_RATINGS"
    for part in (p.strip() for p in conf.event_weights.split(",") if p.strip()):
        event, colon, weight = part.partition(":")
        try:
            value = float(weight)
        except ValueError:
            value = None
        if not colon or event.strip() not in EVENT_TYPES - {"dislike"} or value is None:
            raise SettingError(f"{name}: {part!r} is not event:weight with event one of "
                               f"{', '.join(sorted(EVENT_TYPES - {'dislike'}))} (a dislike is never a weight)")
        if not conf.rating_min <= value <= conf.rating_max:
            raise SettingError(f"{name}: {part!r}: the weight must be on the rating scale "
                               f"[{conf.rating_min:g}, {conf.rating_max:g}]")


#: What the ALS worker may learn from (``RECSYS_ALS_FEEDBACK``).
ALS_FEEDBACK = ("auto", "explicit", "implicit")


def _check_rankers(conf: Settings) -> None:
    if conf.als_feedback not in ALS_FEEDBACK:
        raise SettingError(f"RECSYS_ALS_FEEDBACK={conf.als_feedback!r}: use one of {', '.join(ALS_FEEDBACK)}")
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


def load_settings() -> Settings:
    """Read the environment now (raises :class:`SettingError` for a value that does not parse)."""
    return Settings()


def settings_from(env: Mapping[str, str]) -> Settings:
    """The Settings a process with environment ``env`` would read (for harnesses and tests
    that configure a worker subprocess and talk to it with the same settings)."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
