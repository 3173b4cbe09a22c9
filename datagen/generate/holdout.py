"""A held-out split chosen by prompt group, so paraphrases never sit on both sides.

Prompts are grouped as core.folds groups them for CV (identical text, or MiniLM cosine >=
threshold, joined transitively). Groups are then taken whole, in the order of a hash of (seed,
the group's smallest prompt id), until round(fraction * N) prompts are held out (a group that
would overshoot is passed over). The choice is deterministic, does not depend on row order, and
a group untouched by later additions to prompts.csv keeps its hash, so few prompts change side.

The decision is cached in DIR/holdout.json under a key of everything it depends on, so shards
and resumed runs read it instead of embedding every prompt again.
"""
import logging
from pathlib import Path

from core.folds import group_prompts
from core.io import read_json, sha256_json, sha256_strings, write_json
from core.targets import default_embedder_path, embed_prompts, embedder_fingerprint
from datagen.generate.plan import hash64

log = logging.getLogger(__name__)

HOLDOUT_FILE = "holdout.json"
HOLDOUT_VERSION = 1  # bump when the choice rule changes: cached choices are then recomputed
EXACT_LIMIT = 50_000  # above this, pairs are found with the faiss IVF search (core.folds "fast")


def holdout_key(prompt_ids, prompts, fraction, seed, threshold, embedder):
    return sha256_json({"version": HOLDOUT_VERSION,
                        "ids": sha256_strings(prompt_ids), "prompts": sha256_strings(prompts),
                        "fraction": fraction, "seed": seed, "threshold": threshold,
                        "embedder": embedder_fingerprint(embedder)})


def choose_holdout(prompt_ids, prompts, fraction, seed=0, threshold=0.9, embedder=None, progress=False, emb=None,
                   cache_dir=None):
    """Set of held-out prompt ids (whole similarity groups).

    `emb`: the prompts' MiniLM embeddings if at hand, else they are embedded (through the text-keyed
    cache in `cache_dir` when given: a corpus built by datagen.prompts has filled it already)."""
    prompt_ids = [str(p) for p in prompt_ids]
    if emb is None:
        emb = embed_prompts(prompts, embedder, cache_dir=cache_dir)
    mode = "exact" if len(prompts) <= EXACT_LIMIT else "fast"
    groups = group_prompts(list(prompts), emb, threshold=threshold, mode=mode, progress=progress and mode == "fast")
    members = {}
    for pid, g in zip(prompt_ids, groups):
        members.setdefault(g, []).append(pid)
    order = sorted(members.values(), key=lambda ids: hash64(f"holdout/{seed}/{min(ids)}"))
    target = max(1, round(fraction * len(prompt_ids)))
    held = set()
    for ids in order:
        if len(held) + len(ids) <= target:
            held.update(ids)
            if len(held) == target:
                break
    return held


def load_or_choose_holdout(out, prompt_ids, prompts, fraction, seed=0, threshold=0.9, embedder=None, progress=False,
                           cache_dir=None):
    """choose_holdout, cached in out/holdout.json."""
    embedder = str(embedder or default_embedder_path())
    key = holdout_key(prompt_ids, prompts, fraction, seed, threshold, embedder)
    path = Path(out) / HOLDOUT_FILE
    if path.is_file():
        cached = read_json(path)
        if cached.get("key") == key:
            return set(cached["held_out"])
    held = choose_holdout(prompt_ids, prompts, fraction, seed, threshold, embedder, progress, cache_dir=cache_dir)
    write_json(path, {"key": key, "fraction": fraction, "seed": seed, "threshold": threshold,
                      "n_prompts": len(prompt_ids), "n_held_out": len(held), "held_out": sorted(held)})
    log.info("holdout: %d of %d prompts (%.1f%%)", len(held), len(prompt_ids),
             100 * len(held) / max(1, len(prompt_ids)))
    return held
