"""CLIP scores of (image, prompt) pairs, streamed in chunks and cached per pair.

The cache, one folder per model (its clip_identity):

    CACHE/<identity[:16]>/model.json               the model's name, weights and identity
    CACHE/<identity[:16]>/part-<stamp>.csv         imgId, pair_key, clip_score (one chunk, written atomically)

pair_key hashes the prompt and the image file's size and mtime, so a regenerated image or an edited
prompt is scored again. Each finished chunk is one new part file: a killed run keeps every chunk
it finished, and a rerun (or a grown set) scores only pairs no part holds.
"""
import logging
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.errors import DataError
from core.io import read_json, save_csv, sha256_json, write_json

SCORES_FILE = "scores.csv"
SCORE_COLUMNS = ("imgId", "clip_score")
CACHE_DIR = "clip_scores"  # under OUT unless --cache says otherwise
PART_COLUMNS = ("imgId", "pair_key", "clip_score")
SCORE_CHUNK = 4096  # pairs encoded per pass, stored as one part
_log = logging.getLogger(__name__)


def pair_keys(frame):
    """One key per row of a dataset frame (imgId, path, prompt): the prompt, the image file's size and mtime."""
    keys = []
    for img_id, path, prompt in zip(frame["imgId"], frame["path"], frame["prompt"]):
        st = os.stat(path)
        keys.append(sha256_json([str(img_id), str(prompt), st.st_size, st.st_mtime_ns])[:24])
    return keys


def cache_folder(cache_dir, identity, about):
    folder = Path(cache_dir) / identity[:16]
    meta = folder / "model.json"
    if meta.is_file():
        found = read_json(meta).get("identity")
        if found != identity:
            raise DataError(meta, f"score cache of another model (identity {found}); remove {folder}")
    else:
        write_json(meta, {"identity": identity, **about})
    return folder


def read_cached_scores(folder):
    """{(imgId, pair_key): score} from every part in `folder`."""
    out = {}
    for part in sorted(Path(folder).glob("part-*.csv")):
        try:
            frame = pd.read_csv(part, dtype={"imgId": str, "pair_key": str}, keep_default_na=False)
            rows = zip(frame["imgId"], frame["pair_key"], frame["clip_score"].astype(np.float32))
            out.update({(i, k): s for i, k, s in rows})
        except Exception as e:  # parts are written atomically: a damaged one was damaged on disk
            raise DataError(part, f"damaged score cache part ({type(e).__name__}: {e}); delete it and rerun") from None
    return out


def write_part(folder, ids, keys, scores):
    name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.csv"
    save_csv(Path(folder) / name, pd.DataFrame({"imgId": ids, "pair_key": keys, "clip_score": scores}))


def pair_scores(model, pre, tokenizer, paths, prompts, batch_size, device, precision, workers):
    """float32 cosine of each image (streamed from its path) with its prompt."""
    from models.clip_towers import encode_images, encode_texts

    img = encode_images(model, pre, paths, batch_size, device, precision, workers=workers)
    txt = encode_texts(model, tokenizer, prompts, batch_size, device, precision)
    return np.sum(img * txt, axis=1, dtype=np.float32)


def score_pairs(frame, clip, folder, batch_size=256, device="cpu", precision="auto", workers=0, progress=True,
                chunk=SCORE_CHUNK):
    """CLIP scores of a dataset frame's rows (imgId, path, prompt): float32 (N,), and how many were scored now.

    `clip`: (model, pre, tokenizer) from models.clip_towers.load_clip; `folder`: its cache folder."""
    keys = pair_keys(frame)
    ids = frame["imgId"].astype(str).tolist()
    cached = read_cached_scores(folder)
    scores = np.array([cached.get((i, k), np.nan) for i, k in zip(ids, keys)], dtype=np.float32)
    todo = np.flatnonzero(np.isnan(scores))
    if len(todo):
        _log.info("%d of %d pairs cached; scoring %d", len(ids) - len(todo), len(ids), len(todo))
    paths, prompts = frame["path"].astype(str).to_numpy(), frame["prompt"].astype(str).to_numpy()
    with tqdm(total=len(todo), desc="clip scores", unit="pair", disable=not progress) as bar:
        for s in range(0, len(todo), chunk):
            rows = todo[s:s + chunk]
            got = pair_scores(*clip, paths[rows].tolist(), prompts[rows].tolist(), batch_size, device, precision,
                              workers)
            write_part(folder, [ids[r] for r in rows], [keys[r] for r in rows], got)
            scores[rows] = got
            bar.update(len(rows))
    return scores, len(todo)
