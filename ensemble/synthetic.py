"""Synthetic OOF predictions with a known structure, for tests and benchmarks.

Targets are unit vectors around a shared mean direction (like sentence embeddings). Model m
predicts t_i + sigma[m, d] * e_m[i, d], where e_m mixes noise shared by all models (fraction
`shared`) with the model's own; the per-dimension noise levels `sigma` decide which model is
good where, so the best blend is known by construction.
"""
import numpy as np

from core import EMBEDDING_DIM


def _unit(x):
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def make_targets(n, dim=EMBEDDING_DIM, seed=0, mean_strength=0.5, mean_seed=None):
    """(n, dim) unit targets around a mean direction drawn from `mean_seed` (default: `seed`)."""
    mu = _unit(np.random.default_rng(seed if mean_seed is None else mean_seed).standard_normal(dim))
    rng = np.random.default_rng(seed)
    if mean_seed is None:
        rng.standard_normal(dim)  # keep the stream as it was when mu came from the same generator
    return _unit(mean_strength * mu + rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim))


def noise_levels(n_models, dim=EMBEDDING_DIM, seed=0, base=1.2, spread=0.3):
    """Per-model, per-dimension noise levels: base * exp(spread * z), a mild heterogeneity."""
    rng = np.random.default_rng(seed + 1)
    return (base * np.exp(spread * rng.standard_normal((n_models, dim)))).astype(np.float32)


def make_predictions(targets, sigma, seed=0, shared=0.3, out=None, chunk=16384):
    """(M, N, D) float32 raw (un-normalised) predictions; `out` may be a writable memmap."""
    targets = np.asarray(targets)
    n, dim = targets.shape
    sigma = np.asarray(sigma, dtype=np.float32)
    m = sigma.shape[0]
    if out is None:
        out = np.empty((m, n, dim), dtype=np.float32)
    rng = np.random.default_rng(seed + 2)
    a, b = np.sqrt(shared), np.sqrt(1.0 - shared)
    scale = 1.0 / np.sqrt(dim)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        t = np.asarray(targets[s:e], dtype=np.float32)
        common = rng.standard_normal((e - s, dim), dtype=np.float32)
        for k in range(m):
            own = rng.standard_normal((e - s, dim), dtype=np.float32)
            out[k, s:e] = t + sigma[k] * scale * (a * common + b * own)
    return out


def make_folds(n, k=5, seed=0):
    """Balanced random fold labels 0..k-1."""
    rng = np.random.default_rng(seed + 3)
    return rng.permutation(np.arange(n) % k).astype(np.int64)


def make_groups(folds):
    """Prompt-group labels nested in the folds: consecutive rows of a fold paired (groups of 2, one of 1 per odd fold)."""
    folds = np.asarray(folds)
    groups = np.empty(len(folds), dtype=np.int64)
    start = 0
    for f in np.unique(folds):
        rows = np.flatnonzero(folds == f)
        groups[rows] = start + np.arange(len(rows)) // 2
        start += (len(rows) + 1) // 2
    return groups


def make_ids(n, prefix="img"):
    return [f"{prefix}{i:07d}" for i in range(n)]


def write_targets_folder(path, ids, targets):
    """A targets folder in core.targets' format (targets.npy, ids.csv, meta.json)."""
    import pandas as pd

    from core.io import save_csv, save_npy, sha256_file, sha256_strings, write_json
    from core.targets import IDS_FILE, META_FILE, TARGETS_FILE

    save_npy(path / TARGETS_FILE, np.asarray(targets, dtype=np.float32))
    save_csv(path / IDS_FILE, pd.DataFrame({"imgId": list(ids)}))
    write_json(path / META_FILE, {"key": sha256_strings(ids), "n": len(ids), "dim": int(np.shape(targets)[1]),
                                  "embedder": "synthetic", "targets_sha256": sha256_file(path / TARGETS_FILE)})
    return path


def write_synthetic_project(root, n=3000, n_test=200, sigma=None, n_models=3, k=5, seed=0, shared=0.3,
                            names=None, test_ids=None, run_ids=None):
    """Write targets, folds.csv, groups.csv and one run directory per model under `root`.

    Returns dict(runs=[run dirs], targets=dir, folds=folds.csv, ids, test_ids, T, X (M, N, D) raw OOF,
    X_test, folds_array, groups_array, names). `run_ids` / `test_ids` (per-run lists) let a test break the alignment on purpose.
    """
    from pathlib import Path

    from core.folds import groups_path, save_folds, save_groups
    from core.runs import write_run

    root = Path(root)
    sigma = noise_levels(n_models, seed=seed) if sigma is None else np.asarray(sigma, dtype=np.float32)
    n_models = sigma.shape[0]
    names = names or [f"model{m}" for m in range(n_models)]
    ids = make_ids(n)
    t_ids = make_ids(n_test, prefix="test")
    T = make_targets(n + n_test, seed=seed)
    X_all = make_predictions(T, sigma, seed=seed, shared=shared)
    X, X_test = X_all[:, :n], X_all[:, n:]
    folds = make_folds(n, k=k, seed=seed)
    folds_path = root / "folds.csv"
    meta = save_folds(folds_path, ids, folds, {"k": k, "synthetic": True})
    groups = make_groups(folds)
    save_groups(groups_path(folds_path), ids, groups)
    targets_dir = write_targets_folder(root / "targets", ids, T[:n])
    runs = []
    for m, name in enumerate(names):
        rid = run_ids[m] if run_ids is not None else ids
        tid = test_ids[m] if test_ids is not None else t_ids
        pos = {i: j for j, i in enumerate(ids)}
        tpos = {i: j for j, i in enumerate(t_ids)}
        oof = X[m][[pos.get(i, 0) for i in rid]]
        test = X_test[m][[tpos.get(i, 0) for i in tid]]
        run_dir = root / "runs" / name
        metrics = {"folds": {"path": str(folds_path), "sha256": meta["folds_sha256"]},
                   "targets": {"path": str(targets_dir)}, "oof_cosine": None}
        write_run(run_dir, rid, oof, tid, test, T[:n].mean(axis=0), metrics, [])
        runs.append(run_dir)
    return {"runs": runs, "targets": targets_dir, "folds": folds_path, "ids": ids, "test_ids": t_ids,
            "T": T[:n], "X": X, "X_test": X_test, "folds_array": folds, "groups_array": groups, "names": names}
