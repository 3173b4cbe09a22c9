"""Which pairs to drop (a minimum score or a fraction), and the histogram of the scores with the cut."""
import io

import numpy as np

HISTOGRAM_FILE = "clip_scores.png"


def choose_cut(scores, ids, min_score=None, drop_fraction=None):
    """(bool drop mask, cut): drop scores below `min_score`, or the round(F * N) lowest (ties broken by
    imgId, so the same set gives the same cut). `cut` is the score a pair needs to be kept."""
    scores = np.asarray(scores, dtype=np.float32)
    if (min_score is None) == (drop_fraction is None):
        raise ValueError("give exactly one of min_score, drop_fraction")
    if min_score is not None:
        return scores < np.float32(min_score), float(min_score)
    k = int(round(float(drop_fraction) * len(scores)))
    order = np.lexsort((np.asarray(ids, dtype=str), scores))
    drop = np.zeros(len(scores), dtype=bool)
    drop[order[:k]] = True
    cut = float(scores[order[k]]) if k < len(scores) else float("inf")
    return drop, cut


def histogram_png(scores, cut, n_dropped, title="CLIP scores", bins=60):
    """PNG bytes: the scores' histogram, the cut as a vertical line (matplotlib's Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.hist(np.asarray(scores, dtype=np.float64), bins=bins, color="#4c72b0")
    if np.isfinite(cut):
        ax.axvline(cut, color="#c44e52", linestyle="--", label=f"cut {cut:.4f}: {n_dropped} of {len(scores)} dropped")
        ax.legend(fontsize=8)
    ax.set(title=title, xlabel="cosine(image, prompt)", ylabel="pairs")
    ax.grid(alpha=.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()
