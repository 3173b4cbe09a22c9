"""Per-source caps and weighted sampling, deterministic for a seed.

Each source draws one random order of its surviving rows from (seed, source name); a cap and a
sampling quota both take a prefix of it, so a larger --max-prompts keeps a superset of a smaller
one, and adding or reordering other sources does not change which rows a source picks for the same quota.
"""
import hashlib

import numpy as np


def source_order(n, seed, name):
    """A random permutation of range(n) fixed by (seed, source name)."""
    salt = int.from_bytes(hashlib.sha256(str(name).encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([int(seed), salt]).permutation(n)


def weighted_quotas(available, weights, total):
    """How many rows each source contributes to `total`, proportional to `weights`.

    Water-filling: a source with fewer rows than its share gives all of them and the rest is
    shared again among the others; fractions go to the largest remainders (ties: earlier source).
    Sources of weight 0 contribute nothing. Never more than `available`."""
    available = np.asarray(available, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    quota = np.zeros_like(available)
    if available.sum() <= total:
        return available.copy()
    remaining = int(total)
    active = (weights > 0) & (available > 0)
    while remaining > 0 and active.any():
        share = remaining * weights * active / weights[active].sum()
        full = active & (available - quota <= share)
        if full.any():
            remaining -= int((available - quota)[full].sum())
            quota[full] = available[full]
            active &= ~full
            continue
        base = np.floor(share).astype(np.int64)
        quota += base
        left = remaining - int(base.sum())
        frac = np.where(active, share - base, -1.0)
        for i in np.argsort(-frac, kind="stable")[:left]:
            quota[i] += 1
        remaining = 0
    return quota
