"""Blend several model runs into one L2-normalised 384-d prediction per image.

    blend.py        numpy-only: apply fitted linear weights (the part offline inference reuses)
    data.py         OOF predictions stacked as (M, N, 384), rows grouped by fold
    inputs.py       run directories -> aligned, validated, normalised arrays
    objective.py    chunked mean-cosine objectives and their analytic gradients
    stackers.py     fit equal / per-model / per-dimension weights
    ridge_stacker.py multi-output ridge on the concatenated predictions (fit from per-fold Gram sums; numpy-only apply)
    lgbm_stacker.py the non-linear alternative (one LightGBM regressor per dimension)
    ledger.py       fitted blends and the ledger that refuses to score a blend on a fold it saw
    grid_cv.py      inner-CV choice of a hyper-parameter (per-dim shrinkage, ridge alpha) per outer fold
    nested_cv.py    nested cross-validation over the runs' folds (+ drop-one scores, the OOF blend)
    apply.py        apply a fitted ensemble folder; owns that folder's file names
    fit.py          the CLI: python -m ensemble.fit --runs RUN_DIR ...

Nothing here imports torch or `models/`: it reads only the files runs write.
"""
