"""Blend several model runs into one L2-normalised 384-d prediction per image.

    inputs.py        run directories -> aligned, validated, normalised arrays (StackInputs)
    data.py          OOF predictions stacked as (M, N, 384), rows grouped by fold (StackData)
    objective.py     chunked mean-cosine objectives and their analytic gradients
    weight_fits.py   fit equal / per-model / per-dimension blend weights
    ridge_stacker.py multi-output ridge on the concatenated predictions (fit from per-fold Gram sums; numpy-only apply)
    lgbm_stacker.py  the non-linear alternative (one LightGBM regressor per dimension)
    ledger.py        fitted blends and the ledger that refuses to score a blend on a fold it saw
    grid_cv.py       inner-CV choice of a hyper-parameter (per-dim shrinkage, ridge alpha) per outer fold
    nested_cv.py     nested cross-validation of every method over the runs' folds, the chosen method's
                     refit on all rows (+ drop-one scores, the OOF blend)
    blend.py         numpy-only: row normalisation, weights.npz, applying linear weights (what offline inference reuses)
    apply.py         apply a fitted ensemble folder; owns that folder's file names
    fit.py           the CLI: python -m ensemble.fit --runs RUN_DIR ...

Nothing here imports torch or `models/`: it reads only the files runs write.
"""
