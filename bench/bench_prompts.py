"""The prompt corpus build (python -m datagen.prompts) on all ~120,000 prompts of ../shared/data/prompts.

    python -m bench.bench_prompts [--limit N] [--compare-exact] [--cache DIR | --fresh-cache]

Prints the seconds of each step (read, clean + exact dedup, token lengths, embed, near dedup in
fast mode, ...) and the counts per source. Embedding dominates (~10-15 min on 2 CPU cores for the
whole corpus the first time); the embeddings land in the text cache, so a rerun, and the targets
of any image set later generated from these prompts, read them instead. --compare-exact also
finds the pairs by all-pairs search and prints the fast mode's recall on these real prompts.
Not part of CI.
"""
import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from core.targets import DEFAULT_TEXT_CACHE, text_cache
from datagen.prompts import CORPUS_FILE, DROPPED_FILE, Settings, build_corpus, parse_source
from datagen.prompts.__main__ import format_counts
from datagen.prompts.dedup import similar_pairs

REPO = Path(__file__).resolve().parents[1]
# Priority order: prompts written in the competition's style first, then captions, then user prompts.
SOURCES = [
    ("gpt4", "prompts_filtered_4.0.txt", None),
    ("chatgpt", "prompts_chatgpt_0330_dedup.txt", None),
    ("parti", "PartiPrompts.tsv", None),  # header: Prompt, Category, Challenge, Note
    ("coco", "coco_captions_val2017.json", None),
    ("gustavosta", "dissim_pairs_all_gustavosta_valid.txt", 2),  # headerless TSV: idx, score, prompt, image
    ("openprompts", "openprompts_dedup_085_075_diff_pprc_085wt_075wv.txt", None),
    ("diffusiondb", "900k_dedup_08_split_dedup_wt_wv.txt", None),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts-dir", default=str(REPO.parent / "shared" / "data" / "prompts"))
    ap.add_argument("--out", default="work/bench/prompts", help="where the corpus is written (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="read at most N rows per source (a quick trial)")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--mode", choices=["fast", "exact", "auto"], default="fast")
    ap.add_argument("--cache", default=DEFAULT_TEXT_CACHE, help="text embedding cache (default: %(default)s)")
    ap.add_argument("--fresh-cache", action="store_true", help="embed everything into an empty temporary cache")
    ap.add_argument("--compare-exact", action="store_true", help="also count the pairs an all-pairs search finds")
    args = ap.parse_args(argv)

    sources = []
    for name, file, column in SOURCES:
        s = parse_source(f"{name}={Path(args.prompts_dir) / file}")
        s.column = column
        sources.append(s)
    tmp = tempfile.TemporaryDirectory(prefix="text_cache_") if args.fresh_cache else None
    cache = tmp.name if tmp else args.cache
    settings = Settings(dedup_threshold=args.threshold, dedup_mode=args.mode, limit=args.limit, cache_dir=cache)
    corpus = build_corpus(sources, args.out, settings, progress=True)
    sec, emb_info, dedup = corpus["seconds"], corpus["embedding"], corpus["dedup"]

    print(f"\n{corpus['total']['read']:,} prompts read from {len(sources)} files"
          f"{f' (at most {args.limit:,} each)' if args.limit else ''}; {corpus['n_prompts']:,} kept -> {args.out}")
    print(format_counts(corpus))
    print("\nseconds per step:")
    for step, s in sec.items():
        print(f"  {step:<11} {s:9.1f}")
    rate = f"{emb_info['embedded'] / sec['embed']:.0f}" if emb_info["embedded"] and sec.get("embed") else "-"
    print(f"embedding: {emb_info['texts']:,} texts, {emb_info['embedded']:,} embedded now ({rate} texts/s), "
          f"{emb_info['from_cache']:,} read from the cache {cache}")
    print(f"near dedup ({dedup['mode']}, cosine >= {dedup['threshold']}): {dedup['pairs']:,} pairs, "
          f"{sec.get('near_dedup', 0):.1f} s")

    if args.compare_exact and dedup["mode"]:
        # The rows that entered near dedup: kept + near dups (nothing is capped or sampled here).
        kept = pd.read_csv(Path(args.out) / "prompts.csv", dtype=str, keep_default_na=False)["prompt"].tolist()
        dropped = pd.read_csv(Path(args.out) / DROPPED_FILE, dtype=str, keep_default_na=False)
        texts = kept + dropped.loc[dropped["reason"] == "near_dups", "prompt"].tolist()
        emb, found = text_cache(cache).lookup(texts)
        assert found.all()
        t = time.perf_counter()
        lo, _ = similar_pairs(emb, args.threshold, mode="exact", progress=True)
        exact_s = time.perf_counter() - t
        recall = dedup["pairs"] / max(1, lo.size) if dedup["mode"] == "fast" else 1.0
        print(f"exact all-pairs search: {lo.size:,} pairs in {exact_s:.1f} s; "
              f"the {dedup['mode']} mode found {dedup['pairs']:,} of them ({recall:.2%})")
    print(f"corpus.json: {Path(args.out) / CORPUS_FILE}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
