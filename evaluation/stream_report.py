"""``report.md`` and PNG plots of the streaming evaluation (``evaluation/prequential.py``)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from .prequential import TIME_BINS, hit_arrays

METRICS = (("hr_at_10", "HR@10"), ("ndcg_at_10", "NDCG@10"), ("mrr_at_10", "MRR@10"),
           ("hr_at_10_new_items", "HR@10 on new items (first seen in the scored half)"),
           ("coverage", "catalogue coverage"), ("novelty", "mean popularity rank (higher = more novel)"),
           ("change_rate", "share of list items changed between consecutive lists"),
           ("us_per_event", "microseconds per event"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def bar_chart(values: dict, title: str, path: Path) -> str:
    """One bar per ranker (None plotted as 0 and labelled n/a)."""
    plt = _plt()
    names = list(values)
    ys = [values[n] if values[n] is not None else 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    bars = ax.bar(names, ys, color=["tab:red" if n == "default" else "tab:blue" for n in names])
    for b, n in zip(bars, names, strict=False):
        label = "n/a" if values[n] is None else f"{values[n]:.4g}"
        ax.annotate(label, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def hr_over_time(raw: dict, title: str, path: Path, bins: int = TIME_BINS) -> str:
    """HR@10 of each ranker over equal-count bins of the scored events, against their time."""
    plt = _plt()
    ts = raw["scored_ts"]
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    if ts.size:
        edges = np.linspace(0, ts.size, min(bins, ts.size) + 1).astype(int)
        mids = [float(np.median(ts[a:b])) for a, b in itertools.pairwise(edges)]
        when = np.round(np.array(mids)).astype(np.int64).astype("datetime64[s]")
        for name in raw["names"]:
            hr = hit_arrays(raw["tally"][name].ranks)[0]
            ax.plot(when, [hr[a:b].mean() for a, b in itertools.pairwise(edges)], marker=".",
                    label=name, linewidth=2.5 if name == "default" else 1.2)
    ax.set_ylabel("HR@10")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def _table(summary: dict) -> list[str]:
    names = list(summary["hr_at_10"])
    lines = ["| ranker | " + " | ".join(label.split(" (")[0] for _k, label in METRICS) + " |",
             "|---" * (len(METRICS) + 1) + "|"]
    for n in names:
        cells = []
        for key, _label in METRICS:
            v = summary[key][n]
            cells.append("n/a" if v is None else f"{v:.4g}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def _comparison(extra: dict, key: str = "comparison") -> list[str]:
    lines = []
    for metric, c in extra.get(key, {}).items():
        rel = "n/a" if c["relative"] is None else f"{100 * c['relative']:+.1f}%"
        lo, hi = c["ci95"]
        noise = " (the interval holds 0: the gap may be noise)" if lo <= 0 <= hi else ""
        name = c.get("ranker", "default")
        lines.append(f"- {metric}: {name} {c[name]:.4g} vs best other `{c['best_baseline']}` "
                     f"{c['baseline']:.4g}: difference {c['diff']:+.4g}, 95% bootstrap interval "
                     f"[{lo:+.4g}, {hi:+.4g}] ({rel} relative){noise}")
    return lines


def _learned(extra: dict) -> list[str]:
    if not extra.get("learned_comparison"):
        return []
    lines = ["## learned against the best other ranker", "", *_comparison(extra, "learned_comparison"), ""]
    for name, s in (extra.get("learners") or {}).items():
        serving = s.get("serving") or {}
        lines.append(f"`{name}` learnt {s['examples']} example rows test-then-learn over the whole stream (warm-up "
                     f"included); the gate shipped {s['versions']} weight sets and refused {s['rejected']}; the last "
                     f"one's progressive NDCG@10 over its window {serving.get('ndcg', float('nan')):.4f}.")
    return [*lines, ""]


def _tuning(extra: dict) -> list[str]:
    tuned = extra.get("tuning") or {}
    if not tuned:
        return []
    lines = ["## How the baselines were tuned", "",
             (f"On the warm-up half only ({extra.get('tuning_seconds', 0):.0f} s): fitted on its first 80%, scored "
              "test-then-learn on its last 20%, each family's grid searched one parameter at a time (twice over), "
              "chosen by NDCG@10 (`evaluation/tuning.py`)."), "",
             "| baseline | chosen | validation NDCG@10 | validation HR@10 | configurations tried |", "|---|---|---|---|---|"]
    for family, t in tuned.items():
        params = ", ".join(f"{k}={v}" for k, v in t["params"].items())
        lines.append(f"| {family} | {params} | {t['ndcg_at_10']:.4g} | {t['hr_at_10']:.4g} | {t['tried']} |")
    return [*lines, ""]


def _selections(raw: dict) -> list[str]:
    chosen = [s for s in raw.get("selections") or [] if s]
    if not chosen:
        return []
    lines = ["## The default ranker's blend at each retrain", "",
             ("Chosen as the model worker chooses it (`offline_als/selection.py`): sources fitted without the newest "
              "events the model holds, those replayed test-then-learn for each candidate, the best by NDCG@10."), "",
             "| retrain | blend | validation HR@10 / NDCG@10 | runner-up (HR@10 / NDCG@10) | events | seconds |",
             "|---|---|---|---|---|---|"]
    for n, s in enumerate(chosen):
        runner = s.get("runner_up") or {}
        score = f"{s['hr_at_10']:.4f} / {s['ndcg_at_10']:.4f}" if "hr_at_10" in s else s.get("note", "-")
        other = f"{runner['name']} ({runner['hr_at_10']:.4f} / {runner['ndcg_at_10']:.4f})" if runner else "-"
        lines.append(f"| {n} | {s['name']} | {score} | {other} | {s['validation_events']} | {s['selection_s']:.1f} |")
    return [*lines, ""]


def write_stream_report(summary: dict, raw: dict, extra: dict, out_dir) -> list[str]:
    """Write ``report.md``, ``result.json`` and the plots; returns their paths (report first)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(str(extra.get("input", "data"))).name
    plots = [bar_chart(summary[key], f"{label} - {name}", out / f"stream_{key}.png") for key, label in METRICS]
    plots.append(hr_over_time(raw, f"HR@10 over stream time - {name}", out / "stream_hr_over_time.png"))
    lines = [f"# Streaming (prequential) evaluation: {name}", "",
             (f"Input `{extra.get('input')}` (format `{extra.get('format')}`), {extra.get('events')} events "
             f"(skipped rows: {extra.get('skipped') or 'none'}). Warm-up: the first {raw['n_warm']} events by "
             "time (ALS trained, states filled, nothing scored). Then test-then-learn: each event of a user with "
             "an earlier event is scored against the list the user had from each ranker just before it, then "
             f"applied; ALS retrained after each tenth of the scored half ({len(raw['train_seconds'])} fits, "
             f"{sum(raw['train_seconds']):.1f} s)."), "",
             (f"Scored events: {summary['events_scored']} of {summary['users']} users; events on an item the "
             f"user already had (not scored): {100 * summary['repeat_share']:.1f}% of the events of known users."),
             "", *_table(summary), "", "## default against the best baseline", "", *_comparison(extra), "",
             *_learned(extra),
             ("Novelty is the mean popularity rank (over the whole file, 1 = most interacted) of the "
             "recommended items; coverage the share of the file's items that appeared in a scored list; cost "
             "is the time of each ranker's update and list per event of the scored half, and change the share "
             "of a user's list that is new since the one before, both over the lists a later event reads "
             "(a user's last list is never read, and not made)."), "",
             *_selections(raw), *_tuning(extra), "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    (out / "result.json").write_text(json.dumps({**summary, **{k: v for k, v in extra.items()}}, indent=1,
                                                default=str))
    return [str(report), *plots]
