"""The learner's model: one FTRL-Proximal logistic head per task, trained on every
interaction's examples, and the gate that decides which weight sets are published.

FTRL-Proximal (McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD
2013): per coordinate i, with the gradient g_i of the weighted log-loss,

    sigma_i = (sqrt(n_i + g_i^2) - sqrt(n_i)) / alpha
    z_i    += g_i - sigma_i * w_i
    n_i    += g_i^2
    w_i     = 0                                                   if |z_i| <= l1
            = -(z_i - sign(z_i) l1) / ((beta + sqrt(n_i)) / alpha + l2)   otherwise

One interaction's examples are one step (their gradients summed). Every interaction is
scored before it is learnt (progressive validation), by the model being learnt and by
the serving weight set; :class:`Gate` compares the two over the newest window.
"""
from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ranking.learned import TASKS, Examples, LearnedWeights, sigmoid

#: Clip probabilities this far from 0 and 1 in the log-loss.
_EPS = 1e-7


@dataclass
class Head:
    """One logistic head: FTRL-Proximal weights over ``size`` features, and a bias per
    item learnt by plain SGD (a constant step keeps following what is popular lately).

    Parameters
    ----------
    size : int
        Number of features.
    alpha, beta, l1, l2 : float
        FTRL-Proximal's learning rate and regularisation (McMahan et al., 2013).
    item_rate, item_l2 : float
        The item biases' step and their shrinkage per step they take part in.
    """

    size: int
    alpha: float = 1.0
    beta: float = 1.0
    l1: float = 0.0
    l2: float = 1.0
    item_rate: float = 0.02
    item_l2: float = 0.05

    def __post_init__(self) -> None:
        self.z = np.zeros(self.size)
        self.n = np.zeros(self.size)
        self.item_bias: dict[str, float] = {}

    def weights(self) -> np.ndarray:
        z, n = self.z, self.n
        w = -(z - np.sign(z) * self.l1) / ((self.beta + np.sqrt(n)) / self.alpha + self.l2)
        w[np.abs(z) <= self.l1] = 0.0
        return w

    def learn(self, X: np.ndarray, items, y: np.ndarray, weights: np.ndarray) -> None:
        """One step on the rows ``X`` of ``items`` (distinct) with labels ``y`` and row weights ``weights``."""
        w, bias = self.weights(), self.item_bias
        b = np.fromiter((bias.get(q, 0.0) for q in items), dtype=np.float64, count=len(items))
        residual = (sigmoid(X @ w + b) - y) * weights
        g = X.T @ residual
        sigma = (np.sqrt(self.n + g * g) - np.sqrt(self.n)) / self.alpha
        self.z += g - sigma * w
        self.n += g * g
        if self.item_rate > 0:
            new = b - self.item_rate * (residual + self.item_l2 * b)
            bias.update(zip(items, new.tolist(), strict=True))


def ndcg_at_10(scores: np.ndarray) -> float:
    """NDCG@10 of row 0 (the positive) among the rows ranked by ``scores`` (ties: the
    positive after the others, so a constant scorer earns nothing)."""
    rank = 1 + int(np.sum(scores[1:] >= scores[0]))
    return 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0


def log_loss(p: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Weighted log-loss summed over the rows."""
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.sum(weights * (y * np.log(p) + (1.0 - y) * np.log(1.0 - p))))


def _recall_order_ndcg(ex: Examples, features: Sequence[str]) -> float:
    """NDCG@10 of ``ex``'s positive in the recall ranker's order (what a worker serves
    without weights): the rows ordered by their ``recall_rank`` feature."""
    if "recall_rank" not in features:
        return 0.0
    return ndcg_at_10(ex.X[:, list(features).index("recall_rank")])


def _evaluate(weights: LearnedWeights, ex: Examples, objective: Mapping[str, float]) -> tuple[float, float]:
    """NDCG@10 of ``ex``'s positive by the objective's score, and the log-loss summed over the heads."""
    score = np.zeros(ex.X.shape[0])
    loss = 0.0
    for task in TASKS:
        p = sigmoid(weights.logits(task, ex.X, ex.items))
        loss += log_loss(p, ex.labels[task], ex.weights)
        score += objective.get(task, 0.0) * p
    return ndcg_at_10(score), loss


class Gate:
    """A new weight set ships only if, over the newest ``window`` interactions since the
    serving set was published, its progressive NDCG@10 (each interaction scored by the
    model being learnt, before it was learnt) is at least the serving set's on the same
    interactions, and its log-loss finite and not higher. While none serves, the workers
    serve the recall ranker's order: the first set must reach that order's NDCG@10 (it
    has no log-loss to compare). NaN or infinite weights never ship. (The interactions
    before the serving set was published are left out: it learnt them, so on them it
    would look better than it is.)

    The NDCG@10 is compared over the interactions the lists did not cause (not
    ``from_list``), when the window holds any. A click on a list can only land on what
    that list showed, in its top slots mostly, so on such feedback the order that made
    the lists ranks the positives high whatever their worth: a better ranker would look
    worse there. Which item a shopper finds by other ways does not depend on the lists,
    so there the two orders are judged alike. The log-loss is over all interactions:
    the place an item was shown is one of its features, so both models predict the same
    clicks from the same rows."""

    def __init__(self, objective: Mapping[str, float], window: int = 2000, features: Sequence[str] = ()) -> None:
        self.objective = dict(objective)
        self.features = tuple(features)
        #: (rows' weight, progressive NDCG, progressive loss, serving NDCG, serving loss, 1 if not from a list)
        self.window: collections.deque[tuple] = collections.deque(maxlen=window)
        self.serving: LearnedWeights | None = None

    def add(self, ex: Examples, current: LearnedWeights) -> None:
        """Score ``ex`` with the model about to learn it (``current``), and with the serving set."""
        serving = (_evaluate(self.serving, ex, self.objective) if self.serving is not None
                   else (_recall_order_ndcg(ex, self.features), math.inf))
        self.window.append((float(ex.weights.sum()), *_evaluate(current, ex, self.objective), *serving,
                            0.0 if ex.from_list else 1.0))

    def serve(self, weights: LearnedWeights | None) -> None:
        """``weights`` serve from now on: the comparison starts again from the next interaction."""
        self.serving = weights
        self.window.clear()

    def numbers(self) -> dict:
        """The window's means: log-loss per row, progressive and (when one serves) the
        serving set's on the same interactions; NDCG@10 the same over the interactions not
        from a list (``judged``; all of them when there are none)."""
        n = len(self.window)
        if n == 0:
            return {"interactions": 0, "judged": 0, "ndcg": 0.0, "log_loss": math.nan}
        window = np.array(self.window)
        judged = window[:, 5] > 0.0
        if not judged.any():
            judged[:] = True
        sums = window.sum(axis=0)
        ndcg, serving_ndcg = window[judged, 1].mean(), window[judged, 3].mean()
        rows = sums[0] or 1.0
        out = {"interactions": n, "judged": int(judged.sum()), "ndcg": ndcg, "log_loss": sums[2] / rows,
               "serving_ndcg": serving_ndcg}
        if self.serving is not None:
            out["serving_log_loss"] = sums[4] / rows
        return {k: float(v) for k, v in out.items()}

    def passes(self, weights: LearnedWeights) -> tuple[bool, dict, str]:
        """``(ship?, the numbers, why not)`` for ``weights``."""
        numbers = self.numbers()
        if not (all(np.all(np.isfinite(w)) for w in weights.heads.values())
                and all(math.isfinite(b) for biases in weights.item_bias.values() for b in biases.values())):
            return False, numbers, "weights not finite"
        if not math.isfinite(numbers["log_loss"]):
            return False, numbers, "log-loss not finite"
        if numbers["ndcg"] < numbers["serving_ndcg"]:
            return False, numbers, ("NDCG@10 below the serving version's" if self.serving is not None
                                    else "NDCG@10 below the recall order's")
        if self.serving is not None and numbers["log_loss"] > numbers["serving_log_loss"]:
            return False, numbers, "log-loss above the serving version's"
        return True, numbers, ""


class OnlineLearner:
    """Learns every interaction's examples (scored first) and offers a new weight set
    every ``every`` examples, which ships if the :class:`Gate` passes it.

    Parameters
    ----------
    features : sequence of str
        The feature names (``ranking.features.FEATURES``).
    objective : mapping of task -> weight
        How the NDCG of the gate ranks rows (the serving objective).
    every : int
        Example rows between two offers.
    window : int
        Interactions in the gate's window.
    """

    def __init__(self, features: Sequence[str], objective: Mapping[str, float], *, every: int = 5000,
                 window: int = 2000, alpha: float = 1.0, l2: float = 1.0, item_rate: float = 0.02,
                 name: str = "learned") -> None:
        self.features = tuple(features)
        self.objective = dict(objective)
        self.heads = {task: Head(len(self.features), alpha=alpha, l2=l2, item_rate=item_rate) for task in TASKS}
        self.gate = Gate(self.objective, window, self.features)
        self.every, self.name = every, name
        self.serving: LearnedWeights | None = None
        #: The newest refused offers (their numbers and why), and how many were refused in all.
        self.rejected: collections.deque[dict] = collections.deque(maxlen=20)
        self.refused = 0
        self.rows_since_offer = 0
        self.versions = 0
        self.examples_learnt = 0

    def weights(self, version: str = "", copy: bool = False) -> LearnedWeights:
        """The weights learnt so far (``copy``: item biases copied, to publish; else the live ones)."""
        return LearnedWeights(version, self.features, {task: head.weights() for task, head in self.heads.items()},
                              {task: dict(head.item_bias) if copy else head.item_bias
                               for task, head in self.heads.items()})

    def learn(self, ex: Examples) -> LearnedWeights | None:
        """Score ``ex`` (progressive validation: :meth:`Gate.add`), learn it, and return a new serving weight
        set when one was offered and shipped."""
        self.gate.add(ex, self.weights())
        for task, head in self.heads.items():
            head.learn(ex.X, ex.items, ex.labels[task], ex.weights)
        self.examples_learnt += len(ex.weights)
        self.rows_since_offer += len(ex.weights)
        if self.rows_since_offer >= self.every:
            self.rows_since_offer = 0
            return self.offer()
        return None

    def offer(self) -> LearnedWeights | None:
        """Offer the weights learnt so far to the gate: the new serving set, or None."""
        weights = self.weights(copy=True)
        ok, numbers, why = self.gate.passes(weights)
        if not ok:
            self.refused += 1
            self.rejected.append({**numbers, "reason": why, "examples": self.examples_learnt})
            return None
        self.versions += 1
        self.serving = dataclasses.replace(weights, version=f"{self.name}-{self.versions}",
                                           validation={**numbers, "examples": self.examples_learnt})
        self.gate.serve(self.serving)
        return self.serving
