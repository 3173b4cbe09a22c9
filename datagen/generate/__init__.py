"""Stable Diffusion 2 image generation into the competition layout (`python -m datagen.generate --help`).

    plan.py     image ids, per-image seeds, shards
    holdout.py  held-out split by prompt similarity group
    render.py   pipeline loading, batched rendering
    encode.py   resize + PNG / WebP / JPEG encoding
    layout.py   files of a generated set, shard plan files, merge
    run.py      the resumable generation loop
    cli.py      the command line
"""
from datagen.generate.layout import merge
from datagen.generate.plan import image_seed, shard_of
from datagen.generate.run import Settings, Summary, generate

__all__ = ["Settings", "Summary", "generate", "image_seed", "merge", "shard_of"]
