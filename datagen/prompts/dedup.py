"""Deduplication, keep-first: rows are in priority order (sources in order, then file order).

Exact: a text seen before is dropped. Near: one sweep in priority order over the pairs with
cosine >= threshold; a row is dropped iff an earlier *kept* row is its neighbour. Unlike
union-find this does not chain: with A~B, B~C and A!~C, B goes (A kept) and C stays (its only
earlier neighbour B was dropped).
"""
import numpy as np

from core.folds import similar_pairs_exact, similar_pairs_fast

EXACT_UP_TO = 20_000  # mode "auto": all-pairs below this many rows, the IVF finder above
FAST_FROM = 100  # the IVF finder needs some rows per k-means cell; smaller sets are searched exactly


def exact_duplicates(texts):
    """Index of the first row with the same text, per row (-1 for first occurrences)."""
    first, out = {}, np.full(len(texts), -1, dtype=np.int64)
    for i, t in enumerate(texts):
        j = first.setdefault(t, i)
        if j != i:
            out[i] = j
    return out


def resolve_mode(mode, n):
    if mode == "auto":
        return "exact" if n <= EXACT_UP_TO else "fast"
    if mode not in ("exact", "fast"):
        raise ValueError(f"unknown dedup mode {mode!r} (exact, fast or auto)")
    return mode


def similar_pairs(emb, threshold, mode="exact", progress=False, seed=0):
    """All (i, j), i < j, with cosine >= threshold (fast mode: those the IVF search finds)."""
    if mode == "fast" and len(emb) >= FAST_FROM:
        chunks = similar_pairs_fast(emb, threshold, seed=seed, progress=progress)
    else:
        chunks = similar_pairs_exact(emb, threshold, progress=progress)
    a_acc, b_acc = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for a, b in chunks:
        a_acc.append(np.asarray(a, np.int64))
        b_acc.append(np.asarray(b, np.int64))
    a, b = np.concatenate(a_acc), np.concatenate(b_acc)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = np.unique(np.stack([lo, hi], axis=1), axis=0) if lo.size else np.zeros((0, 2), np.int64)
    return pairs[:, 0], pairs[:, 1]


def greedy_keep_first(n, lo, hi, emb=None):
    """Keep-first sweep over neighbour pairs (lo < hi). Returns (kept bool (n,), by int64 (n,)):
    `by[j]` is the kept earlier neighbour that dropped row j (the most similar one when `emb` is
    given, else the first), -1 for kept rows."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    if np.any(lo >= hi):
        raise ValueError("pairs must have lo < hi")
    order = np.lexsort((lo, hi))
    lo, hi = lo[order], hi[order]
    kept = np.ones(n, dtype=bool)
    by = np.full(n, -1, dtype=np.int64)
    js, starts = np.unique(hi, return_index=True)
    stops = np.append(starts[1:], hi.size)
    # Increasing j: every earlier row's fate is final when j is decided.
    for j, s, e in zip(js.tolist(), starts.tolist(), stops.tolist()):
        earlier = lo[s:e]
        alive = earlier[kept[earlier]]
        if alive.size:
            kept[j] = False
            by[j] = alive[np.argmax(emb[alive] @ emb[j])] if emb is not None else alive[0]
    return kept, by


def near_duplicates(emb, threshold=0.9, mode="exact", progress=False, seed=0):
    """Greedy keep-first near-duplicate removal. Returns (kept, by, number of pairs, mode used)."""
    mode = resolve_mode(mode, len(emb))
    lo, hi = similar_pairs(emb, threshold, mode=mode, progress=progress, seed=seed)
    kept, by = greedy_keep_first(len(emb), lo, hi, emb)
    return kept, by, int(lo.size), mode
