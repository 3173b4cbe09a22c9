"""CLIP-score filtering of a generated (image, prompt) set: `python -m datagen.filter`.

Stable Diffusion often ignores part of a prompt; scoring each pair with a CLIP model (cosine of its
image and text embeddings) and dropping the lowest keeps the pairs whose image shows its prompt.

    OUT/scores.csv          imgId, clip_score (every pair of DATA, in prompts.csv order)
    OUT/prompts.csv         DATA's rows without the dropped pairs (extra columns kept)
    OUT/images -> DATA/images
    OUT/dropped.csv         the dropped pairs: imgId, path, reason (their score and the cut)
    OUT/clip_scores.png     histogram of the scores, the cut marked
    OUT/clip_scores/        the score cache: a rerun scores only pairs it has not scored

OUT is a view like `python -m core.dataset DATA --write-checked OUT` writes: every stage reads it
as a training set. Modules: scores (batched, streamed scoring and its cache), cut (which pairs to
drop, the histogram), cli (`main`).
"""
from .cli import main
from .cut import choose_cut, histogram_png
from .scores import SCORES_FILE, score_pairs

__all__ = ["SCORES_FILE", "choose_cut", "histogram_png", "main", "score_pairs"]
