"""What a run renders: image ids from prompt ids, a seed per image, and stable shards.

    promptId, K = 1   ->  imgId = promptId
    promptId, K > 1   ->  imgId = <promptId>_0 ... <promptId>_<K-1>

Both the seed and the shard are hashes of ids, never of row positions, so adding prompts,
reordering prompts.csv, changing the batch size or the number of GPUs renders the same image
for the same id. All images of one prompt share a shard (a shard hashes the prompt id).
"""
import hashlib
import os
import re
from pathlib import Path

import pandas as pd

from core.dataset import read_prompts
from core.errors import DataError

SHARD_SPEC = re.compile(r"(\d+)/(\d+)")
# Internal columns of a plan (never written): the prompt's id and the split it belongs to.
PROMPT_ID, SPLIT = "_prompt_id", "_split"


def hash64(text):
    """64-bit unsigned hash of a string (sha256 prefix): stable across runs and machines."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def image_seed(img_id, seed=0):
    """The torch.Generator seed of one image: a hash of (run seed, imgId), 63 bits."""
    return hash64(f"{seed}/{img_id}") >> 1


def shard_of(prompt_id, n):
    """Shard index 0..n-1 of a prompt: disjoint and covering by construction, stable under additions."""
    return hash64(f"shard/{prompt_id}") % n


def parse_shard(spec):
    """'i/n' -> (i, n) with 0 <= i < n."""
    m = SHARD_SPEC.fullmatch(spec.strip())
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"--shard {spec!r}: expected i/n with 0 <= i < n, e.g. 0/8")
    return int(m.group(1)), int(m.group(2))


def shard_from_env(env=None):
    """(rank, world size, local rank) under torchrun / accelerate launch, else None."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    rank = int(env.get("RANK", "0"))
    return rank, world, int(env.get("LOCAL_RANK", rank))


def read_prompt_table(path):
    """prompts.csv (imgId,prompt[,extra columns]); read_prompts checks every imgId against the id rule."""
    frame = read_prompts(path)
    reserved = [c for c in (PROMPT_ID, SPLIT) if c in frame.columns]
    if reserved:
        raise DataError(path, f"column name(s) {reserved} are reserved for the generator; rename them")
    return frame


def expand(frame, per_prompt):
    """One row per image: imgId, prompt, extra columns, _prompt_id; in prompts.csv order."""
    if per_prompt < 1:
        raise ValueError("--per-prompt must be >= 1")
    frame = frame.reset_index(drop=True)
    if per_prompt == 1:
        return frame.assign(**{PROMPT_ID: frame["imgId"]})
    plan = frame.loc[frame.index.repeat(per_prompt)].reset_index(drop=True)
    plan[PROMPT_ID] = plan["imgId"]
    plan["imgId"] = [f"{p}_{k}" for p, k in zip(plan[PROMPT_ID], list(range(per_prompt)) * len(frame))]
    return plan


def check_unique(plan, path):
    dup = plan["imgId"][plan["imgId"].duplicated()]
    if len(dup):
        raise DataError(path, f"{len(dup)} image ids collide after --per-prompt expansion, e.g. {dup.iloc[0]!r}")


def select_shard(plan, index, count):
    """The rows of shard `index` of `count` (all rows when count is 1)."""
    if count == 1:
        return plan
    mask = pd.Series([shard_of(p, count) == index for p in plan[PROMPT_ID]], index=plan.index)
    return plan[mask]


def same_file(a, b):
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False
