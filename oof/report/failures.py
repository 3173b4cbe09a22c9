"""Where models fail: score by prompt length, by source, by word; the best and worst images.

Every breakdown is computed on all rows from per-group sums (np.bincount), so its cost is one
pass over the per-image scores per model, whatever the number of images.
"""
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from core.metric import l2_normalize
from oof.report.rows import chunks
from oof.report.text import word_pairs

log = logging.getLogger(__name__)

LENGTH_EDGES = (8, 16, 24, 32, 48, 64, 96, 128, 256)  # upper bounds of the token-count bins
TOP_WORDS = 30
TOP_CATEGORIES = 20
N_EXTREMES = 12
THUMB_PX = 128
BANK_CHUNK = 65536


def grouped_means(codes, n_groups, scores):
    """(counts (G,), {name: mean score per group (G,)})."""
    counts = np.bincount(codes, minlength=n_groups)
    means = {name: np.bincount(codes, weights=v, minlength=n_groups) / np.maximum(counts, 1)
             for name, v in scores.items()}
    return counts, means


def _rows(labels, counts, means, n, names):
    rows = []
    for g, label in enumerate(labels):
        if counts[g]:
            rows.append([label, int(counts[g]), counts[g] / n] + [float(means[m][g]) for m in names])
    return rows


def by_length(lengths, scores, max_len=None):
    """Rows (tokens, n, share, mean score per model) per token-count bin; bins past max_len are truncated prompts."""
    edges = np.asarray(LENGTH_EDGES)
    codes = np.searchsorted(edges, lengths, side="left")
    labels, lo = [], 1
    for hi in edges:
        labels.append(f"{lo}-{hi}")
        lo = hi + 1
    labels.append(f"{lo}+")
    if max_len:
        labels = [lab + (" (truncated)" if int(lab.split("-")[0].rstrip("+")) > max_len else "") for lab in labels]
    counts, means = grouped_means(codes, len(labels), scores)
    return _rows(labels, counts, means, len(lengths), list(scores))


def by_column(values, scores, top=TOP_CATEGORIES):
    """Rows per category of a prompts.csv column (the `top` most frequent; the rest as "other")."""
    series = (values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object))
    series = series.astype(object).fillna("(empty)").astype(str).reset_index(drop=True)
    freq = series.value_counts()
    keep = list(freq.index[:top])
    labels = keep + (["(other)"] if len(freq) > top else [])
    codes = pd.Categorical(series.where(series.isin(keep), "(other)"), categories=labels).codes.astype(np.int64)
    counts, means = grouped_means(codes, len(labels), scores)
    return _rows(labels, counts, means, len(series), list(scores))


def by_word(pieces, scores, ref, top=TOP_WORDS):
    """The `top` words in most prompts (English stop words left out), worst first by model `ref`.

    Words: lowercased runs of 2+ word characters (CountVectorizer's default token pattern);
    stop words: scikit-learn's English list. Each row: the word, how many images' prompts
    contain it, their share, and the mean score of those images per model."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    prompt, word, words = word_pairs(pieces, ENGLISH_STOP_WORDS)
    if not words:
        return []
    df = np.bincount(word, weights=pieces.mult[prompt], minlength=len(words))
    order = np.lexsort((np.asarray(words, dtype=object), -df))[:top]
    rank = np.full(len(words), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    sel = rank[word] >= 0
    r, p = rank[word[sel]], prompt[sel]
    means = {}
    for name, v in scores.items():
        per_prompt = np.bincount(pieces.codes, weights=v, minlength=pieces.n_unique)
        means[name] = np.bincount(r, weights=per_prompt[p], minlength=len(order)) / df[order]
    n = len(pieces.codes)
    rows = [[words[j], int(df[j]), df[j] / n] + [float(means[m][k]) for m in scores] for k, j in enumerate(order)]
    ref_col = 3 + list(scores).index(ref)
    return sorted(rows, key=lambda row: row[ref_col])


def extremes(scores, k=N_EXTREMES):
    """Row indices of the k best (best first) and the k worst (worst first) images."""
    order = np.argsort(scores, kind="stable")
    k = min(k, len(scores))
    return order[::-1][:k], order[:k]


def nearest_prompts(queries, bank, chunk=BANK_CHUNK):
    """(bank row, cosine) of each query's nearest bank row: faiss exact inner-product search on unit rows."""
    import faiss

    q = np.ascontiguousarray(l2_normalize(queries))
    best = np.full(len(q), -np.inf, dtype=np.float32)
    arg = np.zeros(len(q), dtype=np.int64)
    for s, e in chunks(len(bank), chunk):
        sims, idx = faiss.knn(q, np.ascontiguousarray(l2_normalize(bank[s:e])), 1, metric=faiss.METRIC_INNER_PRODUCT)
        better = sims[:, 0] > best
        best[better] = sims[better, 0]
        arg[better] = idx[better, 0] + s
    return arg, best


def prompt_texts(inputs, img_ids):
    """{imgId: prompt} of the given training images (those without a known prompt left out)."""
    if inputs.prompts is None:
        return {}
    rows = pd.Index(inputs.ids).get_indexer(list(img_ids))
    return {i: str(inputs.prompts["prompt"].iloc[r]) for i, r in zip(img_ids, rows) if r >= 0}


def find_image(images_dir, img_id):
    if images_dir is None:
        return None
    p = Path(images_dir) / f"{img_id}.png"
    if p.is_file():
        return p
    found = sorted(Path(images_dir).glob(f"{img_id}.*"))
    return found[0] if found else None


def thumbnail(path, px=THUMB_PX):
    """PNG bytes of the image shrunk to fit px x px, or None when it cannot be read."""
    from PIL import Image

    if path is None:
        return None
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((px, px))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            return buf.getvalue()
    except Exception as e:  # PIL raises many types for unreadable files; the card says so instead
        log.warning("thumbnail of %s failed: %s", path, e)
        return None
