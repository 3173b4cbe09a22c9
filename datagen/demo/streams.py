"""Random streams and the choices drawn from them."""
import numpy as np

STREAMS = {"scene": 1, "wording": 2, "render": 3, "split": 4, "copies": 5, "bank": 6}  # bank: datagen.demo.bank


def stream(seed, name, *index):
    """An independent random stream per (seed, purpose, index): order-independent generation."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAMS[name], *map(int, index)]))


def pick(rng, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def pick_weighted(rng, weights):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def maybe(rng, options, p_none):
    return None if rng.random() < p_none else pick(rng, options)
