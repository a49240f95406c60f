"""What the frontend knows, kept in memory and free of I/O (``web/server.py`` feeds it).

- the latest list of every user (and a few before it, for the join below);
- **online evaluation**: every event of a user is joined with the list that user had
  just before it (the newest list emitted at or before the event reached the broker):
  a *hit* when the event's item was in that list. Hit rates are kept per ranker variant,
  per model version and per event type, each with a Wilson 95% interval;
- **A/B assignment**: ``ranking.ab.parse_ab`` reads ``RECSYS_AB=default:50,paper:50`` and
  :func:`assign_variant` puts a user in an arm by a stable hash of the user id (the same
  answer in every process, on every machine, for ever: no ``hash()``, no seed);
- the dashboard's counters: lists per second, produce-to-list latency percentiles, dead
  letters by reason, hot items, the catalogue (names and categories of items).

Time is always passed in (``now``, ``at``), so every rule here is testable without sleeping.
Timestamps are wall-clock seconds: a list's ``emitted_at`` (the worker's clock) and an
event's broker timestamp (the producer's clock) are compared, so the clocks of the
machines must agree to well under the time a person takes to click.
"""
from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# A/B assignment lives with the rankers: the worker assigns, the page reads the variant.
from app.metrics import Metrics
from ranking.ab import assign_variant

#: z of a two-sided 95% interval.
Z95 = 1.959963984540054
#: Events without an item (``search``) cannot hit a list.
NO_ITEM_EVENTS = frozenset({"search"})


# ------------------------------------------------------------------- statistics
def wilson_interval(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``hits / n``; ``(0, 1)`` when ``n == 0``."""
    if n <= 0:
        return 0.0, 1.0
    p = hits / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in [0, 100]) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class HitCount:
    n: int = 0
    hits: int = 0

    def row(self) -> dict:
        lo, hi = wilson_interval(self.hits, self.n)
        return {"n": self.n, "hits": self.hits, "hit_rate": (self.hits / self.n) if self.n else None,
                "ci_low": lo, "ci_high": hi}


# ------------------------------------------------------------------ the join
def list_items(rec: dict) -> list[str]:
    """Item ids of a list, best first (entries are ``[item, score, ...]`` or ``{"item": ...}``)."""
    out = []
    for entry in rec.get("items") or ():
        if isinstance(entry, dict):
            out.append(str(entry.get("item")))
        elif isinstance(entry, (list, tuple)) and entry:
            out.append(str(entry[0]))
        else:
            out.append(str(entry))
    return out


def list_before(history: Iterable[dict], at: float) -> dict | None:
    """The newest list of ``history`` emitted at or before ``at`` (None if there is none)."""
    best = None
    for rec in history:
        emitted = float(rec.get("emitted_at") or 0.0)
        if emitted <= at and (best is None or emitted >= float(best.get("emitted_at") or 0.0)):
            best = rec
    return best


@dataclass
class JoinResult:
    """One event joined with the list before it (``rec`` None: the user had none)."""

    user: str
    item: str
    event: str
    at: float
    rec: dict | None
    hit: bool
    variant: str
    model_version: str
    position: int | None = None  # 0-based rank of the item in that list


def natural_key(text: str) -> tuple:
    """``"i10"`` after ``"i9"``: digits compare as numbers."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", text) if part)


# ------------------------------------------------------------------ the state
@dataclass
class LiveState:
    """Everything the web service shows, fed by its consumers.

    ``arms``: the A/B arms (:func:`parse_ab`); the variant of a list is its own
    ``"variant"`` field when present, else the arm of its user, else ``default_variant``.
    ``grace_s``: events wait this long before they are joined, so that a list emitted
    just before an event but read after it (another topic, another partition) is seen.
    ``started_at``: lists emitted before it (read back from the compacted topic at
    start) fill the cache but not the rates and latencies.
    """

    arms: list = field(default_factory=list)
    default_variant: str = "default"
    history: int = 8
    grace_s: float = 1.0
    rate_window_s: float = 10.0
    latency_window_s: float = 60.0
    hot_window_s: float = 300.0
    started_at: float = 0.0

    def __post_init__(self) -> None:
        self.lists: dict[str, collections.deque] = {}
        self.pending: collections.deque = collections.deque()  # (at, user, item, event), oldest first
        self.hits: dict[tuple[str, str, str], HitCount] = collections.defaultdict(HitCount)
        self.unjoined: collections.Counter = collections.Counter()  # event -> count without a list before
        self.lists_total = 0
        self.lists_live = 0
        self.list_arrivals: collections.deque = collections.deque(maxlen=100_000)  # arrival times
        # (arrival, emitted - produced, arrival - produced) in seconds, of live lists
        self.latencies: collections.deque = collections.deque(maxlen=20_000)
        self.dead_letters: collections.Counter = collections.Counter()
        self.item_events: collections.deque = collections.deque(maxlen=200_000)  # (at, item)
        self.catalogue: dict[str, dict] = {}
        self.seen_items: dict[str, None] = {}  # insertion-ordered ids seen in lists and events
        self.model_version = ""
        self.events_total: collections.Counter = collections.Counter()
        #: What ``GET /metrics`` of ``recsys web`` exposes (counters and latency histograms).
        self.metrics = Metrics()

    # ------------------------------------------------------------- lists
    def variant_of(self, rec: dict | None, user: str) -> str:
        if rec is not None and rec.get("variant"):
            return str(rec["variant"])
        return assign_variant(user, self.arms, self.default_variant)

    def add_list(self, rec: dict, arrival: float) -> bool:
        """Keep ``rec`` as its user's latest list; True when it is a live one (emitted since start)."""
        user = str(rec.get("user", ""))
        history = self.lists.get(user)
        if history is None:
            history = self.lists[user] = collections.deque(maxlen=self.history)
        history.append(rec)
        self.lists_total += 1
        self.metrics.count("lists.received")
        for item in list_items(rec):
            self.seen_items.setdefault(item, None)
        if rec.get("model_version"):
            self.model_version = str(rec["model_version"])
        emitted = float(rec.get("emitted_at") or 0.0)
        live = emitted >= self.started_at
        if live:
            self.lists_live += 1
            self.list_arrivals.append(arrival)
            produced = float(rec.get("produced_at") or 0.0)
            if produced > 0:
                self.latencies.append((arrival, emitted - produced, arrival - produced))
                self.metrics.observe_ms("list", (emitted - produced) * 1000.0)
                self.metrics.observe_ms("frontend", (arrival - produced) * 1000.0)
        return live

    def forget(self, user: str) -> None:
        """A tombstone on ``recommendations``: the user's list was deleted (an expired user)."""
        self.lists.pop(user, None)

    def latest(self, user: str) -> dict | None:
        history = self.lists.get(user)
        if not history:
            return None
        return max(history, key=lambda r: float(r.get("emitted_at") or 0.0))

    # ------------------------------------------------------------- events
    def add_event(self, user: str, item: str, event: str, at: float) -> None:
        """An event (or explicit rating, ``event="rating"``) that reached the broker at ``at``;
        joined by :meth:`settle` once ``grace_s`` has passed."""
        self.events_total[event] += 1
        self.metrics.count(f"events_seen.{event}")
        if item:
            self.item_events.append((at, item))
            self.seen_items.setdefault(item, None)
        if not item or event in NO_ITEM_EVENTS:
            return
        self.pending.append((at, user, item, event))

    def settle(self, now: float) -> list[JoinResult]:
        """Join every pending event that reached the broker ``grace_s`` or more before ``now``."""
        done = []
        while self.pending and self.pending[0][0] <= now - self.grace_s:
            at, user, item, event = self.pending.popleft()
            done.append(self.join(user, item, event, at))
        if len(self.pending) > 1_000_000:  # a clock far behind: never hold memory for ever
            while len(self.pending) > 500_000:
                at, user, item, event = self.pending.popleft()
                done.append(self.join(user, item, event, at))
        return done

    def join(self, user: str, item: str, event: str, at: float) -> JoinResult:
        rec = list_before(self.lists.get(user, ()), at)
        if rec is None:
            self.unjoined[event] += 1
            return JoinResult(user, item, event, at, None, False, self.variant_of(None, user), "")
        items = list_items(rec)
        hit = item in items
        variant, version = self.variant_of(rec, user), str(rec.get("model_version") or "")
        self.hits[(variant, version, event)].n += 1
        self.hits[(variant, version, event)].hits += hit
        return JoinResult(user, item, event, at, rec, hit, variant, version, items.index(item) if hit else None)

    def evaluation(self) -> dict:
        """Hit rates with Wilson 95% intervals: by variant, by (variant, model version),
        by (variant, event); plus the events that found no list before them."""
        groups: dict[str, dict[tuple, HitCount]] = {"by_variant": {}, "by_version": {}, "by_event": {}}
        for (variant, version, event), c in self.hits.items():
            for name, key in (("by_variant", (variant,)), ("by_version", (variant, version)),
                              ("by_event", (variant, event))):
                total = groups[name].setdefault(key, HitCount())
                total.n += c.n
                total.hits += c.hits
        labels = {"by_variant": ("variant",), "by_version": ("variant", "model_version"),
                  "by_event": ("variant", "event")}
        out: dict = {name: [{**dict(zip(labels[name], key, strict=False)), **c.row()} for key, c in sorted(rows.items())]
                     for name, rows in groups.items()}
        out["unjoined"] = dict(self.unjoined)
        out["pending"] = len(self.pending)
        return out

    # ------------------------------------------------------------- the rest
    def add_dead_letter(self, reason: str) -> None:
        self.dead_letters[reason or "unknown"] += 1
        self.metrics.count(f"dead_letters_seen.{reason or 'unknown'}")

    def add_item(self, item: str, name: str | None, category: str | None) -> None:
        """An entry of the ``items`` topic (``name`` None: a tombstone removed it)."""
        if name is None and category is None:
            self.catalogue.pop(item, None)
            return
        self.catalogue[item] = {"item": item, "name": name or item, "category": category or ""}

    def describe(self, item: str) -> dict:
        return self.catalogue.get(item) or {"item": item, "name": item, "category": ""}

    def hot_items(self, now: float, n: int = 10) -> list[dict]:
        while self.item_events and self.item_events[0][0] < now - self.hot_window_s:
            self.item_events.popleft()
        counts = collections.Counter(item for _, item in self.item_events)
        return [{**self.describe(item), "events": c} for item, c in counts.most_common(n)]

    def lists_per_second(self, now: float) -> float:
        since = now - self.rate_window_s
        return sum(1 for t in self.list_arrivals if since < t <= now) / self.rate_window_s

    def latency(self, now: float) -> dict:
        """p50/p99 (ms) over the last ``latency_window_s`` of live lists: produce-to-list
        (``emitted_at - produced_at``, the worker's view) and produce-to-frontend
        (arrival here ``- produced_at``)."""
        since = now - self.latency_window_s
        recent = [(e, a) for t, e, a in self.latencies if t > since]
        out = {"samples": len(recent)}
        for name, values in (("list", [e for e, _ in recent]), ("frontend", [a for _, a in recent])):
            for q in (50, 99):
                p = percentile(values, q)
                out[f"{name}_p{q}_ms"] = None if p is None else round(p * 1000.0, 1)
        return out

    def enrich(self, rec: dict) -> dict:
        """A list as the page shows it: names, categories and the ranker's reasons
        (``because``: item -> the recent item that put it there, shown by its name)."""
        because = rec.get("because") if isinstance(rec.get("because"), dict) else {}
        items = []
        for entry in rec.get("items") or ():
            item = str(entry[0])
            score = entry[1] if len(entry) > 1 else None
            source = because.get(item)
            why = f"because you had {self.describe(str(source))['name']}" if source is not None else None
            items.append({**self.describe(item), "score": score, "why": why})
        user = str(rec.get("user", ""))
        return {"user": user, "items": items, "model_version": rec.get("model_version", ""),
                "variant": self.variant_of(rec, user), "reason": rec.get("reason", ""),
                "emitted_at": rec.get("emitted_at"), "produced_at": rec.get("produced_at"),
                "trigger_ts": rec.get("trigger_ts")}

    def catalogue_items(self, limit: int = 200) -> list[dict]:
        """The catalogue (``items`` topic), else every item id seen so far."""
        if self.catalogue:
            ids = sorted(self.catalogue, key=lambda i: (self.catalogue[i]["category"], natural_key(i)))
        else:
            ids = sorted(self.seen_items, key=natural_key)
        return [self.describe(i) for i in ids[:limit]]

    def search(self, query: str, limit: int = 50) -> list[str]:
        """Items whose name or category holds every word of ``query`` (case-insensitive),
        in catalogue order: what a shop's search engine would return, unpersonalised."""
        words = query.lower().split()
        if not words:
            return []
        entries = [self.describe(i) for i in (self.catalogue or self.seen_items)]
        hits = [e for e in entries if all(w in f"{e['name']} {e['category']} {e['item']}".lower() for w in words)]
        hits.sort(key=lambda e: (e["category"], natural_key(e["item"])))
        return [e["item"] for e in hits[:limit]]

    def catalogue_size(self) -> int:
        """How many items :meth:`catalogue_items` chooses from (not its page's cap)."""
        return len(self.catalogue) if self.catalogue else len(self.seen_items)

    def users(self, limit: int = 200) -> list[str]:
        return sorted(self.lists)[:limit]

    def snapshot(self, now: float) -> dict:
        return {"now": now, "lists_total": self.lists_total, "lists_live": self.lists_live,
                "users": len(self.lists), "lists_per_s": round(self.lists_per_second(now), 2),
                "latency": self.latency(now), "dead_letters": dict(self.dead_letters),
                "model_version": self.model_version, "hot_items": self.hot_items(now),
                "events_seen": dict(self.events_total), "evaluation": self.evaluation(),
                "ab": [{"variant": n, "weight": w} for n, w in self.arms]}
