"""Tuning the baselines on validation data only: the warm-up half of the stream.

The same protocol (``prequential.run_stream``) on the warm-up half alone: fit once on
its first 80% (``VALIDATION_WARM``), score its last 20% test-then-learn, pick by NDCG@10.
The scored half of the evaluation is never seen. Each family's grid is searched one
parameter at a time (coordinate search: every value of a parameter with the others at
their best so far, in the order the grid lists them, twice over), all families in the
same runs, so a run costs one pass over the validation stream whatever the grid sizes.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from app.settings import Settings

from .baselines import BASELINES
from .rankers import Baseline

#: Share of the validation stream (the warm-up half) that warms up; the rest is scored.
VALIDATION_WARM = 0.8
#: History decay of the families that weigh the user's whole history (None: no decay).
DECAYS = (None, 0.4, 0.6, 0.8)
#: Each family's grid: parameter -> values, searched in this order (first value: the start).
GRIDS: dict[str, dict[str, tuple]] = {
    "sr": {"steps": (10, 25), "last": (3, 1, 5), "decay": DECAYS},
    "ease": {"lam": (500.0, 1.0, 20.0, 100.0, 1000.0, 3000.0, 9000.0), "decay": DECAYS},
    "rp3beta": {"alpha": (1.0, 0.5, 1.25), "beta": (0.5, 0.0, 0.3), "neighbours": (200, 50), "decay": DECAYS},
    "ials": {"factors": (64, 32, 128), "reg": (10.0, 1.0, 30.0), "alpha": (10.0, 1.0, 40.0), "decay": DECAYS},
    "vsknn": {"session": (10, 5), "neighbours": (100, 25, 200)},
    "als": {"reg": (1.0, 0.1, 0.3, 3.0, 10.0)},
}
#: Coordinate-search rounds over each family's parameters.
ROUNDS = 2


def config_name(family: str, params: Mapping) -> str:
    return family + "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def tune(stream, conf: Settings, families=tuple(GRIDS), *, progress: bool = False, say=lambda msg: None) -> dict:
    """The best parameters of each family on the warm-up half of ``stream``:
    ``{family: {"params": {...}, "ndcg_at_10": ..., "hr_at_10": ..., "tried": n}}``."""
    from .prequential import run_stream, summarise

    warm = stream.head(len(stream) // 2)
    best = {f: {name: values[0] for name, values in GRIDS[f].items()} for f in families}
    tried: dict[str, dict] = {f: {} for f in families}  # config name -> {"params", "ndcg_at_10", "hr_at_10"}
    for _round in range(ROUNDS):
        for position in range(max(len(GRIDS[f]) for f in families)):
            rankers = {}
            for family in families:
                params = list(GRIDS[family])
                if position >= len(params):
                    continue
                name = params[position]
                for value in GRIDS[family][name]:
                    candidate = {**best[family], name: value}
                    key = config_name(family, candidate)
                    if key not in tried[family]:
                        rankers[key] = (family, candidate)
            if not rankers:
                continue
            made = {key: make_baseline(family, params, conf) for key, (family, params) in rankers.items()}
            raw = run_stream(warm, conf, rankers=made, progress=progress, warm_share=VALIDATION_WARM, retrains=1,
                             train_model=False)
            summary = summarise(raw)
            for key, (family, params) in rankers.items():
                tried[family][key] = {"params": params, "ndcg_at_10": summary["ndcg_at_10"][key],
                                      "hr_at_10": summary["hr_at_10"][key]}
            for family in families:
                if tried[family]:
                    best[family] = max(tried[family].items(),
                                       key=lambda kv: (kv[1]["ndcg_at_10"], kv[1]["hr_at_10"], kv[0]))[1]["params"]
            say(f"tuning: {len(made)} configurations scored; best so far "
                + ", ".join(config_name(f, best[f]) for f in families))
    return {f: {**tried[f][config_name(f, best[f])], "tried": len(tried[f])} for f in families}


def make_baseline(family: str, params: Mapping, conf: Settings) -> Baseline:
    """The baseline ``family`` with ``params`` (over its defaults from the settings)."""
    return dataclasses.replace(BASELINES[family].from_settings(conf), **params)
