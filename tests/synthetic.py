"""Synthetic data with a known structure, for tests and benchmarks (benches import it from here).

Targets are unit vectors around a shared mean direction (like sentence embeddings). Model m
predicts t_i + sigma[m, d] * e_m[i, d], where e_m mixes noise shared by all models (fraction
`shared`) with the model's own; the per-dimension noise levels `sigma` decide which model is
good where, so the best blend is known by construction.

- vectors: `make_targets`, `noise_levels`, `make_predictions`, `fill_targets_and_predictions` (chunked, into
  memory maps), `planted_near_duplicates` (fold grouping), `mixture` + `clustered_unit_vectors` (kNN banks)
- labels and files: `make_folds`, `make_groups`, `make_ids`, `write_targets_folder`
- projects: `write_synthetic_project` (folds, groups, targets and runs, in memory: the stacker's tests) and
  `write_report_project` (everything the OOF report reads, memory-mapped: prompts, images, training logs,
  provenance, test targets; tests at demo size, bench.bench_report at 500,000 rows)
"""
from pathlib import Path

import numpy as np
import pandas as pd

from core import EMBEDDING_DIM
from core.folds import groups_path, save_folds, save_groups
from core.io import npy_writer, save_csv, sha256_file, sha256_strings, write_json
from core.runs import LOG_COLUMNS, write_run
from core.targets import IDS_FILE, META_FILE, TARGETS_FILE

SOURCES = ("laion", "diffusiondb", "chatgpt")
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qua", "bri", "dro", "fle", "gra", "pho", "str")
COMMON = ("a", "the", "of", "in", "with", "and", "portrait", "photo", "painting", "city", "forest", "cat", "dog",
          "robot", "castle", "sunset", "ocean", "mountain", "detailed", "render", "style", "neon", "ancient")


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


def fill_targets_and_predictions(T, X, sigma, seed=0, chunk=20000):
    """Fill targets T (N, D) and raw predictions X (M, N, D), memory maps, `chunk` rows at a time (one mean
    direction for all rows): the benches' and the report project's data at any N in bounded memory."""
    for s in range(0, len(T), chunk):
        e = min(s + chunk, len(T))
        T[s:e] = make_targets(e - s, seed=seed + s + 1, mean_seed=seed)
        make_predictions(T[s:e], sigma, seed=seed + s, out=X[:, s:e])


def make_folds(n, k=5, seed=0):
    """Balanced random fold labels 0..k-1."""
    rng = np.random.default_rng(seed + 3)
    return rng.permutation(np.arange(n) % k).astype(np.int64)


def make_groups(folds):
    """Prompt-group labels nested in the folds: consecutive rows of a fold paired (groups of 2, one of 1 per odd
    fold)."""
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


def planted_near_duplicates(n, n_pairs, cos_lo=0.9, cos_hi=0.99, dim=EMBEDDING_DIM, seed=0):
    """Return (x, src, dst): n random unit vectors where x[dst[i]] has cosine in [cos_lo, cos_hi] with x[src[i]].

    Random 384-d unit vectors are nearly orthogonal (|cos| < 0.35 at n = 500,000), so the planted
    pairs are the only pairs above a 0.9 threshold.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    chosen = rng.choice(n, 2 * n_pairs, replace=False)
    src, dst = chosen[:n_pairs], chosen[n_pairs:]
    c = rng.uniform(cos_lo, cos_hi, size=(n_pairs, 1)).astype(np.float32)
    noise = x[dst] - np.sum(x[dst] * x[src], axis=1, keepdims=True) * x[src]  # orthogonal to src
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x[dst] = c * x[src] + np.sqrt(1 - c * c) * noise
    x[dst] /= np.linalg.norm(x[dst], axis=1, keepdims=True)
    return x, src, dst


def mixture(n_clusters, d, seed):
    """Centres (uniform on the sphere), lognormal weights and spreads of a mixture of gaussians on the sphere: two
    members of a cluster have a cosine of ~0.5-0.8, members of different clusters ~0 (clustered like real features,
    unlike random unit vectors, IVF's worst case)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n_clusters, d), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    w = rng.lognormal(0.0, 1.0, n_clusters)
    spread = rng.uniform(0.5, 1.0, n_clusters).astype(np.float32)  # member-member cosine 1 / (1 + s^2): 0.5-0.8
    return c, w / w.sum(), spread


def clustered_unit_vectors(path, n, d, centres, seed, chunk=65_536):
    """Write (n, d) float16 unit rows to a .npy at `path`, drawn from `centres = mixture(...)`."""
    rng = np.random.default_rng(seed)
    c, w, spread = centres
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, d))
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        who = rng.choice(len(c), m, p=w)
        x = rng.standard_normal((m, d), dtype=np.float32) * (spread[who, None] / np.sqrt(d)) + c[who]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:s + m] = x
    out.flush()
    del out


def write_targets_folder(path, ids, targets, chunk=65536):
    """A targets folder in core.targets' format (targets.npy, ids.csv, meta.json); `targets` anything sliced by
    rows (a memory map, `Reordered`), written `chunk` rows at a time."""
    n, dim = len(ids), int(np.shape(targets)[1])
    with npy_writer(path / TARGETS_FILE, (n, dim)) as write:
        for s in range(0, n, chunk):
            write(s, min(s + chunk, n), np.asarray(targets[s:s + chunk], dtype=np.float32))
    save_csv(path / IDS_FILE, pd.DataFrame({"imgId": list(ids)}))
    write_json(path / META_FILE, {"key": sha256_strings(ids), "n": len(ids), "dim": int(np.shape(targets)[1]),
                                  "embedder": "synthetic", "targets_sha256": sha256_file(path / TARGETS_FILE)})
    return path


class Reordered:
    """Rows of `array` in the order `index`, read per slice: what write_run / write_targets_folder read."""

    def __init__(self, array, index):
        self.array, self.index = array, np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index),) + tuple(array.shape[1:])

    def __len__(self):
        return len(self.index)

    def __getitem__(self, rows):
        return np.asarray(self.array[self.index[rows]])


def interleaved_order(folds):
    """Row order that cycles through the folds (fold 0's first row, fold 1's first row, ...), as a trainer's
    OOF file lists images: every chunk of rows holds rows of every fold."""
    folds = np.asarray(folds)
    position = np.empty(len(folds), dtype=np.int64)
    for f in np.unique(folds):
        rows = np.flatnonzero(folds == f)
        position[rows] = np.arange(len(rows))
    return np.lexsort((folds, position))


def write_stacker_project(root, n, m=4, k=5, seed=0, storage="float32", n_test=1000, chunk=20000):
    """The stacker bench's data at any N in bounded memory: bench.bench_stacker's synthetic set (the rows of its
    earlier in-memory version: image i in fold i * k // n, sorted) written as M run directories (oof.npy / test.npy
    as `storage`, rows interleaved across folds), their targets folder and folds.csv. Returns dict(runs, targets,
    folds)."""
    root = Path(root)
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    T = np.lib.format.open_memmap(tmp / "T.npy", mode="w+", dtype=np.float32, shape=(n, EMBEDDING_DIM))
    X = np.lib.format.open_memmap(tmp / "X.npy", mode="w+", dtype=np.float32, shape=(m, n, EMBEDDING_DIM))
    sigma = noise_levels(m, seed=seed, spread=0.1)
    fill_targets_and_predictions(T, X, sigma, seed=seed, chunk=chunk)
    ids, folds = make_ids(n), np.sort(np.arange(n) % k)
    order = interleaved_order(folds)
    folds_path, folds_sha256 = write_folds_and_groups(root, ids, folds, make_groups(folds), k)
    file_ids = [ids[i] for i in order]
    targets = write_targets_folder(root / "targets", file_ids, Reordered(T, order))
    t_test = make_targets(n_test, seed=seed + 10 ** 9, mean_seed=seed)
    x_test = make_predictions(t_test, sigma, seed=seed + 10 ** 9)
    test_ids = make_ids(n_test, prefix="test")
    runs = []
    for j in range(m):
        metrics = {"folds": {"path": str(folds_path), "sha256": folds_sha256}, "targets": {"path": str(targets)}}
        runs.append(root / "runs" / f"model{j}")
        write_run(runs[-1], file_ids, Reordered(X[j], order), test_ids, x_test[j], t_test.mean(axis=0), metrics, [],
                  storage=storage)
    del T, X
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return {"runs": runs, "targets": targets, "folds": folds_path}


def write_folds_and_groups(root, ids, folds, groups, k):
    """root/folds.csv and groups.csv beside it; returns (folds.csv's path, its sha256 as runs record it)."""
    folds_path = Path(root) / "folds.csv"
    meta = save_folds(folds_path, ids, folds, {"k": k, "synthetic": True})
    save_groups(groups_path(folds_path), ids, groups)
    return folds_path, meta["folds_sha256"]


def write_synthetic_project(root, n=3000, n_test=200, sigma=None, n_models=3, k=5, seed=0, shared=0.3,
                            names=None, test_ids=None, run_ids=None):
    """Write targets, folds.csv, groups.csv and one run directory per model under `root`.

    Returns dict(runs=[run dirs], targets=dir, folds=folds.csv, ids, test_ids, T, X (M, N, D) raw OOF,
    X_test, folds_array, groups_array, names). `run_ids` / `test_ids` (per-run lists) let a test break the
    alignment on purpose.
    """
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
    groups = make_groups(folds)
    folds_path, folds_sha256 = write_folds_and_groups(root, ids, folds, groups, k)
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
        metrics = {"folds": {"path": str(folds_path), "sha256": folds_sha256},
                   "targets": {"path": str(targets_dir)}, "oof_cosine": None}
        write_run(run_dir, rid, oof, tid, test, T[:n].mean(axis=0), metrics, [])
        runs.append(run_dir)
    return {"runs": runs, "targets": targets_dir, "folds": folds_path, "ids": ids, "test_ids": t_ids,
            "T": T[:n], "X": X, "X_test": X_test, "folds_array": folds, "groups_array": groups, "names": names}


def make_vocabulary(size, seed):
    rng = np.random.default_rng(seed)
    words = set(COMMON)
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5)))))
    return np.array(sorted(words))


def make_prompts(n, seed=0, vocab_size=20000):
    """n synthetic prompts of 4-40 words, Zipf-like word frequencies, and a source per prompt."""
    rng = np.random.default_rng(seed)
    vocab = make_vocabulary(vocab_size, seed)
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    vocab = vocab[rng.permutation(len(vocab))]
    lengths = rng.integers(4, 41, size=n)
    words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
    cuts = np.cumsum(lengths)[:-1]
    prompts = [" ".join(ws) for ws in np.split(words, cuts)]
    return prompts, rng.choice(SOURCES, size=n, p=[0.5, 0.3, 0.2])


def make_groups_and_folds(n, k, seed=0):
    """Prompt groups of 1-3 consecutive rows, each group in one fold."""
    rng = np.random.default_rng(seed + 5)
    starts = rng.random(n) < 0.7
    starts[0] = True
    groups = np.cumsum(starts) - 1
    fold_of_group = rng.integers(0, k, size=groups[-1] + 1)
    return groups, fold_of_group[groups]


def write_images(folder, ids, px=32, seed=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in ids:
        Image.fromarray(rng.integers(0, 256, size=(px, px, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def _provenance(folds_path, folds_sha256, targets, train, ids, test_ids):
    """What each run's metrics.json records of its inputs (the same for every run of a project)."""
    return {"folds": {"path": str(folds_path), "sha256": folds_sha256},
            "targets": {"path": str(targets), "key": sha256_strings(ids)},
            "train_images": {"path": str(train), "n": len(ids), "ids_sha256": sha256_strings(ids)},
            "test_images": {"path": None, "n": len(test_ids), "ids_sha256": sha256_strings(test_ids)}}


def _report_run_record(name, j, k, epochs, provenance):
    """Run j's metrics.json and training log (`epochs` per fold), as models.train writes them."""
    log = [[f, ep, 1.0 - 0.05 * ep - 0.01 * j, 0.5 + 0.02 * ep + 0.01 * j, 1e-3, 10.0]
           for f in range(k) for ep in range(epochs)]
    metrics = {"name": name, "model": "synthetic", "config": {"name": name, "train": {"lr": 1e-3 * (j + 1)}},
               "config_hash": sha256_strings([name]), "wall_seconds": 100.0 + j, "train_images_per_sec": 50.0 + j,
               "argv": ["python", "-m", "models.train", "--config", f"configs/{name}.yaml"], **provenance}
    return metrics, pd.DataFrame(log, columns=LOG_COLUMNS)


def write_report_project(root, n, m=4, k=5, n_test=200, seed=0, images=False, chunk=20000, epochs=3,
                         storage="float32"):
    """Everything the report reads, under `root` (runs' predictions stored as `storage`).

    Returns dict(runs, targets, test_targets, folds, train, ids, test_ids, names, groups, folds_array)."""
    root = Path(root)
    ids, test_ids = make_ids(n), make_ids(n_test, prefix="test")
    train = root / "data" / "train"
    prompts, sources = make_prompts(n, seed)
    save_csv(train / "prompts.csv", pd.DataFrame({"imgId": ids, "prompt": prompts, "source": sources}))
    if images:
        write_images(train / "images", ids, seed=seed)
    groups, folds = make_groups_and_folds(n, k, seed)
    folds_path, folds_sha256 = write_folds_and_groups(root, ids, folds, groups, k)
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    T = np.lib.format.open_memmap(tmp / "T.npy", mode="w+", dtype=np.float32, shape=(n + n_test, EMBEDDING_DIM))
    X = np.lib.format.open_memmap(tmp / "X.npy", mode="w+", dtype=np.float32, shape=(m, n + n_test, EMBEDDING_DIM))
    fill_targets_and_predictions(T, X, noise_levels(m, seed=seed, spread=0.1), seed=seed, chunk=chunk)
    targets = write_targets_folder(root / "targets" / "train", ids, T[:n])
    test_targets = write_targets_folder(root / "targets" / "test", test_ids, T[n:])
    names = [f"model{j}" for j in range(m)]
    provenance = _provenance(folds_path, folds_sha256, targets, train, ids, test_ids)
    runs = []
    for j, name in enumerate(names):
        metrics, log = _report_run_record(name, j, k, epochs, provenance)
        run_dir = root / "runs" / name
        write_run(run_dir, ids, X[j, :n], test_ids, X[j, n:], np.asarray(T[:n].mean(axis=0)), metrics, log,
                  storage=storage)
        runs.append(run_dir)
    del T, X
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return {"runs": runs, "targets": targets, "test_targets": test_targets, "folds": folds_path, "train": train,
            "ids": ids, "test_ids": test_ids, "names": names, "groups": groups, "folds_array": folds}
