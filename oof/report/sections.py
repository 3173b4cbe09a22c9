"""The report's general sections: scoreboard, is the difference real, learning curves, distributions, provenance."""
import shlex

import numpy as np

from core.runs import OOF_FILE
from oof.report import plots
from oof.report.doc import Figure, Section, Table
from oof.report.stats import BASELINE

DIFF = "{:+.4f}"
SHARE = "{:.1%}"
CONSTANT_MODEL = "constant mean embedding"  # models.mean_baseline's metrics["model"]


def fold_columns(an):
    return [f"fold {f}" for f in an.fold_values]


def _per_fold_list(entry, fold_values, folds_order=None):
    """scores.json per_fold: a list in scores["folds"] order, or a dict keyed by fold."""
    per_fold = entry.get("per_fold")
    if isinstance(per_fold, dict):
        return [per_fold.get(str(f)) for f in fold_values]
    if isinstance(per_fold, list):
        pos = {int(f): k for k, f in enumerate(folds_order or fold_values)}
        return [per_fold[pos[f]] if f in pos and pos[f] < len(per_fold) else None for f in fold_values]
    return [None] * len(fold_values)


def scoreboard(an):
    inputs, ens = an.inputs, an.inputs.ensemble
    has_test = inputs.test_targets is not None
    base = an.overall[BASELINE]
    cols = ["model", "kind"] + fold_columns(an) + ["OOF cosine", "vs baseline"] + (["test"] if has_test else []) \
        + ["train s", "train img/s", "config", "config hash"]
    rows, notes = [], []

    def row(name, kind, folds, overall, test=None, seconds=None, rate=None, config=None, chash=None):
        r = [name, kind] + list(folds) + [overall, None if overall is None else overall - base]
        rows.append(r + ([test] if has_test else []) + [seconds, rate, config, chash])

    for run in sorted(inputs.runs, key=lambda r: -an.overall[r.name]):
        m = run.metrics
        kind = {CONSTANT_MODEL: "constant", "ensemble": "stack: nested-CV OOF blend"}.get(m.get("model"), "model")
        row(run.name, kind, an.per_fold[run.name], an.overall[run.name], an.test.get(run.name),
            m.get("wall_seconds", m.get("seconds")), m.get("train_images_per_sec"), m.get("name"),
            (m.get("config_hash") or "")[:12] or None)
    row(BASELINE, "constant, computed from targets + folds", an.per_fold[BASELINE], base, an.test.get(BASELINE))
    rows[-1][len(an.fold_values) + 3] = None  # the baseline against itself
    if ens is not None:
        sc = ens.scores
        methods = sorted((sc.get("methods") or {}).items(), key=lambda kv: -(kv[1].get("overall") or -2.0))
        for method, entry in methods:
            name = f"ensemble ({method})"
            chosen = method == ens.method
            folds = _per_fold_list(entry, an.fold_values, sc.get("folds"))
            overall = entry.get("overall")
            if chosen and name in an.scores:  # the per-image blend: recomputed, checked against scores.json
                if overall is not None and abs(an.overall[name] - overall) > 1e-5:
                    notes.append(f"{name}: oof_blend.npy scores {an.overall[name]:.6f}, scores.json says {overall:.6f}")
                folds, overall = an.per_fold[name], an.overall[name]
            row(name, "stacker, nested CV" + (" (chosen)" if chosen else ""), folds, overall,
                an.test.get(name) if chosen else None, None, None, method, None)
    note = ("OOF cosine: mean over images of the cosine between each image's out-of-fold prediction and its target "
            "(core.metric), recomputed here from the OOF files. Stacker rows: nested CV from scores.json (each fold "
            "scored by a blend fitted without it); the chosen one recomputed from oof_blend.npy when present.")
    if not has_test:
        note += " No --test-targets: test scores left out."
    fmt = {"vs baseline": DIFF, "train s": "{:.1f}", "train img/s": "{:.1f}"}
    items = [Table("scoreboard", cols, rows, formats=fmt, note=note)] + notes
    paragraphs = [f"{inputs.n:,} OOF images in {len(an.fold_values)} folds; targets {inputs.targets_dir}; "
                  f"folds {inputs.folds_path} (sha256 {inputs.folds_sha256[:12]}...)."]
    return Section("Scoreboard", "scoreboard", paragraphs, items)


def difference_section(an, seed=0):
    inputs = an.inputs
    n_units = len(np.unique(inputs.groups))
    cols = ["A", "B", "A - B", "95% CI low", "95% CI high", "folds A wins", "verdict"]
    rows = [[p["a"], p["b"], p["diff"], p["ci_low"], p["ci_high"],
             f"{p['fold_wins_a']} of {p['folds']}" + (f" ({p['fold_ties']} tied)" if p["fold_ties"] else ""),
             p["verdict"]] for p in an.pairs]
    fold_rows = [[p["a"], p["b"]] + p["fold_diffs"] for p in an.pairs]
    fmt = {c: DIFF for c in ("A - B", "95% CI low", "95% CI high")}
    paragraphs = [
        "A - B is the mean over all images of the paired difference of per-image cosine (A's minus B's on the same "
        "image). The 95% interval is the 2.5th-97.5th percentile of that difference over "
        f"{an.n_boot} bootstrap resamples (seed {seed}) that draw whole resampling units with replacement: "
        f"{n_units:,} units, {inputs.groups_source}. Near-duplicate prompts share a group, so an image and its "
        "near-copy count once, not twice: the interval is honest about how much independent evidence there is.",
        "How to read it: an interval that excludes 0 says the difference is larger than what resampling the prompts "
        "produces by chance; one that contains 0 says this data cannot tell the two apart, however large the mean "
        "looks. Per-fold wins say whether the gain holds in every fold or comes from one.",
    ]
    items = [Table("differences", cols, rows, formats=fmt)] if rows else ["only one model: nothing to compare"]
    if rows:
        items.append(Table("fold_differences", ["A", "B"] + fold_columns(an), fold_rows,
                           title="A - B per fold (mean per-image cosine difference)",
                           formats={c: DIFF for c in fold_columns(an)}))
    return Section("Is the difference real?", "differences", paragraphs, items)


def learning_section(an):
    items, rows, flat = [], [], []
    for run in an.inputs.runs:
        logf = run.log
        png = plots.learning_curves(logf, run.name)
        if png is None:
            flat.append(run.name)
            continue
        items.append(Figure(f"curves_{run.name}", png, f"{run.name}: train loss and monitoring cosine per epoch, "
                                                       "one line per fold (train_log.csv)", title=run.name))
        for fold, part in logf.sort_values("epoch").groupby("fold"):
            best = part.loc[part["val_cosine"].idxmax()] if part["val_cosine"].notna().any() else None
            rows.append([run.name, int(fold), int(part["epoch"].nunique()), float(part["train_loss"].iloc[-1]),
                         float(part["val_cosine"].iloc[-1]),
                         None if best is None else float(best["val_cosine"]),
                         None if best is None else int(best["epoch"])])
    if rows:
        items.insert(0, Table("learning_curves", ["run", "fold", "epochs", "last train loss", "last val cosine",
                                                  "best val cosine", "best epoch"], rows))
    if flat:
        items.append(f"no curve (fewer than 2 epochs logged per fold): {', '.join(flat)}")
    return Section("Learning curves", "learning", [], items)


def distribution_section(an, sample):
    names = list(an.scores)
    qs = [5, 25, 50, 75, 95]
    rows = []
    for n in names:
        v = an.scores[n]
        rows.append([n, float(v.mean(dtype=np.float64))] + [float(x) for x in np.percentile(v, qs)]
                    + [float(np.mean(v < an.scores[BASELINE]))])
    cols = ["model", "mean"] + [f"p{q}" for q in qs] + ["share below baseline"]
    table = Table("distribution", cols, rows, formats={"share below baseline": SHARE},
                  note="Quantiles over all images; 'share below baseline': images the model scores worse than the "
                       "constant mean embedding does on the same image.")
    fig = Figure("histograms", plots.histograms({n: an.scores[n][sample] for n in names}),
                 f"per-image cosine, drawn on a fixed random sample of {len(sample):,} of {an.inputs.n:,} images")
    return Section("Distributions", "distributions", [], [table, fig])


def _argv_text(argv):
    if not argv:
        return "not recorded"
    return shlex.join(map(str, argv)) if isinstance(argv, (list, tuple)) else str(argv)


def provenance_section(an, report_argv):
    inputs = an.inputs
    rows = []
    for run in inputs.runs:
        m = run.metrics
        rows.append([run.name, str(run.path), _argv_text(m.get("argv")), m.get("name"), m.get("config_hash"),
                     (m.get("targets") or {}).get("key"), (m.get("folds") or {}).get("sha256"),
                     (m.get("train_images") or {}).get("ids_sha256"), (m.get("test_images") or {}).get("ids_sha256"),
                     run.manifest.get(OOF_FILE)])
    cols = ["run", "path", "command line", "config", "config hash", "targets key", "folds sha256",
            "train ids sha256", "test ids sha256", "oof.npy sha256"]
    items = [Table("provenance_runs", cols, rows)]
    ens = inputs.ensemble
    if ens is not None:
        sc = ens.scores
        items.append(Table("provenance_ensemble", ["ensemble", "command line", "chosen method", "runs", "folds sha256"],
                           [[str(ens.path), _argv_text(sc.get("argv")), ens.method,
                             ", ".join(r.get("name", "?") for r in sc.get("runs", [])),
                             (sc.get("folds_file") or {}).get("sha256")]]))
    inputs_rows = [["report command", _argv_text(report_argv)], ["targets", str(inputs.targets_dir)],
                   ["folds", f"{inputs.folds_path} (sha256 {inputs.folds_sha256})"],
                   ["resampling units", inputs.groups_source],
                   ["prompts", str(inputs.prompts_path) if inputs.prompts_path else "not found"],
                   ["images", str(inputs.images_dir) if inputs.images_dir else "not found"],
                   ["test targets", str(inputs.test_targets) if inputs.test_targets else "not given"]]
    items.append(Table("provenance_inputs", ["input", "value"], inputs_rows))
    if inputs.unfinished:
        items.append(Table("unfinished", ["unfinished run (no manifest.json: listed, not read)"],
                           [[u] for u in inputs.unfinished]))
    return Section("Provenance", "provenance", [], items)
