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


def build_corpus(sources, out_dir, settings=None, progress=True):
    """Build and write DIR/prompts.csv, DIR/dropped.csv and DIR/corpus.json; returns corpus.json's dict."""
    st = settings or Settings()
    out_dir = Path(out_dir)
    clock, t = {}, time.perf_counter()
    t_start = t

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        clock[name] = round(now - t, 3)
        t = now

    raw, src = [], []
    for k, s in enumerate(sources):
        rows = read_source(s, st.limit)
        raw += rows
        src += [k] * len(rows)
    src = np.asarray(src, dtype=np.int64)
    n = len(raw)
    reason = np.full(n, "kept", dtype=object)
    dup_of = np.full(n, -1, dtype=np.int64)
    cosine = np.full(n, np.nan)
    lap("read")

    text = [clean_prompt(r) for r in raw]
    alive = np.array([bool(x) for x in text], dtype=bool)
    reason[~alive] = "empty"
    idx = np.flatnonzero(alive)
    first = exact_duplicates([text[i] for i in idx])
    dup = first >= 0
    reason[idx[dup]] = "exact_dups"
    dup_of[idx[dup]] = idx[first[dup]]
    idx = idx[~dup]
    lap("clean")

    embedder = str(st.embedder or default_embedder_path())
    lengths = minilm_lengths([text[i] for i in idx], embedder)
    reason[idx[lengths < st.min_tokens]] = "too_short"
    reason[idx[lengths > st.max_tokens]] = "too_long"
    idx = idx[(lengths >= st.min_tokens) & (lengths <= st.max_tokens)]
    clip = np.full(n, -1, dtype=np.int64)
    clip[idx] = clip_lengths([text[i] for i in idx])
    clip_seen = np.zeros(n, dtype=bool)
    clip_seen[idx] = True
    if st.max_clip_tokens is not None:
        over = clip[idx] > st.max_clip_tokens
        reason[idx[over]] = "too_long_clip"
        idx = idx[~over]
    lap("tokens")

    embedding = {"texts": int(idx.size), "embedded": 0, "from_cache": 0,
                 "cache": None if st.cache_dir is None else str(st.cache_dir)}
    dedup = {"threshold": st.dedup_threshold, "mode": None, "pairs": 0}
    if st.dedup_threshold <= 1.0 and idx.size:
        texts = [text[i] for i in idx]
        if st.cache_dir is None:
            emb = embed_prompts(texts, embedder, batch_size=st.batch_size, progress=progress)
            embedding["embedded"] = len(texts)
        else:
            emb, new = embed_prompts_cached(texts, st.cache_dir, embedder, batch_size=st.batch_size, progress=progress)
            embedding.update(embedded=int(new), from_cache=len(texts) - int(new))
        lap("embed")
        kept, by, pairs, mode = near_duplicates(emb, st.dedup_threshold, st.dedup_mode, progress=progress, seed=st.seed)
        drop = idx[~kept]
        reason[drop] = "near_dups"
        dup_of[drop] = idx[by[~kept]]
        cosine[drop] = np.einsum("ij,ij->i", emb[~kept], emb[by[~kept]])
        idx = idx[kept]
        dedup.update(mode=mode, pairs=pairs)
        lap("near_dedup")

    # Caps, then weighted sampling: both take a prefix of the source's fixed random order.
    per_source = [idx[src[idx] == k] for k in range(len(sources))]
    order = [rows[source_order(len(rows), st.seed, s.name)] for rows, s in zip(per_source, sources)]
    for k, s in enumerate(sources):
        if s.cap is not None and len(order[k]) > s.cap:
            reason[order[k][s.cap:]] = "capped"
            order[k] = order[k][:s.cap]
    if st.max_prompts is not None:
        quota = weighted_quotas([len(o) for o in order], [s.weight for s in sources], st.max_prompts)
        for k in range(len(sources)):
            reason[order[k][quota[k]:]] = "not_sampled"
            order[k] = order[k][:quota[k]]
    idx = np.sort(np.concatenate([np.zeros(0, np.int64)] + order))
    lap("sample")

    prompts = [text[i] for i in idx]
    ids = [prompt_id(p) for p in prompts]
    if len(set(ids)) != len(ids):  # 64-bit ids: never expected; refuse rather than write a broken set
        raise RuntimeError(f"imgId collision among {len(ids)} prompts; raise ID_HEX")
    names = [s.name for s in sources]
    save_csv(out_dir / PROMPTS_FILE, pd.DataFrame({"imgId": ids, "prompt": prompts, "source": [names[src[i]] for i in idx]}))
    gone = np.flatnonzero(reason != "kept")
    save_csv(out_dir / DROPPED_FILE, pd.DataFrame({
        "source": [names[src[i]] for i in gone],
        "reason": reason[gone],
        "prompt": [text[i] or raw[i] for i in gone],
        "duplicate_of": [text[dup_of[i]] if dup_of[i] >= 0 else "" for i in gone],
        "cosine": np.round(cosine[gone], 4),
    }))
    lap("write")
    clock["total"] = round(time.perf_counter() - t_start, 3)

    def counts(mask):
        c = {"read": int(mask.sum())}
        c.update({r: int((mask & (reason == r)).sum()) for r in DROP_REASONS + ("kept",)})
        c["over_clip_context"] = int((mask & clip_seen & (clip > CLIP_CONTEXT)).sum())
        c["kept_over_clip_context"] = int((mask & (reason == "kept") & (clip > CLIP_CONTEXT)).sum())
        return c

    corpus = {
        "n_prompts": len(prompts),
        "prompts_sha256": sha256_file(out_dir / PROMPTS_FILE),
        "sources": [{"name": s.name, "path": str(s.path), "files": s.files, "weight": s.weight, "column": s.column,
                     "format": s.format, "cap": s.cap, "counts": counts(src == k)} for k, s in enumerate(sources)],
        "total": counts(np.ones(n, dtype=bool)),
        "steps": list(STEPS),
        "settings": {**asdict(st), "embedder": embedder, "clip_context": CLIP_CONTEXT},
        "embedding": embedding,
        "dedup": dedup,
        "seconds": clock,
    }
    write_json(out_dir / CORPUS_FILE, corpus)  # last: its presence marks a complete build
    log.info("wrote %s: %d prompts", out_dir / PROMPTS_FILE, len(prompts))
    return corpus
