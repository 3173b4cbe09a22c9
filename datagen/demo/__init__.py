"""The embedded demo dataset: small images rendered procedurally from Stable-Diffusion-style prompts.

No diffusion weights exist here, so a scene grammar stands in for them. A `Scene` (one or two
groups of objects, their spatial relation, a background, a style, a framing such as "a postage
stamp of", quality tags) is sampled, worded as a prompt, and rendered with PIL/numpy so that
nearly every word changes the picture. Wording draws its own synonyms and clause order, so one
scene can be worded several ways: some scenes appear two or three times, reworded and freshly
rendered, like the near-duplicates of real prompt corpora (the `scene` column says which rows
share one). Duplicates are shuffled across train and test, as in the real data.

    python -m datagen.demo --out work/data/demo --n-train 1500 --n-test 300 --size 64 --seed 0

writes OUT/train/images/<imgId>.png, OUT/train/prompts.csv (imgId,prompt,scene),
OUT/test/images/<imgId>.png and OUT/test_prompts.csv. Every image has its own random stream
seeded from (seed, scene, copy), so the output is the same for the same settings whatever the
order of rendering. Ids and prompts use no float kernel that differs between CPUs; the pixels
do not depend on numpy's SIMD level or the BLAS kernel either (imageops.luminance sums without
BLAS; tests/test_demo.py renders under the most basic kernels and compares).

Modules, one job each: grammar (scenes and their wording), vocab (colours, sizes, counts,
relations), kinds / shapes / figures / creatures (what can be drawn), backgrounds, styles,
framings, tags, imageops (array helpers), renderer (a scene to an image), streams (seeded random
streams), plan (rows, near-duplicates, ids), writer (the files), cli (`main`).
"""
from .backgrounds import BACKGROUNDS, Background
from .cli import main
from .framings import FRAMINGS, Framing
from .grammar import Group, Scene, sample_prompts, sample_scene, word_prompt
from .kinds import KINDS, Kind
from .plan import Row, plan_rows
from .renderer import Placed, png_bytes, render
from .streams import stream
from .styles import STYLES, Style
from .tags import TAGS, Tag
from .vocab import COLOURS, RELATIONS, SIZES
from .writer import generate_demo, render_row

__all__ = [
    "BACKGROUNDS", "COLOURS", "FRAMINGS", "KINDS", "RELATIONS", "SIZES", "STYLES", "TAGS",
    "Background", "Framing", "Group", "Kind", "Placed", "Row", "Scene", "Style", "Tag",
    "generate_demo", "main", "plan_rows", "png_bytes", "render", "render_row", "sample_prompts", "sample_scene",
    "stream", "word_prompt",
]
