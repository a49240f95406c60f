"""The learner's heads and gate (``learner/online.py``): hand-checked steps, and the gate
refusing what is worse or not finite."""
from __future__ import annotations

import math

import numpy as np
import pytest

from learner.online import Gate, Head, OnlineLearner, _evaluate, log_loss, ndcg_at_10
from ranking.learned import TASKS, Examples, LearnedWeights, parse_objective


def test_one_ftrl_step_by_hand():
    head = Head(2, alpha=1.0, beta=1.0, l2=1.0, item_rate=0.01)
    X = np.array([[1.0, 0.5], [1.0, 0.0]])
    head.learn(X, ("a", "b"), np.array([1.0, 0.0]), np.array([1.0, 2.0]))
    # w = 0, b = 0: p = 0.5 on both rows; residuals (p - y) * weight = -0.5, 1.0
    # g = X^T r = (0.5, -0.25); sigma = |g| (n was 0); z = g; n = g^2
    assert head.z.tolist() == [0.5, -0.25] and head.n.tolist() == [0.25, 0.0625]
    # w = -z / ((beta + sqrt(n)) / alpha + l2)
    assert head.weights() == pytest.approx([-0.5 / 2.5, 0.25 / 2.25])
    # item biases: b - rate * residual
    assert head.item_bias == pytest.approx({"a": 0.005, "b": -0.01})


def test_second_step_uses_the_weights_of_the_first():
    head = Head(1, alpha=0.5, beta=1.0, l2=0.0, item_rate=0.0)
    X = np.array([[2.0]])
    head.learn(X, ("a",), np.array([1.0]), np.array([1.0]))
    w1 = head.weights()[0]  # z = -1, n = 1: w = 1 / ((1 + 1) / 0.5) = 0.25
    assert w1 == pytest.approx(0.25)
    head.learn(X, ("a",), np.array([1.0]), np.array([1.0]))
    g = 2.0 * (1.0 / (1.0 + math.exp(-2.0 * w1)) - 1.0)
    sigma = (math.sqrt(1.0 + g * g) - 1.0) / 0.5
    assert head.z[0] == pytest.approx(-1.0 + g - sigma * w1)
    assert head.n[0] == pytest.approx(1.0 + g * g)


def test_ndcg_of_the_positive_row():
    assert ndcg_at_10(np.array([3.0, 1.0, 2.0])) == 1.0
    assert ndcg_at_10(np.array([1.0, 3.0, 2.0])) == pytest.approx(1 / math.log2(4))
    assert ndcg_at_10(np.zeros(5)) == pytest.approx(1 / math.log2(6))  # ties rank the positive last
    assert ndcg_at_10(np.concatenate([[0.0], np.ones(10)])) == 0.0


def test_log_loss_is_weighted():
    p, y = np.array([0.8, 0.1]), np.array([1.0, 0.0])
    assert log_loss(p, y, np.array([1.0, 3.0])) == pytest.approx(-math.log(0.8) - 3 * math.log(0.9))


def _examples(n: int, seed: int = 0) -> list[Examples]:
    """Interactions whose positive has feature 1 high, negatives low."""
    rng = np.random.default_rng(seed)
    out = []
    for e in range(n):
        x = np.column_stack([np.ones(6), np.concatenate([[1.0], rng.random(5) * 0.2])])
        labels = {"interaction": np.eye(6)[0], "conversion": np.zeros(6)}
        out.append(Examples("u", "i0", float(e), tuple(f"i{j}" for j in range(6)), x, labels, np.ones(6)))
    return out


def _weights(w1: float, bias: float = 0.0) -> LearnedWeights:
    return LearnedWeights("v", ("bias", "x"), {t: np.array([bias, w1]) for t in TASKS})


def test_the_gate_refuses_a_worse_model():
    gate = Gate({"interaction": 1.0}, window=100)
    gate.serve(_weights(5.0))  # ranks the positive first
    for ex in _examples(50):
        gate.add(ex, _weights(-5.0))  # ranks it last
    ok, numbers, why = gate.passes(_weights(-5.0))
    assert not ok and "NDCG" in why and numbers["ndcg"] < numbers["serving_ndcg"]


def test_the_gate_ships_a_better_model():
    gate = Gate({"interaction": 1.0}, window=100)
    gate.serve(_weights(-5.0))
    for ex in _examples(50):
        gate.add(ex, _weights(8.0, -4.0))
    ok, numbers, _why = gate.passes(_weights(8.0, -4.0))
    assert ok and numbers["ndcg"] == 1.0 and numbers["log_loss"] < numbers["serving_log_loss"]


def test_nan_never_ships():
    gate = Gate({"interaction": 1.0}, window=100)
    for ex in _examples(5):
        gate.add(ex, _weights(1.0))
    bad = LearnedWeights("v", ("bias", "x"), {t: np.array([0.0, np.nan]) for t in TASKS})
    assert gate.passes(bad)[0] is False
    biased = LearnedWeights("v", ("bias", "x"), {t: np.zeros(2) for t in TASKS}, {"interaction": {"i1": math.inf}})
    assert gate.passes(biased)[0] is False


def test_the_learner_offers_every_n_rows_and_learns_the_signal():
    learner = OnlineLearner(("bias", "x"), {"interaction": 1.0}, every=60, window=50)
    shipped = [w for ex in _examples(200) if (w := learner.learn(ex)) is not None]
    assert shipped and learner.examples_learnt == 1200
    assert shipped[-1].heads["interaction"][1] > 0  # the positive's feature learnt as a plus
    assert learner.serving is shipped[-1] and shipped[-1].version == f"learned-{learner.versions}"


def test_objective_spec():
    assert parse_objective("interaction:1,conversion:4") == {"interaction": 1.0, "conversion": 4.0}
    assert parse_objective("conversion:2") == {"interaction": 0.0, "conversion": 2.0}
    for bad in ("clicks:1", "interaction:x", "interaction:-1", "interaction:0", "interaction:nan"):
        with pytest.raises(ValueError):
            parse_objective(bad)


def test_the_first_set_must_reach_the_recall_order():
    """Without a serving set the workers serve the recall order: a first set that ranks
    the positive below where that order has it does not ship; one that ranks it higher does."""
    features = ("bias", "x", "recall_rank")
    rows = []
    for e in range(30):  # the positive is the recall order's second: NDCG 1/log2(3)
        x = np.column_stack([np.ones(4), [1.0, 0.0, 0.0, 0.0], 1.0 / np.log2(2.0 + np.array([1, 0, 2, 3]))])
        rows.append(Examples("u", "i0", float(e), ("i0", "i1", "i2", "i3"), x,
                             {"interaction": np.eye(4)[0], "conversion": np.zeros(4)}, np.ones(4)))
    worse = LearnedWeights("v", features, {t: np.array([0.0, -5.0, 0.0]) for t in TASKS})
    better = LearnedWeights("v", features, {t: np.array([0.0, 5.0, 0.0]) for t in TASKS})
    for learnt, ships in ((worse, False), (better, True)):
        gate = Gate({"interaction": 1.0}, window=100, features=features)
        for ex in rows:
            gate.add(ex, learnt)
        ok, numbers, why = gate.passes(learnt)
        assert numbers["serving_ndcg"] == pytest.approx(1 / math.log2(3))
        assert ok is ships and (ships or "recall order" in why)


def test_rankings_are_judged_on_what_the_lists_did_not_cause():
    """Clicks on a list land in its top slots: there the order that made the list wins
    whatever it is worth. The gate compares NDCG@10 over the other interactions (all of
    them when there are none), and the log-loss over every interaction."""
    features = ("bias", "x", "recall_rank")
    recall_rank = 1.0 / np.log2(2.0 + np.arange(4))

    def interaction(e: int, positive_x: float, from_list: bool) -> Examples:
        x = np.column_stack([np.ones(4), [positive_x, 1.0 - positive_x, 0.0, 0.0], recall_rank])
        return Examples("u", "i0", float(e), ("i0", "i1", "i2", "i3"), x,
                        {"interaction": np.eye(4)[0], "conversion": np.zeros(4)}, np.ones(4), from_list=from_list)

    # Clicks on the list: the positive was the recall order's first, and has x = 0.
    # Found by other ways: the positive has x = 1 (the recall order has it first too).
    clicks = [interaction(e, 0.0, True) for e in range(40)]
    organic = [interaction(40 + e, 1.0, False) for e in range(10)]
    learnt = LearnedWeights("v", features, {t: np.array([0.0, 5.0, 0.0]) for t in TASKS})
    gate = Gate({"interaction": 1.0}, window=100, features=features)
    for ex in clicks + organic:
        gate.add(ex, learnt)
    ok, numbers, _why = gate.passes(learnt)
    assert ok and numbers["judged"] == 10 and numbers["ndcg"] == 1.0 == numbers["serving_ndcg"]
    assert numbers["log_loss"] == pytest.approx(
        sum(_evaluate(learnt, ex, {"interaction": 1.0})[1] for ex in clicks + organic) / (4 * 50))
    only_clicks = Gate({"interaction": 1.0}, window=100, features=features)
    for ex in clicks:
        only_clicks.add(ex, learnt)
    ok, numbers, why = only_clicks.passes(learnt)
    assert not ok and numbers["judged"] == 40 and "recall order" in why

