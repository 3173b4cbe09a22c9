"""The prompt bank of a retrieval run: its prompts' MiniLM embeddings, and the folds each prompt matches.

    RUN/bank/values.npy    float16 (n, 384): unit MiniLM embeddings of the bank's distinct prompts (what a
                           prediction averages; with query: run also the search keys)
    RUN/bank/keys.npy      query: clip: float16 (n, d) text-tower features of the prompts (as loaded; a
                           fine-tuned fold's are RUN/folds/fold<k>/bank_keys.npy)
    RUN/bank/matches.npy   bool (n, K): bank prompt i matches a training prompt of fold k
    RUN/bank/bank.json     what it holds (source file and sha256, sizes, threshold, matches per fold) and its
                           key: a bank whose key is unchanged is read, not rebuilt

Honest CV: training prompts come from the same corpus as the bank, so a held-out image's own prompt, or
a near-copy, is often in it, while a test prompt is not. A bank prompt *matches* fold k when its text
is a fold-k training prompt or its cosine to one is >= the folds' grouping threshold (core.folds joins
such prompts into one group, so they would have shared a fold). Fold k's OOF rows never retrieve a
prompt matching fold k; the other folds' prompts are legal; test rows search the whole bank. The
cosine matches come from one faiss search of the bank against the training prompts (exact up to
FLAT_MAX_ROWS training prompts, IVF above: a near-copy in a cell not probed would be missed), taking
more neighbours where every one found still matched, so a prompt near several folds matches each.

The embeddings come through the text cache (core.text_cache, CACHE_DIR/text_embeddings): each
distinct prompt is embedded once for every run and bank that holds it.
"""
import logging
import time
from pathlib import Path

import numpy as np

from core import EMBEDDING_DIM
from core.dataset import read_prompts
from core.errors import DataError
from core.io import atomic_path, read_json, save_npy, sha256_file, sha256_json, sha256_strings, write_json
from core.metric import l2_normalize
from models.knn_index import BankIndex, resolve_kind

BANK_DIR = "bank"
VALUES_FILE = "values.npy"
MATCHES_FILE = "matches.npy"
BANK_META = "bank.json"
KEYS_FILE = "keys.npy"  # query: clip, towers as loaded: the bank's text-tower features (fine-tuned: per fold)
# What offline inference reads (and a Kaggle pack carries): the values, the keys when they are not the values,
# what the bank holds. matches.npy is for the OOF predictions only.
INFERENCE_FILES = (VALUES_FILE, KEYS_FILE, BANK_META)
DEFAULT_MATCH_THRESHOLD = 0.9  # core.folds' default grouping threshold
EMBED_CHUNK = 65_536  # bank prompts embedded (or read from the text cache) and written at a time
MATCH_CHUNK = 65_536  # bank prompts matched against the training prompts at a time
MATCH_K = 16  # training neighbours looked at first; x4 while every one still matches
_log = logging.getLogger(__name__)


def bank_dir(run_dir):
    """RUN/bank."""
    return Path(run_dir) / BANK_DIR


def text_cache_dir(cfg):
    """The text cache the targets stage fills (run_all: WORK/cache/text_embeddings)."""
    from core.targets import DEFAULT_TEXT_CACHE

    return Path(cfg["data"]["cache_dir"]) / Path(DEFAULT_TEXT_CACHE).name


def folds_threshold(folds_path, configured=None):
    """The cosine at or above which a bank prompt matches a training prompt: `configured`, else the threshold
    the folds were grouped at (folds.json beside folds.csv), else core.folds' default."""
    if configured is not None:
        return float(configured)
    meta = Path(folds_path).with_suffix(".json")  # core.folds writes folds.json beside folds.csv
    found = read_json(meta).get("threshold") if meta.is_file() else None
    return float(found) if found is not None else DEFAULT_MATCH_THRESHOLD


_FILE_SHA = {}


def file_sha256(path):
    """sha256 of a (maybe multi-GB) file, once per process while its path, size and mtime stay."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_SHA:
        _FILE_SHA[key] = sha256_file(path)
    return _FILE_SHA[key]


def bank_prompts(path, training_prompts=None):
    """The bank's distinct prompts (stripped, first occurrence kept), `training_prompts` after the file's."""
    frame = read_prompts(path)
    texts = [str(p).strip() for p in frame["prompt"]]
    if training_prompts is not None:
        texts += [str(p).strip() for p in training_prompts]
    return list(dict.fromkeys(texts))


def embed_bank(texts, cache_dir, path, progress=False):
    """Unit float16 MiniLM rows of `texts` written to `path` (.npy, atomically) EMBED_CHUNK at a time through
    the text cache; returns it memory-mapped."""
    from core.targets import embed_prompts_cached

    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(texts), EMBEDDING_DIM))
        for s in range(0, len(texts), EMBED_CHUNK):
            rows, _ = embed_prompts_cached(texts[s:s + EMBED_CHUNK], cache_dir, progress=progress)
            out[s:s + len(rows)] = l2_normalize(rows)
        out.flush()
        del out
    return np.load(path, mmap_mode="r")


def fold_matches(values, texts, train_targets, train_texts, folds, k_folds, threshold, kind="auto", seed=0):
    """bool (n, K): bank row i is a fold-k training prompt's text, or within `threshold` cosine of one."""
    out = np.zeros((len(values), k_folds), dtype=bool)
    fold_of = {}
    for text, fold in zip(train_texts, folds):
        fold_of.setdefault(str(text).strip(), set()).add(int(fold))
    for i, text in enumerate(texts):
        for fold in fold_of.get(text, ()):
            out[i, fold] = True
    n_train = len(train_targets)
    index = BankIndex(train_targets, resolve_kind(kind, n_train), seed=seed)
    for s in range(0, len(values), MATCH_CHUNK):
        query = l2_normalize(values[s:s + MATCH_CHUNK])
        rows, m = np.arange(len(query)), MATCH_K
        while len(rows):
            sims, nbr = index.search(query[rows], min(m, n_train))
            hit = sims >= threshold
            r, j = np.nonzero(hit)
            out[s + rows[r], np.asarray(folds)[nbr[r, j]]] = True
            if m >= n_train:
                break
            rows, m = rows[hit[:, -1]], m * 4  # every neighbour found matched: there may be more
    return out


class Bank:
    """A built bank: values (float16 memmap), matches (bool (n, K)) and its bank.json."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.meta = read_json(self.folder / BANK_META)
        self.values = np.load(self.folder / VALUES_FILE, mmap_mode="r")
        self.matches = np.load(self.folder / MATCHES_FILE)

    @property
    def n(self):
        return len(self.values)


def bank_key(cfg, data, source_sha, threshold):
    from core.targets import default_embedder_path, embedder_fingerprint

    r = cfg["retrieval"]
    return sha256_json({"bank": source_sha, "add_training_prompts": r["add_training_prompts"],
                        "training_prompts": sha256_strings(data.train["prompt"].tolist()),
                        "folds": data.provenance["folds"]["sha256"], "threshold": threshold,
                        "embedder": embedder_fingerprint(default_embedder_path())})


def build_bank(cfg, data, run_dir, progress=False):
    """The run's bank (RUN/bank/), built unless bank.json holds the same key: the prompts' embeddings, then the
    folds they match."""
    r = cfg["retrieval"]
    source = Path(r["bank"])
    if not source.is_file():
        raise DataError(source, "bank prompts file not found (retrieval.bank: a prompts.csv, e.g. from "
                                "`python -m datagen.prompts`)")
    threshold = folds_threshold(cfg["data"]["folds"], r["match_threshold"])
    source_sha = file_sha256(source)
    key = bank_key(cfg, data, source_sha, threshold)
    folder = bank_dir(run_dir)
    if (folder / BANK_META).is_file() and read_json(folder / BANK_META).get("key") == key:
        return Bank(folder)
    t0 = time.time()
    texts = bank_prompts(source, data.train["prompt"] if r["add_training_prompts"] else None)
    _log.info("retrieval bank: %d distinct prompts from %s%s", len(texts), source,
              " and the training prompts" if r["add_training_prompts"] else "")
    values = embed_bank(texts, text_cache_dir(cfg), folder / VALUES_FILE, progress)
    t_embed = time.time() - t0
    matches = fold_matches(values, texts, data.targets, data.train["prompt"].tolist(), data.folds, data.k,
                           threshold, r["index"], cfg["seed"])
    save_npy(folder / MATCHES_FILE, matches)
    per_fold = matches.sum(axis=0).tolist()
    write_json(folder / BANK_META, {
        "key": key, "source": str(source), "source_sha256": source_sha, "n": len(texts),
        "training_prompts_added": bool(r["add_training_prompts"]), "texts_sha256": sha256_strings(texts),
        "match_threshold": threshold, "matches_per_fold": per_fold,
        "seconds": {"embed": round(t_embed, 2), "match": round(time.time() - t0 - t_embed, 2)}})
    _log.info("retrieval bank: %d prompts; matching a training prompt (cosine >= %.2f), per fold: %s (%.0f s)",
              len(texts), threshold, per_fold, time.time() - t0)
    return Bank(folder)

