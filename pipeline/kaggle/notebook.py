"""The Kaggle notebook a pack carries (also committed as kaggle/notebook.ipynb): installs the packed
wheels offline, runs models.submit.make_submission from the packed code, checks submission.csv."""
import json
from pathlib import Path

from core.io import read_json, write_text

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_TEMPLATE = REPO / "kaggle" / "notebook.ipynb"


def _cell(kind, source, idx):
    lines = source.strip("\n").split("\n")
    cell = {"cell_type": kind, "id": f"sdi2p-{idx}", "metadata": {},
            "source": [line + "\n" for line in lines[:-1]] + lines[-1:]}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


NOTEBOOK_CELLS = [
    ("markdown", """
# Stable Diffusion - Image to Prompts: offline inference

Attach two inputs (Internet off): the competition data and the pack dataset written by
`python -m pipeline.kaggle.pack` (code, wheels, fold checkpoints, each frozen kNN backbone once,
fitted ensemble). The cells
install the packed wheels without an index, put the packed code on `sys.path`, predict every test
image with every fold of every blended run, blend them with the fitted ensemble (the weights,
ridge or LightGBM stacker that `ensemble/ensemble.json` names; numpy only unless LightGBM) and write
`/kaggle/working/submission.csv`. An unreadable test image does not stop the notebook: it gets the
runs' mean embedding (blended like the others, so every row is written) and is listed in
`/kaggle/working/bad_images.csv`. `SDI2P_PACK`, `SDI2P_IMAGES` and `SDI2P_OUT` override the
paths (that is how the project's tests run these cells on a local folder).
"""),
    ("code", """
import glob
import json
import os
import subprocess
import sys
import time

PACK = os.environ.get("SDI2P_PACK", "/kaggle/input/sdi2p-pack")
IMAGES = os.environ.get("SDI2P_IMAGES", "/kaggle/input/stable-diffusion-image-to-prompts/images")
OUT = os.environ.get("SDI2P_OUT", "/kaggle/working/submission.csv")

if not os.path.isfile(os.path.join(PACK, "MANIFEST.json")) and "SDI2P_PACK" not in os.environ:
    # the dataset was uploaded under another name: the attached input holding a pack
    found = sorted(glob.glob("/kaggle/input/*/MANIFEST.json") + glob.glob("/kaggle/input/*/*/MANIFEST.json"))
    PACK = os.path.dirname(found[0]) if found else PACK
if not os.path.isfile(os.path.join(PACK, "MANIFEST.json")):
    raise FileNotFoundError(f"{PACK}/MANIFEST.json: no pack there (attach the dataset or set SDI2P_PACK)")
with open(os.path.join(PACK, "MANIFEST.json")) as f:
    MANIFEST = json.load(f)
print(f"pack {PACK}: runs {MANIFEST['ensemble']['models']}, ensemble {MANIFEST['ensemble']['method']}, "
      f"made {MANIFEST['created']}")
"""),
    ("code", """
# Offline install of the packed wheels (no index, no dependency resolution: the rest is on the image).
WHEELS = os.path.join(PACK, "wheels")
specs = list(dict.fromkeys(w["spec"] for w in MANIFEST.get("wheels", [])))
if specs and glob.glob(os.path.join(WHEELS, "*.whl")):
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", WHEELS, *specs]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
else:
    print("no wheels packed: using the packages this environment has")
"""),
    ("code", """
# The packed code, never the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["SDI2P_BACKBONES"] = os.path.join(PACK, "backbones")  # frozen kNN backbones, stored once
sys.dont_write_bytecode = True  # the input dataset is read-only
CODE = os.path.join(PACK, "code")
sys.path.insert(0, CODE)
import models.submit  # noqa: E402

assert os.path.realpath(models.submit.__file__).startswith(os.path.realpath(CODE) + os.sep), models.submit.__file__
print("code from", os.path.dirname(os.path.dirname(models.submit.__file__)))
"""),
    ("code", """
RUNS = [os.path.join(PACK, "runs", name) for name in MANIFEST["ensemble"]["models"]]
t0 = time.time()
# skip_bad_images: an unreadable test image gets the mean embedding instead of failing the whole notebook
ids, blended = models.submit.make_submission(RUNS, os.path.join(PACK, "ensemble"), IMAGES, OUT, progress=False,
                                             skip_bad_images=True)
print(f"{len(ids)} images -> {OUT} in {time.time() - t0:.1f} s")
"""),
    ("code", """
# Check what was written: 384 rows per image, unit-norm embeddings.
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.dataset import load_images  # noqa: E402
from core.submission import read_submission  # noqa: E402

n_images = len(load_images(IMAGES))
sub = pd.read_csv(OUT)
assert list(sub.columns) == ["imgId_eId", "val"], list(sub.columns)
assert len(sub) == n_images * 384, f"{len(sub)} rows for {n_images} images"
sub_ids, emb = read_submission(OUT)
norms = np.linalg.norm(emb, axis=1)
assert len(sub_ids) == n_images and np.allclose(norms, 1.0, atol=1e-4), (len(sub_ids), norms.min(), norms.max())
print(f"{OUT}: {n_images} images x 384, row norms {norms.min():.6f}..{norms.max():.6f}")
print(sub.head())
"""),
]


def notebook_json():
    return {
        "cells": [_cell(kind, src, i) for i, (kind, src) in enumerate(NOTEBOOK_CELLS)],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def notebook_text():
    return json.dumps(notebook_json(), indent=1, ensure_ascii=False) + "\n"


def write_notebook(path):
    write_text(path, notebook_text())
    return Path(path)


def notebook_code(path):
    """The notebook's code cells joined into one script (how the tests run it)."""
    nb = read_json(path)
    return "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code") + "\n"
