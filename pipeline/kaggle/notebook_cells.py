"""The Kaggle notebook's cells: pipeline/kaggle/notebook.py turns this file into notebook.ipynb.

A line `# %%` starts a code cell and `# %% [markdown]` a markdown cell (its lines lose their leading
`# `); this docstring, before the first marker, stays out of the notebook. Each code cell defines a
function and calls it under `if __name__ == "__main__":`, which holds in a notebook's kernel and in
`python script.py`, so importing this module runs nothing: tests import it to call the functions.
The cells use the standard library only until `use_packed_code` puts the pack's code on sys.path.
"""

# %% [markdown]
# # Stable Diffusion - Image to Prompts: offline inference
#
# Attach two inputs (Internet off): the competition data and the pack dataset written by
# `python -m pipeline.kaggle.pack` (code, wheels, fold checkpoints, each frozen kNN backbone once, each
# retrieval run's prompt bank, fitted ensemble). The cells
# install the packed wheels without an index, put the packed code on `sys.path`, predict every test
# image with every fold of every blended run (a retrieval run searches its packed bank: no text encoder
# runs here), blend them with the fitted ensemble (the weights,
# ridge or LightGBM stacker that `ensemble/ensemble.json` names; numpy only unless LightGBM) and write
# `/kaggle/working/submission.csv`. An unreadable test image does not stop the notebook: it gets the
# runs' mean embedding (blended like the others, so every row is written) and is listed in
# `/kaggle/working/bad_images.csv`. `SDI2P_PACK`, `SDI2P_IMAGES` and `SDI2P_OUT` override the
# paths (that is how the project's tests run these cells on a local folder).

# %%
import glob
import json
import os
import subprocess
import sys
import time

PACK_MANIFEST = "MANIFEST.json"  # what `python -m pipeline.kaggle.pack` writes at the pack's root
KAGGLE_INPUT = "/kaggle/input"


def find_pack(environ=os.environ, inputs=KAGGLE_INPUT):
    """(pack folder, its manifest): SDI2P_PACK, else inputs/sdi2p-pack, else the attached input holding a pack."""
    pack = environ.get("SDI2P_PACK", os.path.join(inputs, "sdi2p-pack"))
    if not os.path.isfile(os.path.join(pack, PACK_MANIFEST)) and "SDI2P_PACK" not in environ:
        # the dataset was uploaded under another name: the attached input holding a pack
        found = sorted(glob.glob(os.path.join(inputs, "*", PACK_MANIFEST))
                       + glob.glob(os.path.join(inputs, "*", "*", PACK_MANIFEST)))
        pack = os.path.dirname(found[0]) if found else pack
    if not os.path.isfile(os.path.join(pack, PACK_MANIFEST)):
        raise FileNotFoundError(f"{pack}/{PACK_MANIFEST}: no pack there (attach the dataset or set SDI2P_PACK)")
    with open(os.path.join(pack, PACK_MANIFEST)) as f:
        return pack, json.load(f)


if __name__ == "__main__":
    PACK, MANIFEST = find_pack()
    IMAGES = os.environ.get("SDI2P_IMAGES", f"{KAGGLE_INPUT}/stable-diffusion-image-to-prompts/images")
    OUT = os.environ.get("SDI2P_OUT", "/kaggle/working/submission.csv")
    print(f"pack {PACK}: runs {MANIFEST['ensemble']['models']}, ensemble {MANIFEST['ensemble']['method']}, "
          f"made {MANIFEST['created']}")


# %%
def install_wheels(pack, manifest):
    """Offline install of the packed wheels (no index, no dependency resolution: the rest is on the image)."""
    wheels = os.path.join(pack, "wheels")
    specs = list(dict.fromkeys(w["spec"] for w in manifest.get("wheels", [])))
    if not (specs and glob.glob(os.path.join(wheels, "*.whl"))):
        print("no wheels packed: using the packages this environment has")
        return
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", wheels, *specs]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    install_wheels(PACK, MANIFEST)


# %%
def use_packed_code(pack):
    """Put the pack's code first on sys.path, never the network; models.submit, imported from the pack."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    sys.dont_write_bytecode = True  # the input dataset is read-only
    code = os.path.join(pack, "code")
    sys.path.insert(0, code)
    import models.submit
    from models.knn_features import BACKBONES_ENV, PACKED_BACKBONES_DIR

    os.environ[BACKBONES_ENV] = os.path.join(pack, PACKED_BACKBONES_DIR)  # frozen kNN backbones, stored once
    assert os.path.realpath(models.submit.__file__).startswith(os.path.realpath(code) + os.sep), models.submit.__file__
    print("code from", os.path.dirname(os.path.dirname(models.submit.__file__)))
    return models.submit


if __name__ == "__main__":
    SUBMIT = use_packed_code(PACK)


# %%
def predict(submit, pack, manifest, images, out):
    """Every blended run's folds on every image, blended by the packed ensemble, written to `out`; the ids."""
    runs = [os.path.join(pack, "runs", name) for name in manifest["ensemble"]["models"]]
    t0 = time.time()
    # skip_bad_images: an unreadable test image gets the mean embedding instead of failing the whole notebook
    ids, _ = submit.make_submission(runs, os.path.join(pack, "ensemble"), images, out, progress=False,
                                    skip_bad_images=True)
    print(f"{len(ids)} images -> {out} in {time.time() - t0:.1f} s")
    return ids


if __name__ == "__main__":
    predict(SUBMIT, PACK, MANIFEST, IMAGES, OUT)


# %%
def check_written(images, out):
    """The strict check before uploading (core.submission's): exactly the images' ids, 384 rows each in order,
    unit-norm rows; an error names what is wrong."""
    import numpy as np
    import pandas as pd

    from core.submission import check_submission

    ids, emb = check_submission(out, images)
    norms = np.linalg.norm(emb, axis=1)
    print(f"{out}: {len(ids)} images x {emb.shape[1]}, row norms {norms.min():.6f}..{norms.max():.6f}")
    print(pd.read_csv(out, nrows=5))


if __name__ == "__main__":
    check_written(IMAGES, OUT)
