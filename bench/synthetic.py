"""Synthetic unit vectors with planted near-duplicates (for fold-grouping tests and benchmarks)."""
import numpy as np


def planted_near_duplicates(n, n_pairs, cos_lo=0.9, cos_hi=0.99, dim=384, seed=0):
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
