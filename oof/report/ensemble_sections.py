"""Sections about combining models: diversity (residual correlation, drop-one) and the fitted stacker."""
import numpy as np

from oof.report import plots
from oof.report.doc import Figure, Section, Table
from oof.report.sections import DIFF, _per_fold_list, fold_columns


def diversity_section(an):
    names = an.run_names
    items = []
    if len(names) >= 2:
        matrix = an.residuals.loc[names, names].to_numpy(dtype=np.float64)
        items.append(Table("residual_correlation", ["model"] + names,
                           [[n] + [float(x) for x in matrix[i]] for i, n in enumerate(names)],
                           note="Pearson correlation of the directional residuals (each unit prediction's part "
                                "orthogonal to its unit target; oof.residuals), all images. The stacker gains "
                                "only where residuals differ: lower is more useful."))
        items.append(Figure("residual_heatmap", plots.heatmap(matrix, names, names, "residual correlation",
                                                              vmin=min(0.0, float(matrix.min())), vmax=1.0),
                            "pairwise correlation of OOF residuals"))
    else:
        items.append("one run: no residual correlation")
    items += drop_one_items(an)
    return Section("Diversity", "diversity", [], items)


def drop_one_items(an):
    ens = an.inputs.ensemble
    if ens is None:
        return ["no --ensemble: drop-one marginal values left out"]
    sc = ens.scores
    drop = sc.get("drop_one")
    full = (sc.get("methods") or {}).get("per_model")
    if not drop or full is None:
        return [f"{ens.path}/scores.json has no drop-one scores (an older ensemble.fit, or per_model not evaluated)"]
    full_folds = _per_fold_list(full, an.fold_values, sc.get("folds"))
    rows = []
    for model, entry in drop.items():
        folds = _per_fold_list(entry, an.fold_values, sc.get("folds"))
        marg = [None if a is None or b is None else a - b for a, b in zip(full_folds, folds)]
        rows.append([model, entry.get("overall"), full["overall"] - entry["overall"]] + marg)
    rows.sort(key=lambda r: -r[2])
    cols = ["model", "per_model blend without it", "marginal value"] + fold_columns(an)
    table = Table("drop_one", cols, rows, formats={c: DIFF for c in ["marginal value"] + fold_columns(an)},
                  note=f"Nested-CV score of the per_model blend refitted without the model; marginal value = the full "
                       f"per_model blend's {full['overall']:.4f} minus that (per fold likewise). Negative: the blend "
                       "does better without it.")
    fig = Figure("drop_one_bars", plots.bars([r[0] for r in rows], [r[2] for r in rows],
                                             "marginal value (drop-one, nested CV)", "cosine lost without the model"),
                 "each model's marginal value in the per_model blend")
    return [table, fig]


def stacker_section(an):
    ens = an.inputs.ensemble
    if ens is None:
        return Section("Stacker", "stacker", ["no --ensemble given: stacker details left out"], [])
    sc = ens.scores
    items = []
    paragraphs = [f"{ens.path}: chosen method {ens.method} (by nested CV among "
                  f"{', '.join(sc.get('methods_evaluated') or list(sc.get('methods') or {}))})."]
    w = ens.weights
    if w is not None:
        W = w["weights"]
        per_model = sc.get("per_model_weights") or {}
        rows = [[m, per_model.get(m), float(W[i].mean()), float(W[i].std()), float(W[i].min()), float(W[i].max())]
                for i, m in enumerate(w["models"])]
        items.append(Table("model_weights", ["model", "per_model weight", f"{w['method']}: mean weight",
                                             "std over dims", "min", "max"], rows,
                           note="per_model weight: the per_model blend refitted on all OOF rows (scores.json); the "
                                f"other columns summarise weights.npz ({w['method']}) over the 384 dimensions."))
        if np.all(W == W[:, :1]):
            items.append(f"weights.npz ({w['method']}) holds one weight per model, the same in every dimension")
        else:
            items.append(Figure("weights_heatmap", plots.weights_heatmap(W, w["models"]),
                                f"weights.npz ({w['method']}): weight of each model in each output dimension"))
    per_dim = sc.get("per_dim") or {}
    if per_dim.get("shrinkage_per_fold"):
        rows = [[str(k), v] for k, v in per_dim["shrinkage_per_fold"].items()]
        items.append(Table("shrinkage_per_fold", ["outer fold", "per_dim shrinkage (inner CV)"], rows,
                           formats={"per_dim shrinkage (inner CV)": "{:g}"},
                           note=f"final shrinkage (refit on all rows): {sc.get('chosen_shrinkage')}"))
    if per_dim.get("cv_by_shrinkage"):
        items.append(Table("cv_by_shrinkage", ["shrinkage", "plain K-fold score"],
                           [[k, v] for k, v in per_dim["cv_by_shrinkage"].items()]))
    items += ridge_items(ens, sc)
    return Section("Stacker", "stacker", paragraphs, items)


def ridge_items(ens, sc):
    items = []
    ridge = sc.get("ridge")
    if ridge and ridge.get("alpha_per_fold"):
        items.append(Table("ridge_alpha_per_fold", ["outer fold", "ridge alpha (inner CV)"],
                           [[str(k), v] for k, v in ridge["alpha_per_fold"].items()],
                           formats={"ridge alpha (inner CV)": "{:g}"},
                           note=f"final alpha: {ridge.get('chosen_alpha')}"))
    from ensemble.apply import RIDGE_FILE

    path = ens.path / RIDGE_FILE
    if path.is_file():
        from ensemble.ridge_stacker import load_ridge

        st = load_ridge(path)
        d = st.coef.shape[0]
        blocks = st.coef.reshape(d, len(st.models), d)  # [out dim, model, in dim]
        diag = np.stack([np.diagonal(blocks[:, m, :]) for m in range(len(st.models))])
        sq = (blocks.astype(np.float64) ** 2).sum(axis=(0, 2))
        rows = [[m, float(diag[i].mean()), 1.0 - float((diag[i].astype(np.float64) ** 2).sum() / max(sq[i], 1e-30))]
                for i, m in enumerate(st.models)]
        items.append(Table("ridge_blocks", ["model", "mean own-dimension coefficient", "off-diagonal share"], rows,
                           formats={"off-diagonal share": "{:.1%}"},
                           note=f"ridge.npz (alpha {st.alpha:g}): coefficient of output dimension d on the model's "
                                "dimension d, and the share of the squared coefficients on other dimensions "
                                "(how much the ridge stacker mixes dimensions)."))
        title = "ridge: own-dimension coefficients (rows: models, columns: dimensions)"
        items.append(Figure("ridge_diag", plots.weights_heatmap(diag, st.models, title),
                            "ridge.npz: each model's own-dimension coefficient per output dimension"))
    return items
