"""Group sizes of the fold grouping on the ~120,000 real prompts in ../shared/data/prompts/.

    python -m bench.real_prompt_groups [--prompts-dir ../shared/data/prompts] [--thresholds 0.9 0.8 0.7]

Embeds every prompt with all-MiniLM-L6-v2 once (cached under work/cache/, ~10 min on 2 cores),
then groups them (union-find over identical prompts and cosine >= threshold) and prints, per
threshold, the number of groups, the largest group and how many prompts sit in groups of 2+.
Not part of CI.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.folds import group_prompts, group_stats
from core.io import save_npy, sha256_strings
from core.targets import embed_prompts

REPO = Path(__file__).resolve().parents[1]


def read_corpus(folder):
    """All prompts of the shared corpora, one list (order: file name, then line)."""
    folder = Path(folder)
    prompts = []
    for path in sorted(folder.glob("*.txt")):
        if path.name.startswith("dissim_pairs"):  # TSV: idx, score, prompt, image
            frame = pd.read_csv(path, sep="\t", header=None, quoting=3, dtype=str)
            prompts += frame[2].dropna().tolist()
        else:
            prompts += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    parti = folder / "PartiPrompts.tsv"
    if parti.is_file():
        prompts += pd.read_csv(parti, sep="\t", dtype=str)["Prompt"].dropna().tolist()
    coco = folder / "coco_captions_val2017.json"
    if coco.is_file():
        prompts += [a["caption"].strip() for a in json.loads(coco.read_text())["annotations"]]
    return prompts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts-dir", default=str(REPO.parent / "shared" / "data" / "prompts"))
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.9, 0.8, 0.7])
    ap.add_argument("--mode", choices=["exact", "fast"], default="exact")
    ap.add_argument("--k", type=int, default=5, help="folds, for the N/(2K) chaining limit")
    ap.add_argument("--cache-dir", default="work/cache")
    args = ap.parse_args(argv)
    prompts = read_corpus(args.prompts_dir)
    cache = Path(args.cache_dir) / f"real_prompts_{sha256_strings(prompts)[:16]}.npy"
    if cache.is_file():
        emb = np.load(cache)
    else:
        t = time.time()
        emb = embed_prompts(prompts, progress=True)
        save_npy(cache, emb)
        print(f"embedded {len(prompts)} prompts in {time.time() - t:.0f} s -> {cache}")
    print(f"{len(prompts):,} prompts; limit N/(2K) = {len(prompts) / (2 * args.k):,.0f} for K = {args.k}")
    for thr in args.thresholds:
        t = time.time()
        groups = group_prompts(prompts, emb, threshold=thr, mode=args.mode)
        s = group_stats(groups)
        sizes = np.bincount(groups)
        top = np.sort(sizes)[::-1][:5].tolist()
        print(f"threshold {thr}: {s['n_groups']:,} groups, largest {s['largest_group']:,} "
              f"({s['largest_group_fraction']:.2%}), next {top[1:]}, {s['rows_in_groups_of_2_or_more']:,} prompts "
              f"in groups of 2+, {args.mode} {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
