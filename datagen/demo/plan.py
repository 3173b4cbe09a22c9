"""Planning the rows: scenes, near-duplicate rewordings, image ids, and the shuffle that splits train/test."""
import hashlib
from typing import NamedTuple

from .grammar import Scene, sample_scene, word_prompt
from .streams import pick, stream

DUPLICATE_RATE = 0.12  # share of scenes that appear 2-3 times, reworded


class Row(NamedTuple):
    img_id: str
    scene_id: int
    copy: int
    scene: Scene
    prompt: str


def image_id(seed, scene_id, copy, taken):
    """9 hex characters like Kaggle's imgIds, from a hash of the row's identity (rehashed on a clash)."""
    salt = 0
    while True:
        h = hashlib.sha256(f"demo:{seed}:{scene_id}:{copy}:{salt}".encode()).hexdigest()[:9]
        if h not in taken:
            return h
        salt += 1


def copies_of(seed, scene_id):
    rng = stream(seed, "copies", scene_id)
    return 1 if rng.random() >= DUPLICATE_RATE else int(pick(rng, (2, 2, 3)))


def distinct_wordings(scene, seed, scene_id, copies):
    """`copies` different prompts for one scene (a few tries each; a scene with little to reword may repeat)."""
    prompts = []
    for c in range(copies):
        for attempt in range(20):
            p = word_prompt(scene, stream(seed, "wording", scene_id, c, attempt))
            if p not in prompts:
                break
        prompts.append(p)
    return prompts


def plan_rows(n, seed):
    """n rows: scenes in order, some repeated with a new wording, then shuffled (the split is a cut)."""
    rows, taken, scene_id = [], set(), 0
    while len(rows) < n:
        scene = sample_scene(stream(seed, "scene", scene_id))
        copies = copies_of(seed, scene_id)
        for c, prompt in enumerate(distinct_wordings(scene, seed, scene_id, copies)):
            img_id = image_id(seed, scene_id, c, taken)
            taken.add(img_id)
            rows.append(Row(img_id, scene_id, c, scene, prompt))
        scene_id += 1
    rows = rows[:n]
    order = stream(seed, "split").permutation(len(rows))
    return [rows[i] for i in order]
