"""Markdown report and PNG plots of one evaluation run."""
from __future__ import annotations

from pathlib import Path

from .engine import PREDICTORS, RANKERS

PAPER_BEST_RMSE = 1.82
PAPER_CHANGE_RATE = 0.98


def _f(x, nd=4) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _plots(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    # RMSE of every predictor.
    rm = result["rmse_variants"]
    names = list(rm)
    fig, ax = plt.subplots(figsize=(8, 4))
    vals = [rm[n] if rm[n] is not None else 0.0 for n in names]
    colours = ["tab:red" if n.startswith("paper") else "tab:grey" if n in ("global_mean", "item_mean",
               "recent_mean", "als") else "tab:green" for n in names]
    ax.barh(names, vals, color=colours)
    ax.axvline(PAPER_BEST_RMSE, color="k", ls="--", lw=1, label="paper best (1.82)")
    ax.set_xlabel("RMSE on the test ratings (lower is better)")
    ax.set_title(f"Rating prediction, {result['users']} users (red: paper formula, green: ours)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    p = out / "rmse.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(str(p))

    # Ranking metrics per method.
    metrics = ["ndcg_at_10", "precision_at_10", "recall_at_10", "hit_rate_at_10"]
    methods = list(result["ndcg_at_10"])
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    for ax, met in zip(axes, metrics, strict=False):
        ax.bar(methods, [result[met].get(mm, 0.0) for mm in methods],
               color=["tab:red" if mm == "realtime" else "tab:green" if mm == "realtime_plus" else "tab:grey"
                      for mm in methods])
        ax.set_title(met)
        ax.tick_params(axis="x", rotation=60)
    fig.suptitle(f"Top-10 quality on the test items, {result['ranking_users']} users")
    fig.tight_layout()
    p = out / "ranking.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(str(p))

    if result.get("grid"):
        grid = result["grid"]
        ranks = sorted({g["rank"] for g in grid})
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for j, rk in enumerate(ranks):
            rows = sorted((g for g in grid if g["rank"] == rk), key=lambda g: g["reg"])
            regs = [g["reg"] for g in rows]
            c = f"C{j}"
            ax.plot(regs, [g["rmse_realtime"] for g in rows], "-o", color=c, label=f"real-time (paper), rank {rk}")
            ax.plot(regs, [g["rmse_als"] for g in rows], "--s", color=c, label=f"ALS, rank {rk}")
            ax.plot(regs, [g["rmse_realtime_improved"] for g in rows], ":^", color=c,
                    label=f"real-time (ours), rank {rk}")
        ax.set_xscale("log")
        ax.set_xlabel("lambda (ALS regularisation)")
        ax.set_ylabel("RMSE")
        ax.axhline(PAPER_BEST_RMSE, color="k", lw=0.8, ls="--")
        ax.set_title("RMSE vs lambda (paper fig. 2)")
        ax.legend(fontsize=6, ncol=3)
        fig.tight_layout()
        p = out / "grid.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(str(p))
    return paths


def write_report(result: dict, out_dir) -> list[str]:
    """Write ``report.md`` and the plots; returns ``[report, plot, ...]`` paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(result, out)
    r = result
    L = []
    L.append(f"# Offline evaluation: {Path(r['input']).name} ({r['format']})\n")
    L.append(f"Users evaluated: **{r['users']}** of {r['eligible_users']} eligible "
             f"(`--users {r['users_mode']}`, seed {r['seed']}). ALS rank {r['rank']}, lambda {r['reg']}; "
             f"online algorithm K={r['k']}, M={r['m']}, theta={r['theta']}, high cut {r['high_cut']} "
             f"on the scale {r['scale'][0]:g}..{r['scale'][1]:g}.\n")
    d = r["data"]
    L.append("## Protocol\n")
    L.append(f"- {d['ratings']} ratings, {d['users']} users (skipped rows: {d['skipped'] or 'none'}).\n"
             "- Users with at least 11 ratings; each user's ratings sorted by time (stable: ties keep file "
             "order). First 5 = history, 6th = trigger, last 5 = test.\n"
             f"- ALS trained on every rating except the test ratings of all {r['eligible_users']} eligible users "
             f"({d['train_ratings']} training, {d['test_ratings']} test ratings), so a sample of users is "
             "scored with the same model as the full run.\n"
             "- The realtime side sees exactly what the agent would: the published top-50 neighbours per "
             "item (cosine of ALS item factors, rounded to 4 decimals), replayed through "
             "`ranking.PaperRanker` rating by rating (history, then trigger); hot items "
             "(fallback) = the 50 most-rated training items.\n"
             f"- {d['test_items_rated_before']} test ratings are of items the same user also rated earlier "
             "(duplicates in the file); they stay in training through the earlier row and are not counted "
             "as relevant in the ranking metrics.\n")

    L.append("## 1. Rating prediction (RMSE)\n")
    t = r.get("tuning", {})
    if t.get("tuned"):
        L.append(f"Knobs of our predictors were chosen on a validation split of the *training* data only "
                 f"(the same protocol applied to the training ratings: {t['validation_users']} users, a "
                 f"separate ALS fit): {t['params']} (validation RMSE {_f(t['validation_rmse_online_bias_knn'])}, "
                 f"blend {_f(t['validation_rmse_blend'])}). The test ratings were not used to choose them.\n")
    else:
        L.append(f"Too few validation users ({t.get('validation_users', 0)}) to tune: our predictors use "
                 "fixed defaults.\n")
    L.append(f"Test ratings: {r['n_test_ratings']}. Coverage of the paper's base score (a recent item "
             f"more similar than theta={r['theta']}): **{_f(r['coverage'], 3)}**; elsewhere the paper formula "
             "is undefined and falls back (to the ALS prediction unless said otherwise).\n")
    L.append("| predictor | RMSE | what |\n|---|---|---|")
    for name, val in sorted(r["rmse_variants"].items(), key=lambda kv: (kv[1] is None, kv[1])):
        L.append(f"| `{name}` | {_f(val)} | {PREDICTORS.get(name, '')} |")
    L.append("")
    L.append(f"- Paper formula on the covered test ratings only: {_f(r['rmse_realtime_covered_only'])} "
             f"(ALS on the same ratings: {_f(r['rmse_als_on_covered'])}).")
    L.append(f"- Paper's reported best: about {PAPER_BEST_RMSE} (rank 20, lambda 1.0).\n")
    L.append("Sensitivity of the paper formula to theta (same model):\n")
    L.append("| theta | coverage | RMSE (ALS fallback) | RMSE covered only |\n|---|---|---|---|")
    for t in r["theta_sweep"]:
        L.append(f"| {t['theta']} | {_f(t['coverage'], 3)} | {_f(t['rmse_realtime'])} | "
                 f"{_f(t['rmse_paper_covered_only'])} |")
    L.append("")
    if r.get("grid"):
        L.append("### Grid (paper figure 2)\n")
        L.append("| rank | lambda | real-time (paper, ALS fallback) | coverage | paper covered only | "
                 "real-time (ours) | blend (ours) | ALS |\n|---|---|---|---|---|---|---|---|")
        for g in r["grid"]:
            L.append(f"| {g['rank']} | {g['reg']} | {_f(g['rmse_realtime'])} | {_f(g['coverage'], 3)} | "
                     f"{_f(g['rmse_realtime_covered_only'])} | {_f(g['rmse_realtime_improved'])} | "
                     f"{_f(g['rmse_blend'])} | {_f(g['rmse_als'])} |")
        L.append("\n![grid](grid.png)\n")
    L.append("![rmse](rmse.png)\n")

    L.append("## 2. List change rate\n")
    L.append("Measured on the replay of the history and trigger only (no test item involved): the share of "
             "the items of the list sent after the 6th rating (trigger) that were not in the list sent after "
             "the 5th rating, averaged over users. Lists are the agent's full K-item lists (fallback hot items "
             "included).\n")
    L.append(f"- change rate (5th -> 6th): **{_f(r['change_rate'], 3)}** (paper: {PAPER_CHANGE_RATE})")
    L.append(f"- over every consecutive pair of the replay (1st->2nd ... 5th->6th): "
             f"{_f(r['change_rate_all_pairs'], 3)}")
    L.append(f"- scored items only (fallback items ignored; {r['change_rate_scored_users']} users whose new "
             f"list has a scored item): {_f(r['change_rate_scored_only'], 3)}")
    L.append(f"- ours, no carry-over of the previous list (an empty previous list before each step): "
             f"{_f(r.get('change_rate_fresh_lists'), 3)} (all pairs: {_f(r.get('change_rate_fresh_lists_all_pairs'), 3)})\n")

    lv = r.get("list_variants")
    if lv:
        v = lv.get("validation", {})
        imp, pap = lv["improved"], lv["paper"]
        L.append("### List knobs (ours; the paper is decay 1.0, theta 0.6, M 20)\n")
        L.append("`decay` multiplies the previous list's scores before the merge "
                 "(`ranking.paper.merge_lists`), so the newest rating's candidates win; theta and M as in the "
                 "formula. Chosen on the validation split (the protocol applied to the training ratings only, "
                 f"{v.get('validation_users', 0)} users, own ALS fit); rule: {v.get('rule', 'n/a')}; target "
                 f"change rate {v.get('target_change_rate', 'n/a')}.\n")
        L.append(f"- paper-faithful: change rate **{_f(pap['change_rate'], 3)}**, NDCG@10 {_f(pap['ndcg'])}, "
                 f"HR@10 {_f(pap['hit_rate'])}")
        L.append(f"- improved (decay {imp['decay']}, theta {imp['theta']}, M {imp['m']}): change rate "
                 f"**{_f(imp['change_rate'], 3)}**, NDCG@10 {_f(imp['ndcg'])}, HR@10 {_f(imp['hit_rate'])}")
        L.append(f"- plain ALS top-10: NDCG@10 {_f(lv['als']['ndcg'])}, HR@10 {_f(lv['als']['hit_rate'])}")
        if v.get("rows"):
            a = v["als"]
            L.append(f"- validation: chosen reaches the target: {v.get('reaches_target')}; vs ALS on validation "
                     f"(NDCG {_f(a['ndcg'], 5)}, HR {_f(a['hit_rate'])}, {a['hits']} users hit): "
                     f"{v.get('chosen_vs_als')}\n")
            L.append("| decay | theta | M | val change | val NDCG@10 | val HR@10 (users hit) | test change | "
                     "test NDCG@10 | test HR@10 (users hit) |\n|---|---|---|---|---|---|---|---|---|")
            for vr, tr in zip(v["rows"], lv["test"], strict=False):
                mark = " **chosen**" if vr["decay"] == imp["decay"] and vr["theta"] == imp["theta"] and \
                    vr["m"] == imp["m"] else ""
                L.append(f"| {vr['decay']}{mark} | {vr['theta']} | {vr['m']} | {_f(vr['change_rate'], 3)} | "
                         f"{_f(vr['ndcg'], 5)} | {_f(vr['hit_rate'])} ({vr['hits']}) | {_f(tr['change_rate'], 3)} | "
                         f"{_f(tr['ndcg'], 5)} | {_f(tr['hit_rate'])} ({tr['hits']}) |")
            L.append(f"\n{v['validation_users']} validation users ({a['ranking_users']} with a relevant item); "
                     "a handful of hits separates every row, so NDCG/HR differences here are within noise.\n")
        else:
            L.append("")

    L.append("## 3. Ranking quality at 10\n")
    L.append(f"Relevant = the user's 5 test items (whatever their rating), minus items already rated in "
             f"training; {r['ranking_users']} users have at least one. Every method excludes the user's "
             "training items.\n")
    metrics = ["ndcg_at_10", "precision_at_10", "recall_at_10", "hit_rate_at_10"]
    L.append("| method | " + " | ".join(metrics) + " | what |\n|---|" + "---|" * (len(metrics) + 1))
    for mm in r["ndcg_at_10"]:
        L.append(f"| `{mm}` | " + " | ".join(_f(r[met].get(mm)) for met in metrics) + f" | {RANKERS.get(mm, '')} |")
    hr = r["ranking_high_rated"]
    L.append(f"\nOnly high-rated test items (rating >= {r['high_cut']:g}) relevant ({hr.get('users', 0)} users):\n")
    short = ["ndcg", "precision", "recall", "hit_rate"]
    L.append("| method | " + " | ".join(f"{s}@10" for s in short) + " |\n|---|" + "---|" * len(short))
    for mm in hr.get("ndcg", {}):
        L.append(f"| `{mm}` | " + " | ".join(_f(hr[s].get(mm)) for s in short) + " |")
    L.append("\n![ranking](ranking.png)\n")

    if r.get("through_stream"):
        s = r["through_stream"]
        L.append("## Through the stream (real worker on the broker)\n")
        L.append(f"{s['mode']}. Broker: {s['broker']}. {s['ratings_produced']} ratings of {s['users']} users "
                 f"produced at {s['produce_rate_per_s']:g}/s (0 = unpaced); {s['lists_received']} lists received.\n")
        L.append(f"- final list identical to the offline replay: **{s['identical_lists']} of {s['users']}** users "
                 f"(every intermediate list too: {s['identical_all_lists']}); largest score difference "
                 f"{s['max_abs_score_diff']}")
        L.append(f"- produced -> emitted: p50 {_f(s['p50_ms'], 1)} ms, p99 {_f(s['p99_ms'], 1)} ms "
                 f"(inside the worker: p50 {_f(s['worker_p50_ms'], 2)} ms, p99 {_f(s['worker_p99_ms'], 2)} ms)")
        L.append(f"- in-process interleaved replay (table-like state, no broker): "
                 f"{s.get('in_process_identical_lists')} of {s['users']} identical final lists\n")
    L.append(f"ALS fit {_f(r['als_fit_seconds'], 2)} s, similarity {_f(r['similarity_seconds'], 2)} s; "
             f"whole run {_f(r['seconds'], 1)} s.\n")
    L.append("Data: Rent the Runway (Misra, Wan, McAuley, RecSys 2018, UCSD) / MovieLens (GroupLens), "
             "as given.\n")
    path = out / "report.md"
    path.write_text("\n".join(L), encoding="utf-8")
    return [str(path), *plots]
