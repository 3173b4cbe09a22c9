"""Writing the dataset in the competition layout: images, prompts.csv and test_prompts.csv."""
import re
import time
from pathlib import Path

import pandas as pd

from core.dataset import IMAGES_DIR, PROMPTS_FILE, TEST_PROMPTS_FILE
from core.io import save_csv, write_bytes

from .plan import plan_rows
from .renderer import png_bytes, render
from .streams import stream


def render_row(row, size, seed):
    return render(row.scene, size, stream(seed, "render", row.scene_id, row.copy))


HEX_ID = re.compile(r"^[0-9a-f]{9}$")


def write_if_changed(path, data):
    """Leave an identical file alone: the pipeline's later stages see image folders by name, size and mtime."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    write_bytes(path, data)


def write_images(rows, images_dir, size, seed, progress):
    from tqdm import tqdm

    images_dir.mkdir(parents=True, exist_ok=True)
    for row in tqdm(rows, desc=f"render {images_dir.parent.name}", unit="img", disable=not progress):
        write_if_changed(images_dir / f"{row.img_id}.png", png_bytes(render_row(row, size, seed)))
    # Ids from an earlier run with other settings would otherwise join this split.
    keep = {r.img_id for r in rows}
    stale = [p for p in images_dir.glob("*.png") if HEX_ID.match(p.stem) and p.stem not in keep]
    for p in stale:
        p.unlink()
    return len(stale)


def prompts_frame(rows):
    return pd.DataFrame({"imgId": [r.img_id for r in rows], "prompt": [r.prompt for r in rows],
                         "scene": [r.scene_id for r in rows]})


def generate_demo(out_dir, n_train=1500, n_test=300, size=64, seed=0, progress=True):
    """Write the demo dataset in the competition layout under `out_dir`; return a summary dict."""
    if n_train < 1 or n_test < 0 or size < 8 or seed < 0:
        raise ValueError(f"need n_train >= 1, n_test >= 0, size >= 8, seed >= 0; "
                         f"got {n_train}, {n_test}, {size}, {seed}")
    start = time.time()
    out = Path(out_dir)
    rows = plan_rows(n_train + n_test, seed)
    train, test = rows[:n_train], rows[n_train:]
    stale = write_images(train, out / "train" / IMAGES_DIR, size, seed, progress)
    stale += write_images(test, out / "test" / IMAGES_DIR, size, seed, progress)
    # CSVs last: a run killed earlier leaves no prompts.csv pointing at missing images.
    save_csv(out / "train" / PROMPTS_FILE, prompts_frame(train))
    save_csv(out / TEST_PROMPTS_FILE, prompts_frame(test))
    scene_rows = pd.Series([r.scene_id for r in rows]).value_counts()
    train_scenes = {r.scene_id for r in train}
    return {
        "out": str(out),
        "n_train": len(train),
        "n_test": len(test),
        "size": size,
        "seed": seed,
        "scenes": int(len(scene_rows)),
        "rows_in_repeated_scenes": int(scene_rows[scene_rows > 1].sum()),
        "test_rows_sharing_a_train_scene": sum(r.scene_id in train_scenes for r in test),
        "stale_images_removed": stale,
        "seconds": round(time.time() - start, 2),
    }
