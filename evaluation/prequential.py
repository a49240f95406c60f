"""The streaming (prequential, test-then-learn) evaluation.

Protocol (``recsys evaluate --protocol stream``):

* The events (ratings, or behaviour events: the event is the interaction) are sorted by
  time (stable: ties keep file order).
* Warm-up: ALS is trained on the first half of the events (the ALS worker's settings:
  :func:`offline_als.model.als_from_settings`, its top-M neighbour lists), then the
  warm-up events are applied to every ranker's state; nothing is scored. A learned
  ranker learns from the warm-up's second half with examples made by a model trained on
  its first half (the warm-up model has seen those events), then from every scored event.
* Scored half: every event (u, i, t) of a user with at least one earlier event is
  scored against the list u had from each ranker just before it (the list computed
  after u's previous event, as the agents push one per event; none = a miss), then
  applied. An event on an item u already interacted with is not scored (its share is
  ``repeat_share``). ALS is retrained on everything seen so far after each tenth of
  the scored half, as the ALS worker would.

Behaviour events get their interaction strength (``RECSYS_EVENT_WEIGHTS``, the weights
the worker gives them) as their "rating": the explicit ALS and the paper's formula both
need one; event types without a weight are not interactions, as in the worker.
"""
from __future__ import annotations

import collections
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from app.settings import Settings
from datatools.catalogue import catalogue_for, names_file_for
from datatools.datasets import FORMATS, SCALES, iter_rows, load_ratings
from learner.online import OnlineLearner
from offline_als.als import available_cpus, ratings_to_csr
from offline_als.model import als_from_settings, times_csr, train_and_similar
from ranking import Interaction, Ranker
from ranking.content import CatalogueText, catalogue_text
from ranking.features import FEATURES, Context, KeptCandidates
from ranking.learned import LearnedRanker
from ranking.model import SimilarityIndex
from ranking.paper import high_rating_cut
from tables.state import UserState

from .baselines import RANKER_NAMES, make_rankers
from .rankers import TOP_N, HotWindow, Interactions, SharedState, TopCounter

#: How many ALS retrains over the scored half.
RETRAINS = 10
#: Events between two looks for quiet users (``RECSYS_USER_TTL_DAYS``).
EXPIRY_EVERY = 1000
#: Bins of the HR-over-time plot.
TIME_BINS = 20


def _progress(it, progress: bool, **kw):
    if not progress:
        return it
    from tqdm import tqdm

    return tqdm(it, file=sys.stderr, leave=False, mininterval=0.5, **kw)


@dataclass
class Stream:
    """Events in time order: string ids, a rating (or event strength) and a time."""

    users: list
    items: list
    ratings: np.ndarray
    ts: np.ndarray
    scale: tuple[float, float]
    skipped: dict = field(default_factory=dict)
    #: Behaviour events (views, carts, ...), not ratings: ALS learns them as implicit feedback.
    behaviour: bool = False
    #: Each behaviour event's type (``view``, ``cart``, ...); empty for ratings.
    events: list = field(default_factory=list)
    #: The catalogue's words per item (names, categories: ``ranking/content.py``); empty: none.
    texts: dict = field(default_factory=dict)
    #: The catalogue's category per item (those with one).
    categories: dict = field(default_factory=dict)
    #: The catalogue is the events' own (no names file): an item is in it from its first event.
    catalogue_from_events: bool = False

    def __len__(self) -> int:
        return len(self.users)

    def head(self, n: int) -> Stream:
        return Stream(self.users[:n], self.items[:n], self.ratings[:n], self.ts[:n], self.scale, self.skipped,
                      self.behaviour, self.events[:n], self.texts, self.categories, self.catalogue_from_events)


def load_stream(path, fmt: str, *, conf: Settings, progress: bool = True) -> Stream:
    """Any rating or behaviour format as one time-ordered :class:`Stream` (behaviour events
    weighted by ``conf.event_weight_map()`` on the scale ``conf.input.rating_min..rating_max``),
    with the words and categories of the catalogue ``recsys load`` would publish for it."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if FORMATS[fmt].kind == "ratings":
        data = load_ratings(path, fmt, progress=progress).sorted_by_time()
        users, items = [str(x) for x in data.users], [str(x) for x in data.items]
        ratings, ts, skipped = data.ratings.astype(np.float64), data.ts, dict(data.skipped)
        scale = SCALES.get(fmt) or ((float(ratings.min()), float(ratings.max())) if len(ratings) else (1.0, 5.0))
    else:
        counter: collections.Counter = collections.Counter()
        weights = conf.event_weight_map()
        rows = [r for r in iter_rows(path, fmt, skipped=counter, progress=progress) if r.item and r.event in weights]
        order = np.argsort(np.array([r.ts for r in rows], dtype=np.float64), kind="stable")
        rows = [rows[j] for j in order]
        users, items = [r.user for r in rows], [r.item for r in rows]
        ratings = np.array([weights[r.event] for r in rows], dtype=np.float64)
        ts, skipped = np.array([r.ts for r in rows], dtype=np.float64), dict(counter)
        scale = (conf.input.rating_min, conf.input.rating_max)
        events = [r.event for r in rows]
    if not users:
        raise ValueError(f"no events in {path} (skipped: {skipped})")
    catalogue = catalogue_for(path, fmt)
    texts = {item: words for item, entry in catalogue.items() if (words := catalogue_text(entry)).strip()}
    return Stream(users, items, ratings, ts, (float(scale[0]), float(scale[1])), skipped,
                  behaviour=FORMATS[fmt].kind != "ratings", events=events if FORMATS[fmt].kind != "ratings" else [],
                  texts=texts, categories={item: entry["category"] for item, entry in catalogue.items() if entry["category"]},
                  catalogue_from_events=bool(catalogue) and names_file_for(path, fmt) is None)


def listed_by(stream: Stream, n: int) -> set | None:
    """The items the catalogue holds after the first ``n`` events: all of it (None) when a
    names file lists them, else those the events have named so far."""
    return set(stream.items[:n]) if stream.catalogue_from_events else None


def interactions(stream: Stream, n: int, window_days: float = 0.0) -> Interactions:
    """The first ``n`` events as the baselines learn from them (:class:`Interactions`); with
    ``window_days``, only those of the last that many days before the ``n``-th, as the model
    worker keeps them (``RECSYS_MODEL_WINDOW_DAYS``)."""
    if window_days > 0 and n:
        start = int(np.searchsorted(stream.ts[:n], stream.ts[n - 1] - window_days * 86400.0, side="left"))
        if start:
            return interactions(Stream(stream.users[start:n], stream.items[start:n], stream.ratings[start:n],
                                       stream.ts[start:n], stream.scale, behaviour=stream.behaviour), n - start)
    users, items = stream.users[:n], stream.items[:n]
    user_ids, uidx = np.unique(np.array(users, dtype=str), return_inverse=True)
    item_ids, iidx = np.unique(np.array(items, dtype=str), return_inverse=True)
    uidx, iidx = uidx.ravel(), iidx.ravel()
    X = sp.csr_matrix((np.ones(n), (uidx, iidx)), shape=(len(user_ids), len(item_ids)))
    X.data[:] = 1.0  # a user had the item (however often)
    order = np.argsort(uidx, kind="stable")  # events are in time order: stable keeps it per user
    bounds = np.searchsorted(uidx[order], np.arange(len(user_ids) + 1))
    sequences = [iidx[order[bounds[u]:bounds[u + 1]]] for u in range(len(user_ids))]
    last_seen = np.full(len(item_ids), -np.inf)
    np.maximum.at(last_seen, iidx, stream.ts[:n])
    R = ratings_to_csr(uidx, iidx, stream.ratings[:n], shape=(len(user_ids), len(item_ids)))
    T = times_csr(uidx, iidx, R.shape, stream.ts[:n])
    return Interactions(user_ids=user_ids, user_index={u: j for j, u in enumerate(user_ids.tolist())},
                        item_ids=item_ids,
                        item_index={q: j for j, q in enumerate(item_ids.tolist())}, X=X, sequences=sequences,
                        last_seen=last_seen, R=R, T=T, behaviour=stream.behaviour)


def train(data: Interactions, conf: Settings):
    """The model the model worker publishes for ``data`` (its store: each pair's last rating and time)."""
    return train_and_similar(data.R, data.user_ids, data.item_ids, conf=conf,
                             als=als_from_settings(conf, progress=False, behaviour=data.behaviour), times=data.T)


@dataclass(frozen=True)
class EarlierModel:
    """What the learned ranker reads to make examples (``index``, ``context``), with the
    index of an earlier model and everything else as ``shared`` has it now."""

    shared: SharedState
    index: SimilarityIndex

    @property
    def context(self) -> Context:
        return self.shared.context

    @property
    def hot_items(self) -> list[str]:
        return self.shared.hot_items


@dataclass
class Tally:
    """Per-ranker accumulators over the scored events."""

    ranks: list = field(default_factory=list)  # 1-based hit position, 0 = miss, one per scored event
    items: set = field(default_factory=set)
    pop_ranks: list = field(default_factory=list)
    changes: list = field(default_factory=list)
    seconds: float = 0.0
    timed_events: int = 0


def run_stream(stream: Stream, conf: Settings, *, rankers: Mapping[str, Ranker] | None = None,
               progress: bool = True, warm_share: float = 0.5, retrains: int = RETRAINS,
               train_model: bool = True) -> dict:
    """Run the protocol over ``stream`` with ``rankers`` (by name; default: every one of
    :func:`evaluation.baselines.make_rankers`); returns the raw result (see :func:`summarise`).

    Each ranker keeps a ``UserState`` per user and takes every event through
    ``UserState.apply``, as the realtime agent does (the event's position is its offset).
    A list is made only where a later event of its user reads it (on the Taobao stream,
    one in five scored events): each user's last list is never read. The cost per event
    and the list churn are measured over the lists made.
    """
    n = len(stream)
    n_warm = int(n * warm_share)
    if n_warm < 1 or n - n_warm < 1:
        raise ValueError(f"{n} events: too few for a warm-up and a scored half")
    rankers = dict(rankers) if rankers is not None else make_rankers(conf, high_rating_cut(*stream.scale))
    shared = SharedState(TopCounter(), HotWindow(conf.behaviour.hopping_size_s, conf.behaviour.hopping_step_s, conf.behaviour.hot_items),
                         text=CatalogueText(stream.texts) if stream.texts else None,
                         cold_item_min=conf.ranking.cold_item_min, categories=stream.categories)
    shared.fit_for(rankers.values())
    learners = learners_for(rankers, conf)
    shared.keep_sources = bool(learners)
    t0 = time.perf_counter()
    data = interactions(stream, n_warm, conf.als.window_days)
    shared.set_model(train(data, conf) if train_model else None, data, listed_by(stream, n_warm))
    train_s = [time.perf_counter() - t0]
    selections = [_selection(shared.model)]
    # The warm-up model has seen every warm-up event: candidates it makes for them hold
    # the answer (its lists learnt the very pair), and a learner taught by them learns to
    # trust that. The worker's examples come from a model trained on the past only, so the
    # warm-up's second half teaches the learners with a model of its first half.
    n_early, earlier = n_warm // 2, None
    if learners and train_model and n_early > 0:
        earlier = EarlierModel(shared, train(interactions(stream, n_early, conf.als.window_days), conf)
                               .index(keep_sources=True))
    read_later = lists_read_later(stream.users, n_warm)
    first_at = first_events(stream.items)
    pop_rank = _final_popularity_rank(stream)
    interacted: dict[str, set] = {}  # every item of each user so far: lists never hold one
    states: dict[str, dict[str, UserState]] = {name: {} for name in rankers}
    lists: dict[str, dict[str, list]] = {name: {} for name in rankers}
    tally = {name: Tally() for name in rankers}
    scored_ts, new_item, n_repeat, n_known, users_scored = [], [], 0, 0, set()
    last_seen: dict[str, float] = {}
    ttl_s = conf.worker.user_ttl_days * 86400.0
    cuts = {n_warm + (n - n_warm) * c // retrains for c in range(1, retrains)}
    blas = ThreadpoolController()
    # A step's products are small: BLAS threads only add overhead (and on 2 busy cores,
    # waits). Fits get every CPU back.
    one_thread = blas.limit(limits=1, user_api="blas")
    try:
        for j in _progress(range(n), progress, desc="stream", unit="ev", total=n):
            u, i, r, t = stream.users[j], stream.items[j], float(stream.ratings[j]), float(stream.ts[j])
            seen = interacted.get(u)
            scoring = j >= n_warm
            if scoring and seen is not None:  # test ...
                n_known += 1
                if i in seen:
                    n_repeat += 1
                else:
                    users_scored.add(u)
                    scored_ts.append(t)
                    new_item.append(first_at[i] >= n_warm)
                    for name in rankers:
                        lst = lists[name].get(u, [])
                        tl = tally[name]
                        tl.ranks.append(lst.index(i) + 1 if i in lst else 0)
                        tl.items.update(lst)
                        tl.pop_ranks.extend(pop_rank[q] for q in lst)
            if seen is None:  # ... then learn
                seen = interacted[u] = set()
            seen.add(i)
            shared.observe(i, t)
            interaction = Interaction(u, i, r, t, event=stream.events[j] if stream.events else "rating")
            emit = read_later[j]
            shared.lists_read = emit
            for name, ranker in rankers.items():
                s = time.perf_counter()
                state = states[name].get(u)
                if state is None:
                    state = states[name][u] = UserState()
                learner = learners.get(name)
                if learner is not None:  # test (the examples scored first), then learn
                    shared.learned = learner.serving
                    made = learner.made.take(u, state.offset)
                    examples = (ranker.examples(state, interaction, shared, made=made) if scoring
                                else ranker.examples(state, interaction, earlier) if earlier and j >= n_early
                                else None)
                    if examples is not None:
                        learner.learn(examples)
                    shared.learned = learner.serving
                _changed, step = state.apply(j, ranker, interaction, shared)
                if learner is not None:
                    learner.made.put(u, state.offset, step.made)
                new = [q for q, _s in state.last_list if q not in seen][:TOP_N] if emit else None
                if scoring and emit:
                    tl = tally[name]
                    tl.seconds += time.perf_counter() - s
                    tl.timed_events += 1
                    old = lists[name].get(u)
                    if old and new:
                        before = set(old)
                        tl.changes.append(sum(1 for q in new if q not in before) / len(new))
                if emit:
                    lists[name][u] = new
            last_seen[u] = t
            if ttl_s and j % EXPIRY_EVERY == 0:  # RECSYS_USER_TTL_DAYS: quiet users start afresh
                expire_quiet(states, lists, last_seen, t - ttl_s)
            if j + 1 in cuts:  # the ALS worker's retrain on everything seen so far
                s = time.perf_counter()
                data = interactions(stream, j + 1, conf.als.window_days)
                with blas.limit(limits=available_cpus(), user_api="blas"):
                    shared.set_model(train(data, conf) if train_model else None, data, listed_by(stream, j + 1))
                train_s.append(time.perf_counter() - s)
                selections.append(_selection(shared.model))
    finally:
        one_thread.restore_original_limits()
    return {"tally": tally, "n_events": n, "learners": {name: learner_summary(lr) for name, lr in learners.items()}, "n_warm": n_warm, "n_known": n_known, "n_repeat": n_repeat,
            "users": len(users_scored), "scored_ts": np.asarray(scored_ts), "catalogue": len(pop_rank),
            "new_item": np.asarray(new_item, dtype=bool),
            "train_seconds": train_s, "names": list(rankers), "scale": stream.scale, "selections": selections}


class EvaluationLearner(OnlineLearner):
    """The learner of one learned ranker of the run, as ``recsys learner`` runs it, with
    the candidates each user's list was made from, as a worker keeps them (``made``)."""

    def __init__(self, *args, kept_users: int = 20_000, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.made = KeptCandidates(kept_users)


def learners_for(rankers: Mapping[str, Ranker], conf: Settings) -> dict[str, EvaluationLearner]:
    """One learner per learned ranker of the run."""
    return {name: EvaluationLearner(FEATURES, dict(ranker.objective), every=conf.learner.every_examples,
                                    window=conf.learner.window, kept_users=conf.ranking.learned_kept_users,
                                    name=name)
            for name, ranker in rankers.items() if isinstance(ranker, LearnedRanker)}


def learner_summary(learner: OnlineLearner) -> dict:
    """What a learner did over the run: versions shipped and refused, the serving set's numbers."""
    serving = learner.serving
    return {"versions": learner.versions, "rejected": learner.refused, "examples": learner.examples_learnt,
            "serving": serving.validation if serving is not None else None}


def lists_read_later(users, n_warm: int) -> np.ndarray:
    """Whether the list left by each event is read: the user's next event is scored (at or
    after ``n_warm``). Nobody reads the list of a user's last event, nor one a later warm-up
    event replaces."""
    read = np.zeros(len(users), dtype=bool)
    next_event: dict[str, int] = {}
    for j in range(len(users) - 1, -1, -1):
        u = users[j]
        read[j] = next_event.get(u, -1) >= n_warm
        next_event[u] = j
    return read


def expire_quiet(states: Mapping[str, dict], lists: Mapping[str, dict], last_seen: dict[str, float],
                 before: float) -> int:
    """Forget every ranker's state and list of the users last seen before ``before``, as a
    worker removes them (``agents/expiry.py``); returns how many users."""
    quiet = [u for u, t in last_seen.items() if t < before]
    for u in quiet:
        del last_seen[u]
        for by_user in (*states.values(), *lists.values()):
            by_user.pop(u, None)
    return len(quiet)


def first_events(items: Sequence[str]) -> dict[str, int]:
    """Item -> the position of its first event (items first seen in the scored half are
    the new items ``hr_at_10_new_items`` is measured on)."""
    first: dict[str, int] = {}
    for j, q in enumerate(items):
        first.setdefault(q, j)
    return first


def _selection(trained) -> dict | None:
    """The blend a retrain chose for the default ranker, as the model worker publishes it."""
    selection = getattr(trained, "selection", None)
    return selection.as_dict() if selection is not None else None


def _final_popularity_rank(stream: Stream) -> dict[str, int]:
    """Item -> its popularity rank over the whole file (1 = most interacted; ties by id),
    catalogue items nobody had included (the content recall may list them): last."""
    counts = collections.Counter(dict.fromkeys(stream.texts, 0))
    counts.update(stream.items)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {item: pos + 1 for pos, (item, _c) in enumerate(ranked)}


def hit_arrays(ranks: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scored event: HR@10, NDCG@10, MRR@10 (one relevant item: NDCG = 1/log2(pos+1))."""
    r = np.asarray(ranks, dtype=np.float64)
    hit = (r > 0) & (r <= TOP_N)
    safe = np.where(hit, r, 1.0)
    return hit.astype(float), np.where(hit, 1.0 / np.log2(safe + 1.0), 0.0), np.where(hit, 1.0 / safe, 0.0)


def summarise(raw: dict) -> dict:
    """The JSON line: every metric as a map ranker -> value (its keys are a public format)."""
    names = raw["names"]
    out = {"protocol": "stream", "events_scored": len(raw["scored_ts"]), "users": raw["users"],
           "repeat_share": raw["n_repeat"] / raw["n_known"] if raw["n_known"] else 0.0}
    new_item = raw.get("new_item", np.zeros(0, dtype=bool))
    out["events_new_items"] = int(new_item.sum())
    for key in ("hr_at_10", "hr_at_10_new_items", "ndcg_at_10", "mrr_at_10", "coverage", "novelty", "change_rate",
                "us_per_event"):
        out[key] = {}
    for name in names:
        tl = raw["tally"][name]
        hr, ndcg, mrr = hit_arrays(tl.ranks)
        out["hr_at_10"][name] = float(hr.mean()) if hr.size else 0.0
        out["hr_at_10_new_items"][name] = float(hr[new_item].mean()) if new_item.any() else None
        out["ndcg_at_10"][name] = float(ndcg.mean()) if ndcg.size else 0.0
        out["mrr_at_10"][name] = float(mrr.mean()) if mrr.size else 0.0
        out["coverage"][name] = len(tl.items) / raw["catalogue"] if raw["catalogue"] else 0.0
        out["novelty"][name] = float(np.mean(tl.pop_ranks)) if tl.pop_ranks else None
        out["change_rate"][name] = float(np.mean(tl.changes)) if tl.changes else None
        out["us_per_event"][name] = 1e6 * tl.seconds / tl.timed_events if tl.timed_events else None
    return out


def bootstrap_diff(a: np.ndarray, b: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same events and its 95% bootstrap interval (events resampled)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = np.array([d[rng.integers(0, d.size, d.size)].mean() for _ in range(n_boot)])
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def compare_default(raw: dict, n_boot: int = 1000) -> dict:
    """``default`` against the best baseline (the learned ranker, built on it, left out)."""
    return compare_to_best(raw, "default", leave_out=("learned",), n_boot=n_boot)


def compare_to_best(raw: dict, name: str, leave_out=(), n_boot: int = 1000) -> dict:
    """Ranker ``name`` against the best other one (but ``leave_out``) on HR@10 and NDCG@10,
    with 95% bootstrap intervals of the difference."""
    res = {}
    for metric, pos in (("hr_at_10", 0), ("ndcg_at_10", 1)):
        per = {n: hit_arrays(raw["tally"][n].ranks)[pos] for n in raw["names"] if n not in leave_out or n == name}
        if name not in per:
            continue
        base = max((n for n in per if n != name), key=lambda n: per[n].mean(), default=None)
        if base is None:
            continue
        diff, lo, hi = bootstrap_diff(per[name], per[base], n_boot=n_boot)
        best = per[base].mean()
        res[metric] = {"best_baseline": base, name: float(per[name].mean()), "ranker": name, "baseline": float(best),
                       "diff": diff, "ci95": [lo, hi], "relative": diff / best if best > 0 else None,
                       "ratio": float(per[name].mean() / best) if best > 0 else None}
    return res


def evaluate_stream(input_path, fmt: str, *, conf: Settings, out_dir="eval-out", progress: bool = True,
                    say=lambda msg: None) -> dict:
    """Load, tune the baselines on the warm-up half (``evaluation.tuning``), run, write
    ``report.md`` and the plots; returns ``(summary, paths)``. The summary's ``tuned``
    holds each baseline's chosen parameters."""
    from .stream_report import write_stream_report
    from .tuning import tune

    t0 = time.perf_counter()
    stream = load_stream(input_path, fmt, conf=conf, progress=progress)
    tuned = tune(stream, conf, progress=progress, say=say)
    tune_s = time.perf_counter() - t0
    say(f"tuned in {tune_s:.0f} s; now every ranker over the whole stream")
    rankers = make_rankers(conf, high_rating_cut(*stream.scale), {f: t["params"] for f, t in tuned.items()})
    raw = run_stream(stream, conf, rankers=rankers, progress=progress)
    summary = summarise(raw)
    summary["tuned"] = {f: t["params"] for f, t in tuned.items()}
    extra = {"input": str(input_path), "format": fmt, "events": len(stream), "skipped": stream.skipped,
             "comparison": compare_default(raw), "learned_comparison": compare_to_best(raw, "learned"),
             "learners": raw["learners"], "tuning": tuned, "tuning_seconds": tune_s,
             "blends": raw["selections"],
             "seconds": time.perf_counter() - t0}
    paths = write_stream_report(summary, raw, extra, out_dir)
    return summary, paths


# --------------------------------------------------------------------------- validation
def validate(input_path, fmt: str, candidates: Mapping[str, Ranker], *, conf: Settings,
             progress: bool = True) -> dict:
    """The protocol on the warm-up half only (its first half warms up, its second is scored),
    one run for all ``candidates`` (by name: variants of ``ranking.DefaultRanker``) and two
    baselines; returns the JSON summary. Used to choose the default ranker's parameters;
    never sees the scored half."""
    from .rankers import ItemKNN, Popularity

    stream = load_stream(input_path, fmt, conf=conf, progress=progress)
    warm = stream.head(len(stream) // 2)
    rankers = {**candidates, "popularity": Popularity.from_settings(conf), "item_knn": ItemKNN.from_settings(conf)}
    raw = run_stream(warm, conf, rankers=rankers, progress=progress)
    return summarise(raw)


__all__ = [
    "RANKER_NAMES",
    "bootstrap_diff",
    "compare_default",
    "compare_to_best",
    "evaluate_stream",
    "hit_arrays",
    "load_stream",
    "run_stream",
    "summarise",
    "validate",
]
