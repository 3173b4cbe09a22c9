"""The demo's prompt bank for retrieval runs: grammar prompts from a stream of their own, none near a test prompt.

    python -m datagen.demo.bank --data work/data/demo --n 15000 [--seed 0] [--threshold 0.9]
                                [--cache work/cache/text_embeddings]

writes DATA/bank/prompts.csv (imgId, prompt, source: the columns `python -m datagen.prompts` writes)
and DATA/bank/bank.json (sizes, what was removed). The prompts are drawn from the "bank" stream of
the seed, so the demo's own files (ids, prompts, pixels) are the same with or without a bank. Like a
real corpus they hold near-copies of training prompts (retrieval's honest CV masks those per fold),
but every prompt whose MiniLM embedding is within `threshold` cosine of a demo *test* prompt (the
folds' grouping threshold), or whose text is one, is removed: a user's bank cannot be tuned to the
hidden test prompts, so the demo's is not either. Embeddings go through the text cache, where the
retrieval run finds them again.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.dataset import PROMPTS_FILE, TEST_PROMPTS_FILE, read_prompts
from core.errors import exit_on_input_error
from core.io import save_csv, write_json

from .grammar import sample_scene, word_prompt
from .streams import stream

BANK_DIR = "bank"  # DATA/bank/prompts.csv
BANK_SOURCE = "demo-grammar"
CHUNK = 8192  # bank prompts compared with the test prompts at a time
MAX_TRIES_PER_PROMPT = 20  # draws per distinct prompt before giving up (the grammar is finite)


def bank_prompts(n, seed):
    """n distinct grammar prompts from the bank stream (fewer if the grammar runs out of new ones)."""
    seen, i = {}, 0
    while len(seen) < n and i < n * MAX_TRIES_PER_PROMPT:
        scene = sample_scene(stream(seed, "bank", i, 0))
        seen.setdefault(word_prompt(scene, stream(seed, "bank", i, 1)), None)
        i += 1
    return list(seen)


def near_test(prompts, test_prompts, threshold, cache_dir=None):
    """bool per prompt: its text is a test prompt's, or its embedding is within `threshold` cosine of one."""
    from core.metric import l2_normalize
    from core.targets import embed_prompts

    emb = l2_normalize(embed_prompts(prompts, progress=False, cache_dir=cache_dir))
    test_emb = l2_normalize(embed_prompts(test_prompts, progress=False, cache_dir=cache_dir))
    near = np.zeros(len(prompts), dtype=bool)
    for s in range(0, len(prompts), CHUNK):  # a few hundred test prompts: one product per chunk
        near[s:s + CHUNK] = (emb[s:s + CHUNK] @ test_emb.T).max(axis=1, initial=-1.0) >= threshold
    test_texts = set(test_prompts)
    return near | np.array([p in test_texts for p in prompts], dtype=bool)


def write_bank(data_dir, n, seed=0, threshold=0.9, cache_dir=None):
    """DATA/bank/prompts.csv and bank.json; returns bank.json's dict."""
    t0 = time.time()
    data_dir = Path(data_dir)
    test = read_prompts(data_dir / TEST_PROMPTS_FILE)["prompt"].str.strip().tolist()
    prompts = bank_prompts(n, seed)
    drop = near_test(prompts, test, threshold, cache_dir)
    kept = [p for p, d in zip(prompts, drop) if not d]
    from datagen.prompts.build import prompt_id

    out = data_dir / BANK_DIR
    save_csv(out / PROMPTS_FILE, pd.DataFrame({"imgId": [prompt_id(p) for p in kept], "prompt": kept,
                                               "source": BANK_SOURCE}))
    meta = {"n": len(kept), "drawn": len(prompts), "removed_near_test": int(drop.sum()), "threshold": threshold,
            "seed": seed, "stream": "bank", "test_prompts": len(test), "seconds": round(time.time() - t0, 2)}
    write_json(out / "bank.json", meta)
    return meta


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m datagen.demo.bank", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="work/data/demo", help="the demo dataset folder (default: %(default)s)")
    ap.add_argument("--n", type=int, required=True, help="prompts to draw (before the ones near a test prompt "
                                                         "are removed)")
    ap.add_argument("--seed", type=int, default=0, help="the demo's seed (default: %(default)s)")
    ap.add_argument("--threshold", type=float, default=0.9,
                    help="remove prompts with cosine >= this to a test prompt (default: %(default)s, the folds')")
    ap.add_argument("--cache", default="work/cache/text_embeddings", help="text embedding cache (default: "
                                                                           "%(default)s)")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be >= 1")
    meta = write_bank(args.data, args.n, args.seed, args.threshold, args.cache)
    print(f"wrote {Path(args.data) / BANK_DIR / PROMPTS_FILE}: {meta['n']} prompts ({meta['removed_near_test']} of "
          f"{meta['drawn']} removed: within cosine {args.threshold} of a test prompt) in {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
