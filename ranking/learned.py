"""The learned ranker (``RECSYS_RANKER=learned``): the recall ranker's candidates, ordered
by a model that learns from every event.

On an interaction the user's history is updated as the default ranker's; the
candidates (``ranking/features.py``: the default ranker's top ``recall.k`` and the hot
items) get their features, and each is scored by the serving weight set
(:class:`LearnedWeights`, published by the learner on ``ranker-model``):

    score(q) = sum over tasks t of objective[t] * sigmoid(w_t . x(q) + b_t[q])

one logistic head per task (``interaction``: any event; ``conversion``: a cart or a
purchase, or a rating above the middle of the scale), weighed by ``RECSYS_OBJECTIVE``,
which the shop changes without retraining. Without weights (cold start, or a set made
for other features) the list is the recall ranker's.

Every interaction also labels what the user was offered just before it
(:meth:`LearnedRanker.examples`): the candidates the user's list was made from, with
the features they had then (the step returns them, ``Step.made``; the caller keeps them,
``ranking.features.KeptCandidates``, or they are recomputed from the user's state before
the event); the item the user took is the positive, the candidates in
the user's list the negatives that were shown and skipped (weight ``skipped_weight``),
and a seeded sample of ``negatives`` of the other candidates the negatives never shown,
each weighing for the never-shown candidates it was drawn from (weight = their number /
``negatives``): a shown-and-skipped candidate counts ``skipped_weight`` times one never
shown, and the rates the heads learn are those of all the candidates, not of the sample.
"""
from __future__ import annotations

import math
import weakref
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat

import numpy as np

from ranking.batch import by_score_within_rows
from ranking.decimals import rounded
from ranking.default import DefaultRanker
from ranking.features import (
    BASE_FEATURES,
    FEATURES,
    Candidates,
    Context,
    candidates,
    candidates_many,
    crossed_dot,
    event_of,
    features,
    with_crosses,
)
from ranking.history import advanced, is_replay
from ranking.protocol import History, Interaction, Ranker, Step
from ranking.rerank import reranked

#: The learned heads, in order.
TASKS = ("interaction", "conversion")
#: Events that are conversions (a rating is one above the middle of the scale).
CONVERSIONS = frozenset({"cart", "purchase"})


def parse_objective(spec: str) -> dict[str, float]:
    """``"interaction:1,conversion:4"`` as ``{task: weight}`` (unnamed tasks weigh 0);
    raises ``ValueError`` on an unknown task or a weight that is not a finite number >= 0."""
    out = dict.fromkeys(TASKS, 0.0)
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        task, _colon, weight = part.partition(":")
        task = task.strip()
        if task not in TASKS:
            raise ValueError(f"objective {part!r}: the tasks are {', '.join(TASKS)}")
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"objective {part!r}: the weight is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"objective {part!r}: a weight is a finite number >= 0")
        out[task] = value
    if not any(out.values()):
        raise ValueError(f"objective {spec!r}: at least one task needs a weight above 0")
    return out


@dataclass(frozen=True)
class LearnedWeights:
    """One published weight set: per task, a weight vector over ``features`` and a bias
    per item (the items the learner has seen taken or passed over; others 0).

    Parameters
    ----------
    version : str
        The learner's name for it (every list it ranks carries it).
    features : tuple of str
        The features the weights are for; a set made for others is not used.
    heads : mapping of task -> array
        The weights of each task's logistic head, in ``features`` order.
    item_bias : mapping of task -> {item: bias}
        Each task's item biases: what the features do not say about an item lately.
    validation : dict
        The gate's numbers on the window it was published on.
    """

    version: str
    features: tuple
    heads: Mapping[str, np.ndarray]
    item_bias: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    validation: dict = field(default_factory=dict)

    def fits(self) -> bool:
        """Whether these weights are for this code's features."""
        return tuple(self.features) == FEATURES

    def logits(self, task: str, X: np.ndarray, items, rows: np.ndarray | None = None) -> np.ndarray:
        """Task ``task``'s logit of each row (``items[j]`` is row j's item; a row holds
        :data:`FEATURES`, or only their ``BASE_FEATURES``: the crosses are then folded in;
        ``rows``: the items' places in :attr:`biases`, if the caller has them)."""
        w = self.heads[task]
        out = crossed_dot(X, w) if X.shape[1] == len(BASE_FEATURES) and w.size == len(FEATURES) else X @ w
        bias = self.item_bias.get(task)
        if bias:
            if rows is None:  # a few rows (the learner's examples): from the dict, not a table of every item
                return out + np.fromiter(map(bias.get, items, repeat(0.0)), dtype=np.float64, count=len(items))
            out = out + self.biases[1][TASKS.index(task)][rows]
        return out

    def bias_rows(self, index, at: np.ndarray, items=None) -> np.ndarray:
        """The places in :attr:`biases` of the items at positions ``at`` of the model
        ``index`` (-1: an item the model does not know, found by its name ``items[j]``):
        through a table of the model's items, made once per model."""
        place = self.biases[0]
        table = self._rows_by_model.get(index)
        if table is None:
            table = self._rows_by_model[index] = np.fromiter(map(place.get, index.ids, repeat(-1)), dtype=np.intp,
                                                             count=len(index.ids))
        rows = table[at]
        unknown = np.flatnonzero(at < 0)
        if unknown.size:
            rows[unknown] = [place.get(items[j], -1) for j in unknown.tolist()]
        return rows

    @cached_property
    def _rows_by_model(self) -> weakref.WeakKeyDictionary:
        return weakref.WeakKeyDictionary()

    @cached_property
    def biases(self) -> tuple[dict[str, int], np.ndarray]:
        """Every task's item biases as one table, ``(place, table)``: ``table[t, place[q]]``
        is task ``TASKS[t]``'s bias of item q; the last column is 0 (an item without one).
        A candidate set is then looked up once for all tasks."""
        items = list(dict.fromkeys(q for task in TASKS for q in self.item_bias.get(task, {})))
        table = np.zeros((len(TASKS), len(items) + 1))
        for t, task in enumerate(TASKS):
            bias = self.item_bias.get(task, {})
            table[t, :-1] = [bias.get(q, 0.0) for q in items]
        return {q: j for j, q in enumerate(items)}, table

    def scores(self, X: np.ndarray, items, objective: Mapping[str, float], rows: np.ndarray | None = None
               ) -> np.ndarray:
        """Each row's ``sum over tasks of objective[t] * sigmoid(logit_t)`` (``rows``: the
        items' places in :attr:`biases`, :meth:`bias_rows`, if the caller has them)."""
        out = np.zeros(X.shape[0])
        place = self.biases[0]
        if rows is None and place:
            rows = np.fromiter(map(place.get, items, repeat(-1)), dtype=np.intp, count=len(items))
        for task, weight in objective.items():
            if weight > 0:
                out += weight * sigmoid(self.logits(task, X, items, rows))
        return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + e^-z), without overflow


@dataclass(frozen=True, slots=True)
class Examples:
    """The labelled candidates of one interaction: ``items`` the rows' items, ``X`` their features, ``labels[t]``
    each row's label for task t (1: the item the user took, for the tasks it counts
    for), ``weights`` each row's weight. Row 0 is the positive; ``from_list``: the user
    took it from their recommendations list."""

    user: str
    item: str
    ts: float
    items: tuple
    X: np.ndarray
    labels: Mapping[str, np.ndarray]
    weights: np.ndarray
    from_list: bool = False


@dataclass(frozen=True)
class LearnedRanker(Ranker):
    """The recall ranker's candidates, ordered by the learned weights.

    Parameters
    ----------
    recall : DefaultRanker
        The recall ranker; its ``k`` is how many candidates it gives.
    n_hot : int
        Hot items added as candidates.
    k : int
        List length.
    objective : tuple of (task, weight)
        How the heads combine (``RECSYS_OBJECTIVE``).
    high_cut : float
        A rating above it is a conversion (the middle of the rating scale).
    negatives : int
        Never-shown candidates sampled as negatives per interaction.
    skipped_weight : float
        Weight of a negative the user had in the list and did not take.
    explore : float
        Chance that one slot of a list goes to a candidate from outside the top ``k``
        (drawn uniformly; its propensity is logged on the list), so the loop does not
        learn only from its own choices.
    impressions : bool
        Whether the user saw the lists (a shop's page shows them): a replayed log's users
        never did, so none of their candidates was shown and none is a skipped one.
    rated_limit : int
        Items remembered as "already had".
    """

    recall: DefaultRanker = field(default_factory=lambda: DefaultRanker(k=50))
    n_hot: int = 20
    k: int = 20
    objective: tuple = (("interaction", 1.0), ("conversion", 1.0))
    high_cut: float = 3.0
    negatives: int = 10
    skipped_weight: float = 2.0
    impressions: bool = True
    explore: float = 0.0
    rated_limit: int = 1000

    @classmethod
    def from_settings(cls, conf) -> LearnedRanker:
        high_cut = (conf.input.rating_min + conf.input.rating_max) / 2.0
        return cls(k=conf.ranking.k, rated_limit=conf.ranking.rated_items_max, high_cut=high_cut,
                   objective=tuple(parse_objective(conf.ranking.objective).items()), explore=conf.ranking.explore,
                   impressions=conf.ranking.impressions)

    def candidates(self, recent, rated, shown, event: str, ts: float, model) -> Candidates:
        """The candidates of a history, with their features (``ranking.features.candidates``)."""
        context = getattr(model, "context", None) or Context(hot_items=model.hot_items)
        return candidates(recent, rated, shown, event, ts, model.index, context, recall=self.recall,
                          n_hot=self.n_hot, content=getattr(model, "content", None))

    def _shown(self, state: History):
        return state.last_list if self.impressions else ()

    def step(self, state: History, interaction: Interaction, model) -> Step:
        advanced = self._advance(state, interaction)
        if advanced is None:
            return Step.unchanged(state)
        recent, rated = advanced
        found = self.candidates(recent, rated, self._shown(state), interaction.event, interaction.ts, model)
        weights = getattr(model, "learned", None)
        if weights is None or not weights.fits() or not found.items:
            return self._listed(recent, rated, found, *_recall_order(found), interaction)
        scores = weights.scores(found.X, found.items, dict(self.objective))
        order = np.lexsort((np.arange(len(scores)), -scores))
        return self._listed(recent, rated, found, order.tolist(), rounded(scores[order], 6), interaction)

    def step_many(self, pairs, model) -> list[Step]:
        """The steps of many users' interactions: the candidates and their features made
        together (``ranking.features.candidates_many``), scored by one product."""
        advanced = [self._advance(state, interaction) for state, interaction in pairs]
        moved = [(pair, a) for pair, a in zip(pairs, advanced, strict=True) if a is not None]
        context = getattr(model, "context", None) or Context(hot_items=model.hot_items)
        X, found, at = candidates_many([(recent, rated, self._shown(state), interaction.event, interaction.ts)
                                        for (state, interaction), (recent, rated) in moved], model.index, context,
                                       recall=self.recall, n_hot=self.n_hot, content=getattr(model, "content", None))
        weights = getattr(model, "learned", None)
        if weights is not None and weights.fits():
            items = [q for f in found for q in f.items] if (at < 0).any() else None  # only to name the unknown
            scores = weights.scores(X, items, dict(self.objective), weights.bias_rows(model.index, at, items))
            counts = np.array([len(f.items) for f in found], dtype=np.intp)
            # Every row's candidates by score, best first, ties in the recall order: the first
            # k of each are its list (all of them when a slot may be explored).
            ranked = by_score_within_rows(scores, counts)[:, : (None if self.explore > 0 else self.k)]
            listed = np.minimum(counts, ranked.shape[1])
            ranked_scores = rounded(scores[((np.cumsum(counts) - counts)[:, None] + ranked)[ranked < counts[:, None]]], 6)
            ends = np.cumsum(listed).tolist()
            made = [self._listed(recent, rated, f, order[:n], ranked_scores[end - n:end], interaction)
                    for ((_s, interaction), (recent, rated)), f, order, n, end
                    in zip(moved, found, ranked.tolist(), listed.tolist(), ends, strict=True)]
        else:
            made = [self._listed(recent, rated, f, *_recall_order(f), interaction)
                    for ((_s, interaction), (recent, rated)), f in zip(moved, found, strict=True)]
        steps = iter(made)
        return [Step.unchanged(state) if a is None else next(steps)
                for (state, _i), a in zip(pairs, advanced, strict=True)]

    def _advance(self, state: History, interaction: Interaction) -> tuple[list, list] | None:
        """The user's ``(recent, rated)`` after ``interaction`` (None for a replay)."""
        return advanced(state.recent, state.rated, interaction.item, -1.0 if interaction.dislike else interaction.rating,
                        interaction.ts, DefaultRanker.KEPT, self.rated_limit)

    def _listed(self, recent, rated, found: Candidates, order: list, scores: list, interaction: Interaction) -> Step:
        """The step whose list is ``found`` in ``order`` (candidate places, best first; at
        least the first ``k``, all of them when a slot may be explored) with ``scores`` (of
        ``order``'s candidates, rounded to 6 decimals), with an explored slot maybe."""
        explored = self._explore(order, scores, interaction) if self.explore > 0 else None
        names, becauses = found.items, found.because
        order = order[: self.k]
        items = [[names[j], score] for j, score in zip(order, scores, strict=False)]
        because = {names[j]: becauses[j] for j in order if becauses[j] is not None}
        if explored is not None:
            explored["item"] = found.items[order[explored["position"]]]
        return Step(recent, rated, items, because, len(found.items), explored, made=found)

    def rerank(self, state: History, items, model) -> list[list]:
        """``items`` (:mod:`ranking.rerank`) ordered by the serving weights over their
        features for the user's current state, as the list's candidates are (the recall
        ranker's formula gives their recall scores and order); without weights, by the
        recall ranker's formula. Items the model does not know: last, no score."""
        index = model.index
        recall_scores = self.recall.rerank_scores(state, items, index, getattr(model, "content", None))
        order = [q for q, s in reranked(items, recall_scores) if s is not None]
        weights = getattr(model, "learned", None)
        if not order or weights is None or not weights.fits():
            return reranked(items, {q: round(s, 6) for q, s in recall_scores.items()})
        history = self.recall.history if self.recall.history is not None else index.blend.history
        recent = list(state.recent)[-history:]
        context = getattr(model, "context", None) or Context(hot_items=model.hot_items)
        newest_ts = float(recent[-1][2]) if recent else 0.0
        found = features(order, [recall_scores[q] for q in order], recent, set(state.rated), self._shown(state),
                         _event_of_entry(state), newest_ts, index, context, recall=self.recall)
        scores = weights.scores(found.X, found.items, dict(self.objective))
        return reranked(items, {q: round(float(s), 6) for q, s in zip(order, scores, strict=True)})

    def _explore(self, order: list, scores: list, interaction: Interaction) -> dict | None:
        """With chance ``explore``, move a candidate from below the top ``k`` (uniformly
        drawn) into a slot of it (uniformly drawn), in place (and its score in ``scores``);
        returns the slot, or None.
        Seeded by the interaction: a redelivery explores the same way."""
        outside = len(order) - self.k
        if outside <= 0:
            return None
        rng = np.random.default_rng(zlib.crc32(f"explore\x00{interaction.user}\x00{interaction.ts!r}".encode()))
        if rng.random() >= self.explore:
            return None
        pick, slot = self.k + int(rng.integers(outside)), int(rng.integers(self.k))
        order[slot], scores[slot] = order[pick], scores[pick]
        return {"position": slot, "propensity": self.explore / outside}

    def examples(self, state: History, interaction: Interaction, model, made: Candidates | None = None
                 ) -> Examples | None:
        """What ``interaction`` teaches: the candidates the user's current list was made
        from (``made``: what the step that made it returned, kept as :meth:`Candidates.kept`;
        without it, recomputed from ``state``, the user's history before the interaction,
        with ``model`` as it is now), the item taken as the positive; ``None`` when it was
        not a candidate, or the interaction is a replay or a dislike."""
        if interaction.dislike or not state.recent or is_replay(state.recent, interaction.item, interaction.rating,
                                                                  interaction.ts):
            return None
        if made is not None:
            found = made
        else:
            newest = state.recent[-1]
            found = self.candidates(state.recent, state.rated, self._shown(state), _event_of_entry(state), newest[2],
                                    model)
        try:
            positive = found.items.index(interaction.item)
        except ValueError:  # most interactions: the item taken was not a candidate
            return None
        shown = {entry[0] for entry in self._shown(state)}
        skipped = [j for j, q in enumerate(found.items) if j != positive and q in shown]
        others = [j for j, q in enumerate(found.items) if j != positive and q not in shown]
        seed = zlib.crc32(f"{interaction.user}\x00{interaction.item}\x00{interaction.ts!r}".encode())
        unseen_weight = 1.0
        if len(others) > self.negatives:  # each sampled one stands for the never-shown it was drawn from
            unseen_weight = len(others) / self.negatives
            picked = np.random.default_rng(seed).choice(len(others), self.negatives, replace=False)
            others = [others[j] for j in sorted(picked.tolist())]
        rows = [positive, *skipped, *others]
        converted = (interaction.event in CONVERSIONS
                     or (interaction.event == "rating" and interaction.rating > self.high_cut))
        labels = {"interaction": np.zeros(len(rows)), "conversion": np.zeros(len(rows))}
        labels["interaction"][0] = 1.0
        labels["conversion"][0] = 1.0 if converted else 0.0
        weights = np.array([1.0] + [self.skipped_weight] * len(skipped) + [unseen_weight] * len(others))
        X = found.X[rows]
        if X.shape[1] != len(FEATURES):  # kept: the computed ones only
            X = with_crosses(X.astype(np.float64))
        return Examples(interaction.user, interaction.item, interaction.ts, tuple(found.items[j] for j in rows),
                        X, labels, weights, interaction.from_list)


def _recall_order(found: Candidates) -> tuple[list, list]:
    """The candidates' order and their scores without learned weights: the recall ranker's."""
    return list(range(len(found.items))), rounded(found.X[:, 1], 6)


def _event_of_entry(state: History) -> str:
    """The event that made the user's current list (``recs["event"]`` of a ``UserState``)."""
    recs = getattr(state, "recs", None) or {}
    return event_of(recs.get("event") or "rating")
