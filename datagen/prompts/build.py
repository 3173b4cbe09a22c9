"""The corpus build: read -> clean -> exact dedup -> token bounds -> near dedup -> caps / sampling.

Rows are kept in priority order (sources in the order given, then file order); every dropped
row is counted under its own source and the first step that dropped it, so per source
    read = empty + exact_dups + too_short + too_long + too_long_clip + near_dups + capped + not_sampled + kept
"""
import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.dataset import PROMPTS_FILE
from core.io import save_csv, sha256_file, write_json
from core.targets import DEFAULT_TEXT_CACHE, default_embedder_path, embed_prompts, embed_prompts_cached
from datagen.prompts.clean import CLIP_CONTEXT, MINILM_MAX_SEQ, clean_prompt, clip_lengths, minilm_lengths
from datagen.prompts.dedup import exact_duplicates, near_duplicates
from datagen.prompts.sample import source_order, weighted_quotas
from datagen.prompts.sources import read_source

log = logging.getLogger(__name__)

CORPUS_FILE = "corpus.json"
DROPPED_FILE = "dropped.csv"
OUTPUT_COLUMNS = ("imgId", "prompt", "source")
DROP_REASONS = ("empty", "exact_dups", "too_short", "too_long", "too_long_clip", "near_dups", "capped", "not_sampled")
STEPS = ("read",) + DROP_REASONS + ("kept",)
ID_HEX = 16  # imgId = first 16 hex digits of sha256(cleaned prompt)


def prompt_id(text):
    """The imgId of a prompt: a hash of its text, characters [0-9a-f]."""
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:ID_HEX]


@dataclass
class Settings:
    min_tokens: int = 0  # MiniLM sequence length bounds, [CLS]/[SEP] included
    max_tokens: int = MINILM_MAX_SEQ
    max_clip_tokens: int = None  # drop prompts longer than this many CLIP tokens (None: only count)
    dedup_threshold: float = 0.9  # > 1 turns near-duplicate removal (and embedding) off
    dedup_mode: str = "auto"
    max_prompts: int = None
    seed: int = 0
    limit: int = None  # rows read per source (trials)
    embedder: str = None
    cache_dir: str = DEFAULT_TEXT_CACHE  # None: no text cache
    batch_size: int = 128


class _Clock:
    """Seconds per step, in the order the steps ran."""

    def __init__(self):
        self.seconds, self.t0 = {}, time.perf_counter()
        self.t = self.t0

    def lap(self, name):
        now = time.perf_counter()
        self.seconds[name] = round(now - self.t, 3)
        self.t = now

    def total(self):
        self.seconds["total"] = round(time.perf_counter() - self.t0, 3)
        return self.seconds


class _Rows:
    """Every row read, in priority order, with the step that dropped it (or "kept") and what it repeats."""

    def __init__(self, sources, limit):
        self.raw, src = [], []
        for k, s in enumerate(sources):
            rows = read_source(s, limit)
            self.raw += rows
            src += [k] * len(rows)
        self.src = np.asarray(src, dtype=np.int64)
        n = len(self.raw)
        self.reason = np.full(n, "kept", dtype=object)
        self.dup_of = np.full(n, -1, dtype=np.int64)
        self.cosine = np.full(n, np.nan)
        self.clip = np.full(n, -1, dtype=np.int64)
        self.clip_seen = np.zeros(n, dtype=bool)
        self.text = None

    def texts(self, idx):
        return [self.text[i] for i in idx]

    def counts(self, mask):
        c = {"read": int(mask.sum())}
        c.update({r: int((mask & (self.reason == r)).sum()) for r in DROP_REASONS + ("kept",)})
        c["over_clip_context"] = int((mask & self.clip_seen & (self.clip > CLIP_CONTEXT)).sum())
        c["kept_over_clip_context"] = int((mask & (self.reason == "kept") & (self.clip > CLIP_CONTEXT)).sum())
        return c


def _clean_and_exact(rows):
    """Clean every row; drop empty ones and exact duplicates. Returns the surviving row indices."""
    rows.text = [clean_prompt(r) for r in rows.raw]
    alive = np.array([bool(x) for x in rows.text], dtype=bool)
    rows.reason[~alive] = "empty"
    idx = np.flatnonzero(alive)
    first = exact_duplicates(rows.texts(idx))
    dup = first >= 0
    rows.reason[idx[dup]] = "exact_dups"
    rows.dup_of[idx[dup]] = idx[first[dup]]
    return idx[~dup]


def _token_bounds(rows, idx, st, embedder):
    """MiniLM token bounds, then the CLIP token count (always counted; a drop only with max_clip_tokens)."""
    lengths = minilm_lengths(rows.texts(idx), embedder)
    rows.reason[idx[lengths < st.min_tokens]] = "too_short"
    rows.reason[idx[lengths > st.max_tokens]] = "too_long"
    idx = idx[(lengths >= st.min_tokens) & (lengths <= st.max_tokens)]
    rows.clip[idx] = clip_lengths(rows.texts(idx))
    rows.clip_seen[idx] = True
    if st.max_clip_tokens is not None:
        over = rows.clip[idx] > st.max_clip_tokens
        rows.reason[idx[over]] = "too_long_clip"
        idx = idx[~over]
    return idx


def _near_dedup(rows, idx, st, embedder, clock, progress):
    """Embed the surviving prompts (through the text cache) and drop near duplicates, keep-first."""
    embedding = {"texts": int(idx.size), "embedded": 0, "from_cache": 0,
                 "cache": None if st.cache_dir is None else str(st.cache_dir)}
    dedup = {"threshold": st.dedup_threshold, "mode": None, "pairs": 0}
    if st.dedup_threshold > 1.0 or not idx.size:
        return idx, embedding, dedup
    texts = rows.texts(idx)
    if st.cache_dir is None:
        emb = embed_prompts(texts, embedder, batch_size=st.batch_size, progress=progress)
        embedding["embedded"] = len(texts)
    else:
        emb, new = embed_prompts_cached(texts, st.cache_dir, embedder, batch_size=st.batch_size, progress=progress)
        embedding.update(embedded=int(new), from_cache=len(texts) - int(new))
    clock.lap("embed")
    kept, by, pairs, mode = near_duplicates(emb, st.dedup_threshold, st.dedup_mode, progress=progress, seed=st.seed)
    drop = idx[~kept]
    rows.reason[drop] = "near_dups"
    rows.dup_of[drop] = idx[by[~kept]]
    rows.cosine[drop] = np.einsum("ij,ij->i", emb[~kept], emb[by[~kept]])
    dedup.update(mode=mode, pairs=pairs)
    clock.lap("near_dedup")
    return idx[kept], embedding, dedup


def _caps_and_sampling(rows, idx, sources, st):
    """Caps, then weighted sampling: both take a prefix of the source's fixed random order."""
    per_source = [idx[rows.src[idx] == k] for k in range(len(sources))]
    order = [r[source_order(len(r), st.seed, s.name)] for r, s in zip(per_source, sources)]
    for k, s in enumerate(sources):
        if s.cap is not None and len(order[k]) > s.cap:
            rows.reason[order[k][s.cap:]] = "capped"
            order[k] = order[k][:s.cap]
    if st.max_prompts is not None:
        quota = weighted_quotas([len(o) for o in order], [s.weight for s in sources], st.max_prompts)
        for k in range(len(sources)):
            rows.reason[order[k][quota[k]:]] = "not_sampled"
            order[k] = order[k][:quota[k]]
    return np.sort(np.concatenate([np.zeros(0, np.int64)] + order))


def _write_tables(rows, idx, names, out_dir):
    """prompts.csv (the kept rows) and dropped.csv (every other row, its reason and what it repeats)."""
    prompts = rows.texts(idx)
    ids = [prompt_id(p) for p in prompts]
    if len(set(ids)) != len(ids):  # 64-bit ids: never expected; refuse rather than write a broken set
        raise RuntimeError(f"imgId collision among {len(ids)} prompts; raise ID_HEX")
    src = rows.src
    save_csv(out_dir / PROMPTS_FILE, pd.DataFrame({"imgId": ids, "prompt": prompts,
                                                   "source": [names[src[i]] for i in idx]}))
    gone = np.flatnonzero(rows.reason != "kept")
    save_csv(out_dir / DROPPED_FILE, pd.DataFrame({
        "source": [names[src[i]] for i in gone],
        "reason": rows.reason[gone],
        "prompt": [rows.text[i] or rows.raw[i] for i in gone],
        "duplicate_of": [rows.text[rows.dup_of[i]] if rows.dup_of[i] >= 0 else "" for i in gone],
        "cosine": np.round(rows.cosine[gone], 4),
    }))
    return len(prompts)


def build_corpus(sources, out_dir, settings=None, progress=True):
    """Build and write DIR/prompts.csv, DIR/dropped.csv and DIR/corpus.json; returns corpus.json's dict."""
    st = settings or Settings()
    out_dir = Path(out_dir)
    clock = _Clock()
    rows = _Rows(sources, st.limit)
    clock.lap("read")
    idx = _clean_and_exact(rows)
    clock.lap("clean")
    embedder = str(st.embedder or default_embedder_path())
    idx = _token_bounds(rows, idx, st, embedder)
    clock.lap("tokens")
    idx, embedding, dedup = _near_dedup(rows, idx, st, embedder, clock, progress)
    idx = _caps_and_sampling(rows, idx, sources, st)
    clock.lap("sample")
    n_prompts = _write_tables(rows, idx, [s.name for s in sources], out_dir)
    clock.lap("write")
    corpus = {
        "n_prompts": n_prompts,
        "prompts_sha256": sha256_file(out_dir / PROMPTS_FILE),
        "sources": [{"name": s.name, "path": str(s.path), "files": s.files, "weight": s.weight, "column": s.column,
                     "format": s.format, "cap": s.cap, "counts": rows.counts(rows.src == k)}
                    for k, s in enumerate(sources)],
        "total": rows.counts(np.ones(len(rows.raw), dtype=bool)),
        "steps": list(STEPS),
        "settings": {**asdict(st), "embedder": embedder, "clip_context": CLIP_CONTEXT},
        "embedding": embedding,
        "dedup": dedup,
        "seconds": clock.total(),
    }
    write_json(out_dir / CORPUS_FILE, corpus)  # last: its presence marks a complete build
    log.info("wrote %s: %d prompts", out_dir / PROMPTS_FILE, n_prompts)
    return corpus
