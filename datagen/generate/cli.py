"""`python -m datagen.generate`: render prompts.csv with Stable Diffusion 2 into a training set.

    python -m datagen.generate --prompts prompts.csv --out DIR [--model stabilityai/stable-diffusion-2]
    torchrun --nproc_per_node 8 -m datagen.generate --prompts prompts.csv --out DIR   # one shard per GPU
    python -m datagen.generate --merge DIR                                            # join shard files
"""
import argparse
import logging
import os
import sys

from core.errors import exit_on_input_error
from core.targets import DEFAULT_TEXT_CACHE
from datagen.generate.encode import FORMATS
from datagen.generate.layout import merge
from datagen.generate.plan import SPLIT, parse_shard, shard_from_env
from datagen.generate.render import DEFAULT_MODEL, DTYPES, SCHEDULERS
from datagen.generate.run import Settings, generate, plan_run


def build_parser():
    ap = argparse.ArgumentParser(prog="python -m datagen.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", help="prompts.csv (imgId,prompt[,extra columns]); ids are file stems [A-Za-z0-9_-]")
    ap.add_argument("--out", help="the generated set: OUT/images/<imgId>.<ext> + OUT/prompts.csv")
    ap.add_argument("--merge", metavar="DIR", help="only join DIR's shard files into prompts.csv (idempotent)")
    g = ap.add_argument_group("model and sampling (a resume must use the same; see OUT/generate.json)")
    g.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local pipeline folder (default: %(default)s)")
    g.add_argument("--variant", default=None, help="weights variant to load, e.g. fp16 (halves the download)")
    g.add_argument("--scheduler", choices=list(SCHEDULERS), default="dpm++",
                   help="default: DPM-Solver++ multistep, order 2 (model: the folder's own)")
    g.add_argument("--steps", type=int, default=20)
    g.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    g.add_argument("--negative-prompt", default=None)
    g.add_argument("--gen-size", type=int, default=None, help="render size, a multiple of 8 (default: the model's "
                   "native size: 768 for SD2 768-v, 512 for SD2-base)")
    g.add_argument("--save-size", type=int, default=512, help="saved size, LANCZOS resize (0: as rendered; default 512 "
                   "like the competition's images)")
    g.add_argument("--format", choices=list(FORMATS), default="png")
    g.add_argument("--quality", type=int, default=None, help="webp / jpeg quality (default 90 / 95)")
    g.add_argument("--per-prompt", type=int, default=1, help="images per prompt; K > 1 names them <promptId>_<k>")
    g.add_argument("--seed", type=int, default=0, help="mixed into every image's seed (hash of seed and imgId)")
    h = ap.add_argument_group("held-out split")
    h.add_argument("--holdout", type=float, default=0.0, metavar="FRACTION",
                   help="hold out about this fraction of prompts (whole similarity groups) into OUT/test/")
    h.add_argument("--holdout-threshold", type=float, default=0.9,
                   help="MiniLM cosine that joins prompts (default 0.9)")
    h.add_argument("--holdout-seed", type=int, default=0)
    h.add_argument("--cache", default=DEFAULT_TEXT_CACHE, help="text-keyed MiniLM embedding cache, as datagen.prompts "
                   "fills it (default: %(default)s)")
    h.add_argument("--no-cache", action="store_true", help="embed the prompts for --holdout without the cache")
    r = ap.add_argument_group("running")
    r.add_argument("--shard", default=None, metavar="I/N", help="render shard I of N (default: RANK/WORLD_SIZE under "
                   "torchrun or accelerate launch, else everything)")
    r.add_argument("--batch-size", type=int, default=4)
    r.add_argument("--device", default="auto", help="auto (cuda[:LOCAL_RANK] if present, else cpu), cuda, cuda:1, cpu")
    r.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="auto: fp16 on GPU, fp32 on CPU")
    r.add_argument("--writers", type=int, default=4, help="threads that encode and write images")
    r.add_argument("--verify", action="store_true", help="decode the existing images and re-render broken ones")
    r.add_argument("--prepare", action="store_true", help="only check the prompts, record the settings and choose "
                   "the held-out prompts (OUT/holdout.json, embeds every prompt once); then launch the shards")
    r.add_argument("--allow-settings-change", action="store_true",
                   help="resume into OUT although the settings differ from OUT/generate.json")
    r.add_argument("--no-progress", action="store_true")
    return ap


def _check_args(ap, args):
    if args.merge:
        return
    if not args.prompts or not args.out:
        ap.error("--prompts and --out are required (or --merge DIR)")
    if args.steps < 1 or args.batch_size < 1 or args.per_prompt < 1 or args.writers < 1:
        ap.error("--steps, --batch-size, --per-prompt and --writers must be >= 1")
    if args.gen_size is not None and (args.gen_size < 8 or args.gen_size % 8):
        ap.error(f"--gen-size {args.gen_size}: must be a positive multiple of 8")
    if args.save_size < 0:
        ap.error("--save-size must be >= 0")
    if not 0.0 <= args.holdout < 1.0:
        ap.error("--holdout must be in [0, 1)")
    if args.quality is not None:
        if FORMATS[args.format].default_quality is None:
            ap.error(f"--quality does not apply to lossless --format {args.format}")
        if not 1 <= args.quality <= 100:
            ap.error("--quality must be in 1..100")


def print_summary(s):
    i, n = s.shard
    where = "" if n == 1 else f" shard {i}/{n}"
    planned = ", ".join(f"{v} {k}" for k, v in s.planned.items())
    print(f"generate{where}: {sum(s.planned.values())} images planned ({planned}): {s.rendered} rendered, "
          f"{s.skipped} skipped (already there), {len(s.failed)} failed"
          + (f", {len(s.reverified)} broken file(s) re-rendered" if s.reverified else "")
          + (f", {s.temps_removed} stale temporary file(s) removed" if s.temps_removed else ""))
    for img_id, reason in list(s.reverified.items())[:5]:
        print(f"  re-rendered {img_id}: {reason}")
    for reason, count in s.failure_reasons():
        example = next(k for k, v in s.failed.items() if v == reason)
        print(f"  failed x{count} (e.g. {example}): {reason}")
    print_merge(s.merged)


def print_merge(merged):
    for split in ("train", "test"):
        m = merged.get(split)
        if m:
            print(f"merged {m['file']}: {m['listed']} of {m['planned']} planned images exist"
                  + (f" ({m['unlisted_images']} image(s) without a row ignored)" if m["unlisted_images"] else ""))


@exit_on_input_error
def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    _check_args(ap, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.merge:
        print_merge(merge(args.merge))
        return 0
    env_shard = shard_from_env()
    local_rank = env_shard[2] if env_shard else None
    try:
        shard = parse_shard(args.shard) if args.shard else (env_shard[:2] if env_shard else (0, 1))
        from datagen.generate.render import resolve_device, resolve_dtype

        device = resolve_device(args.device, local_rank)
        dtype = resolve_dtype(args.dtype, device)
    except (ValueError, RuntimeError) as e:
        ap.error(str(e))
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    model = os.path.abspath(args.model) if os.path.isdir(args.model) else args.model
    settings = Settings(model=model, scheduler=args.scheduler, steps=args.steps, guidance=args.guidance,
                        negative_prompt=args.negative_prompt, gen_size=args.gen_size, save_size=args.save_size,
                        format=args.format, quality=args.quality, per_prompt=args.per_prompt, seed=args.seed,
                        holdout=args.holdout, holdout_seed=args.holdout_seed, holdout_threshold=args.holdout_threshold)
    cache_dir = None if args.no_cache else args.cache
    if args.prepare:
        plan, _ = plan_run(args.prompts, args.out, settings, args.allow_settings_change, progress=not args.no_progress,
                           cache_dir=cache_dir)
        counts = plan[SPLIT].value_counts()
        print(f"prepared {args.out}: {len(plan)} images planned ({counts.get('train', 0)} train, "
              f"{counts.get('test', 0)} held out); settings in {args.out}/generate.json")
        return 0
    summary = generate(args.prompts, args.out, settings, shard=shard, batch_size=args.batch_size, device=device,
                       dtype=dtype, variant=args.variant, verify=args.verify, writers=args.writers,
                       progress=not args.no_progress, allow_settings_change=args.allow_settings_change,
                       cache_dir=cache_dir)
    print_summary(summary)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
