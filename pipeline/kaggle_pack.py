"""Pack what the Kaggle notebook needs into one folder, to upload as a Kaggle dataset.

    python -m pipeline.kaggle_pack --ensemble work/ensemble [--runs work/runs/a work/runs/b ...]
        [--out work/kaggle_pack] [--wheels timm open_clip_torch ftfy wcwidth | --no-wheels] [--with-torch]
        [--wheel-dir DIR] [--python-version 3.11 --platform manylinux2014_x86_64] [--fp32]
    python -m pipeline.kaggle_pack --write-notebook kaggle/notebook.ipynb   # (re)write the notebook only

The pack (written beside OUT first, then renamed into place, so a killed pack never leaves a
half-written folder under a valid name):

    OUT/code/            the project's modules that inference imports (models.submit's import
                         closure) + configs/open_clip/*.json; no tests, no work/
    OUT/runs/<name>/     metrics.json, mean_embedding.npy, folds/fold<k>/model.pt for every run the
                         ensemble blends; floating fp32 tensors / arrays cast to fp16 (target_mean /
                         target_std stay fp32; `load_state_dict` copies fp16 into the fp32 model).
                         A kNN on a frozen backbone gets that backbone's weights embedded in each
                         fold checkpoint, so the notebook needs no download.
    OUT/ensemble/        ensemble.json and what it names: weights.npz (always: the weight blend or the
                         fallback), ridge.npz or lgbm_stacker.json.gz when the ensemble is that stacker
    OUT/wheels/          `pip download --only-binary=:all: --no-deps` of the listed packages, at the
                         versions pinned in requirements.txt (else the installed ones); torch and
                         torchvision only with --with-torch (Kaggle's images ship them)
    OUT/notebook.ipynb   installs the wheels offline, runs models.submit.make_submission on the
                         competition's images, writes /kaggle/working/submission.csv and checks it
    OUT/MANIFEST.json    what is inside: sizes, sha256 of the checkpoints, the runs' config hashes
                         and OOF scores, the ensemble's method and nested-CV score, the wheels
    OUT/dataset-metadata.json   for `kaggle datasets create -p OUT --dir-mode zip`

Runs default to the ones ensemble.json names: the path scores.json recorded for each, else
ENSEMBLE/../runs/<name>. The notebook reads its settings from SDI2P_PACK, SDI2P_IMAGES and
SDI2P_OUT, so the same cells run here on a local folder (see tests/test_kaggle_pack.py).
"""
import argparse
import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.errors import DataError, exit_on_data_error
from core.io import atomic_path, read_json, sha256_file, sha256_json, write_json, write_text

REPO = Path(__file__).resolve().parents[1]
PACK_KIND = "sdi2p-kaggle-pack"
# What the notebook runs; everything first-party it imports (at module level or inside functions)
# travels in the pack.
ENTRY_MODULES = ("models.submit",)
DATA_DIRS = ("configs/open_clip",)  # non-Python files the packed code reads at run time
# Not on Kaggle's images (or there at other versions): open_clip and its pure-Python requirements.
DEFAULT_WHEELS = ("timm", "open_clip_torch", "ftfy", "wcwidth")
TORCH_WHEELS = ("torch", "torchvision")
KEEP_FP32 = ("target_mean", "target_std")  # buffers turning head outputs into embeddings: tiny, keep exact
RUN_FILES = ("metrics.json", "mean_embedding.npy")
NOTEBOOK_TEMPLATE = REPO / "kaggle" / "notebook.ipynb"


# ----------------------------------------------------------------------------- code


def _first_party(repo):
    return {d.name for d in repo.iterdir() if (d / "__init__.py").is_file()}


def _module_file(module, repo):
    path = repo.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None  # an attribute (`from core import EMBEDDING_DIM`) or not ours


def _imports(tree, module, is_package):
    """Every module name an AST imports, anywhere (lazy imports inside functions included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def code_closure(entries=ENTRY_MODULES, repo=REPO):
    """Repository-relative paths of the first-party .py files `entries` import, transitively."""
    repo = Path(repo)
    ours = _first_party(repo)
    todo, seen, files = list(entries), set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module, repo)
        if path is None:
            continue
        files.add(path.relative_to(repo))
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages' __init__
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        todo.extend(m for m in _imports(tree, module, path.name == "__init__.py") if m.split(".")[0] in ours)
    return sorted(files)


def copy_code(dest, repo=REPO):
    """Copy the inference code and its data files; returns their repository-relative paths."""
    rel = [str(p) for p in code_closure(repo=repo)]
    for d in DATA_DIRS:
        rel += sorted(str(p.relative_to(repo)) for p in (repo / d).rglob("*") if p.is_file())
    for r in rel:
        (dest / r).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo / r, dest / r)
    return rel


# ----------------------------------------------------------------------------- runs


def resolve_runs(ensemble_dir, run_dirs=None):
    """[(name, run dir)] in the ensemble's model order, every one checked to exist."""
    from ensemble.apply import read_manifest

    ensemble_dir = Path(ensemble_dir)
    if not ensemble_dir.is_dir():
        raise DataError(ensemble_dir, "ensemble folder not found (fit one with `python -m ensemble.fit`)")
    manifest = read_manifest(ensemble_dir)
    names = list(manifest["models"])
    odd = [n for n in names if "/" in n or n in ("", ".", "..")]
    if odd:
        raise DataError(ensemble_dir / "ensemble.json", f"models {odd} are not run directory names; "
                        "models.submit matches runs by directory name, so blended runs need distinct names")
    if run_dirs:
        given = {Path(r).name: Path(r) for r in run_dirs}
        missing = [n for n in names if n not in given]
        if missing:
            raise DataError(ensemble_dir / "ensemble.json",
                            f"the ensemble blends {names}; --runs gives no run directory for {missing}")
        extra = sorted(set(given) - set(names))
        if extra:
            print(f"note: not packed (the ensemble does not blend them): {extra}")
        return [(n, given[n]) for n in names]
    recorded = {}
    scores = ensemble_dir / "scores.json"
    if scores.is_file():
        recorded = {r["name"]: Path(r["path"]) for r in read_json(scores).get("runs", [])}
    out = []
    for name in names:
        candidates = []
        if name in recorded:
            p = recorded[name]
            candidates += [p] if p.is_absolute() else [p, REPO / p]
        candidates.append(ensemble_dir.parent / "runs" / name)
        found = next((c for c in candidates if c.is_dir()), None)
        if found is None:
            raise DataError(ensemble_dir / "ensemble.json",
                            f"run {name!r} is blended by the ensemble but absent (looked in "
                            f"{', '.join(map(str, dict.fromkeys(candidates)))}); pass --runs")
        out.append((name, found))
    return out


def check_run(run_dir):
    """The run's metrics after checking it is finished and has a checkpoint for every fold."""
    from models.predict import fold_checkpoints, is_constant_run
    from oof.runs import MANIFEST_FILE

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "run directory not found")
    if not (run_dir / MANIFEST_FILE).is_file():
        raise DataError(run_dir / MANIFEST_FILE, "missing: the run is unfinished (train it to completion first)")
    for name in RUN_FILES:
        if not (run_dir / name).is_file():
            raise DataError(run_dir / name, "missing although the run is finished")
    metrics = read_json(run_dir / "metrics.json")
    if not is_constant_run(run_dir):
        ckpts = fold_checkpoints(run_dir)
        folds = sorted(int(k) for k in metrics.get("fold_cosine", {}))
        have = sorted(int(p.parent.name[4:]) for p in ckpts)
        if folds and have != folds:
            raise DataError(run_dir / "folds", f"fold checkpoints for folds {have}, but the run scored folds {folds}")
    return metrics


def _half(obj, key=None, counts=None):
    """`obj` with fp32 tensors / arrays cast to fp16 (recursively through dicts, lists, tuples)."""
    import torch

    if isinstance(obj, dict):
        return {k: _half(v, k, counts) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_half(v, key, counts) for v in obj)
    last = str(key).rsplit(".", 1)[-1]
    if isinstance(obj, torch.Tensor) and obj.dtype == torch.float32 and last not in KEEP_FP32:
        h = obj.half()
        if torch.isfinite(h).all() or not torch.isfinite(obj).all():  # never overflow a value to inf
            counts["cast"] += 1
            counts["saved"] += obj.nelement() * 2
            return h
        counts["kept"] += 1
    elif isinstance(obj, np.ndarray) and obj.dtype == np.float32 and last not in KEEP_FP32:
        with np.errstate(over="ignore"):
            h = obj.astype(np.float16)
        if np.isfinite(h).all() or not np.isfinite(obj).all():
            counts["cast"] += 1
            counts["saved"] += obj.size * 2
            return h
        counts["kept"] += 1
    return obj


def _embed_frozen_backbone(ckpt, cache):
    """A kNN fold on a frozen (pretrained) backbone: put its weights into the checkpoint (once per backbone)."""
    spec = ckpt.get("feature_model")
    if not spec or spec.get("state_dict") is not None:
        return False
    from models.knn import _feature_extractor

    key = sha256_json(spec["config"]["backbone"]) + str(spec["config"]["image"]["size"])
    if key not in cache:
        print(f"  embedding the frozen backbone {spec['config']['backbone']['name']} "
              f"(weights: {spec['config']['backbone'].get('pretrained')})", flush=True)
        model, _ = _feature_extractor(spec, "cpu", load_weights=True)
        cache[key] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt["feature_model"] = {**spec, "state_dict": cache[key]}
    return True


def pack_checkpoint(src, dst, fp16=True, frozen_cache=None):
    """Copy one fold checkpoint (fp16 where it was fp32); returns its MANIFEST entry."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    embedded = _embed_frozen_backbone(ckpt, frozen_cache if frozen_cache is not None else {})
    counts = {"cast": 0, "kept": 0, "saved": 0}
    if fp16:
        ckpt = _half(ckpt, counts=counts)
    if counts["cast"] or embedded:
        with atomic_path(dst) as tmp:
            torch.save(ckpt, tmp)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return {"bytes": dst.stat().st_size, "source_bytes": Path(src).stat().st_size, "sha256": sha256_file(dst),
            "fp16_tensors": counts["cast"], "fp16_saved_bytes": counts["saved"], "fp32_overflow_kept": counts["kept"],
            "frozen_backbone_embedded": embedded}


def pack_run(name, src, dest, fp16=True, frozen_cache=None):
    """Copy a finished run's inference files into dest/<name>; returns its MANIFEST entry."""
    from models.predict import fold_checkpoints, is_constant_run

    metrics = check_run(src)
    out = dest / name
    out.mkdir(parents=True, exist_ok=True)
    for f in RUN_FILES:
        shutil.copyfile(src / f, out / f)
    checkpoints = {}
    if not is_constant_run(src):
        for path in fold_checkpoints(src):
            rel = path.relative_to(src)
            print(f"  {name}/{rel}", flush=True)
            checkpoints[str(rel)] = pack_checkpoint(path, out / rel, fp16, frozen_cache)
    return {
        "source": str(Path(src).resolve()),
        "model": metrics.get("model"),
        "backbone": metrics.get("backbone"),
        "config_hash": metrics.get("config_hash"),
        "oof_cosine": metrics.get("oof_cosine"),
        "fold_cosine": metrics.get("fold_cosine"),
        "folds_sha256": (metrics.get("folds") or {}).get("sha256"),
        "checkpoints": checkpoints,
    }


def pack_ensemble(ensemble_dir, dest):
    from ensemble.apply import MANIFEST_FILE, WEIGHTS_FILE, read_manifest

    manifest = read_manifest(ensemble_dir)
    files = [MANIFEST_FILE, manifest["file"]]  # only what ensemble.json names (a stale stacker stays behind)
    fallback = (manifest.get("linear_fallback") or {}).get("file")
    files += [fallback] if fallback else []
    files += [WEIGHTS_FILE] if (Path(ensemble_dir) / WEIGHTS_FILE).is_file() else []
    dest.mkdir(parents=True, exist_ok=True)
    for f in dict.fromkeys(files):
        if not (Path(ensemble_dir) / f).is_file():
            raise DataError(Path(ensemble_dir) / f, "missing: ensemble.json names it")
        shutil.copyfile(Path(ensemble_dir) / f, dest / f)
    entry = {"source": str(Path(ensemble_dir).resolve()), "method": manifest["method"],
             "models": list(manifest["models"]), "files": list(dict.fromkeys(files)),
             **({"alpha": manifest["alpha"]} if "alpha" in manifest else {})}
    scores = Path(ensemble_dir) / "scores.json"
    if scores.is_file():
        s = read_json(scores)
        chosen = s.get("chosen_method")
        entry.update(nested_cv_cosine=(s.get("methods", {}).get(chosen) or {}).get("overall"),
                     single_models={m: v.get("overall") for m, v in s.get("single_models", {}).items()},
                     folds_sha256=(s.get("folds_file") or {}).get("sha256"))
    return entry


# ----------------------------------------------------------------------------- wheels


def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(requirements=REPO / "requirements.txt"):
    pins = {}
    if Path(requirements).is_file():
        for line in Path(requirements).read_text().splitlines():
            m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
            if m:
                pins[_canon(m.group(1))] = m.group(2)
    return pins


def wheel_specs(packages, pins=None):
    """['name==version'] : an explicit pin, else requirements.txt's, else the installed version."""
    pins = read_pins() if pins is None else pins
    specs = []
    for p in packages:
        if "==" in p:
            specs.append(p.replace(" ", ""))
            continue
        version = pins.get(_canon(p))
        if version is None:
            try:
                version = importlib.metadata.version(p)
            except importlib.metadata.PackageNotFoundError:
                raise DataError("requirements.txt", f"{p} is neither pinned there nor installed here; "
                                                    f"give it as {p}==VERSION") from None
        specs.append(f"{p}=={version}")
    return list(dict.fromkeys(specs))


def _parse_wheel(filename):
    parts = filename[:-len(".whl")].split("-")
    return (_canon(parts[0]), parts[1]) if len(parts) >= 5 else (None, None)


def matching_wheels(folder, spec):
    name, version = spec.split("==")
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.whl") if _parse_wheel(p.name) == (_canon(name), version))


def collect_wheels(specs, dest, wheel_dir=None, python_version=None, platform=None):
    """Wheels for `specs` into dest: taken from wheel_dir where they are there, else `pip download`ed."""
    dest.mkdir(parents=True, exist_ok=True)
    source = Path(wheel_dir) if wheel_dir else dest
    missing = [s for s in specs if not matching_wheels(source, s)]
    if missing:
        source.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--dest", str(source)]
        cmd += ["--python-version", python_version] if python_version else []
        cmd += ["--platform", platform] if platform else []
        print("$ " + " ".join(cmd + missing), flush=True)
        res = subprocess.run(cmd + missing)
        if res.returncode != 0:
            raise DataError(source, f"pip download of {missing} failed (exit {res.returncode}); "
                                    "--wheel-dir with the wheels, or --no-wheels")
    entries = []
    for spec in specs:
        found = matching_wheels(source, spec)
        if not found:
            raise DataError(source, f"no wheel for {spec} after pip download")
        for w in found:
            if w.parent.resolve() != dest.resolve():
                shutil.copyfile(w, dest / w.name)
            entries.append({"spec": spec, "file": w.name, "bytes": w.stat().st_size, "sha256": sha256_file(w)})
    return entries


# ----------------------------------------------------------------------------- notebook


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
`python -m pipeline.kaggle_pack` (code, wheels, fold checkpoints, fitted ensemble). The cells
install the packed wheels without an index, put the packed code on `sys.path`, predict every test
image with every fold of every blended run, blend them with the fitted ensemble (the weights,
ridge or LightGBM stacker that `ensemble/ensemble.json` names; numpy only unless LightGBM) and write
`/kaggle/working/submission.csv`. `SDI2P_PACK`, `SDI2P_IMAGES` and `SDI2P_OUT` override the
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
ids, blended = models.submit.make_submission(RUNS, os.path.join(PACK, "ensemble"), IMAGES, OUT, progress=False)
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


# ----------------------------------------------------------------------------- the pack


def _tree_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _git_state(repo=REPO):
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _versions(names=("torch", "torchvision", "timm", "open_clip_torch", "numpy", "pandas", "lightgbm")):
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _replace_dir(tmp, out):
    """Move the finished pack onto `out`, replacing an earlier pack (never an unrelated folder)."""
    if out.exists():
        if not (out / "MANIFEST.json").is_file() and any(out.iterdir()):
            raise DataError(out, "exists and is not a pack (no MANIFEST.json); refusing to replace it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def make_pack(ensemble_dir, out, run_dirs=None, wheels=DEFAULT_WHEELS, with_torch=False, wheel_dir=None,
              python_version=None, platform=None, fp16=True, dataset_id="YOUR_KAGGLE_USERNAME/sdi2p-pack"):
    """Write the pack; returns its MANIFEST (dict)."""
    t0 = time.time()
    out = Path(out)
    if out.exists() and not (out / "MANIFEST.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(out, "exists and is not a pack (no MANIFEST.json); refusing to replace it")
    runs = resolve_runs(ensemble_dir, run_dirs)
    for _, path in runs:  # every input checked before anything is written
        check_run(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the pack gets the usual permissions
    try:
        code = copy_code(tmp / "code")
        print(f"code: {len(code)} files", flush=True)
        frozen_cache = {}
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # elementwise casts of small tensors: threads only contend
        try:
            run_entries = {name: pack_run(name, path, tmp / "runs", fp16, frozen_cache) for name, path in runs}
        finally:
            torch.set_num_threads(threads)
        ens = pack_ensemble(ensemble_dir, tmp / "ensemble")
        packages = list(wheels or [])
        if with_torch:
            packages += [p for p in TORCH_WHEELS if p not in packages]
        if packages and ens["method"] == "lgbm" and "lightgbm" not in packages:
            packages.append("lightgbm")
        wheel_entries = collect_wheels(wheel_specs(packages), tmp / "wheels", wheel_dir, python_version,
                                       platform) if packages else []
        (tmp / "wheels").mkdir(exist_ok=True)
        write_notebook(tmp / "notebook.ipynb")
        write_json(tmp / "dataset-metadata.json", {"title": dataset_id.split("/")[-1], "id": dataset_id,
                                                   "licenses": [{"name": "CC0-1.0"}]})
        ckpts = [c for r in run_entries.values() for c in r["checkpoints"].values()]
        source_bytes = sum(c["source_bytes"] for c in ckpts)
        packed_bytes = sum(c["bytes"] for c in ckpts)
        fp16_saving = sum(c["fp16_saved_bytes"] for c in ckpts)  # tensor bytes the cast removed
        manifest = {
            "kind": PACK_KIND,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "repo": _git_state(),
            "packed_with": _versions(),
            "fp16": bool(fp16),
            "code": {"files": code, "bytes": _tree_bytes(tmp / "code")},
            "runs": run_entries,
            "ensemble": ens,
            "wheels": wheel_entries,
            "sizes": {"code": _tree_bytes(tmp / "code"), "runs": _tree_bytes(tmp / "runs"),
                      "ensemble": _tree_bytes(tmp / "ensemble"), "wheels": _tree_bytes(tmp / "wheels"),
                      "checkpoints_source": source_bytes, "checkpoints_packed": packed_bytes,
                      "fp16_saving": fp16_saving},
        }
        write_json(tmp / "MANIFEST.json", manifest)
        manifest["sizes"]["total"] = _tree_bytes(tmp)
        write_json(tmp / "MANIFEST.json", manifest)  # total includes the manifest itself, near enough
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    s = manifest["sizes"]
    mib = 1 / 2**20
    embedded = sum(c["frozen_backbone_embedded"] for c in ckpts)
    print(f"wrote {out}/: {s['total'] * mib:.1f} MiB in all (runs {s['runs'] * mib:.1f}, wheels "
          f"{s['wheels'] * mib:.1f}, code {s['code'] * mib:.2f} MiB); checkpoints {source_bytes * mib:.1f} MiB in "
          f"the runs -> {packed_bytes * mib:.1f} MiB packed; fp16 saved {fp16_saving * mib:.1f} MiB"
          + (f" (frozen backbones embedded in {embedded} kNN fold checkpoints)" if embedded else "")
          + f"  [{time.time() - t0:.1f} s]")
    return manifest


@exit_on_data_error
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pipeline.kaggle_pack", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ensemble", help="fitted ensemble folder (`python -m ensemble.fit --out`)")
    ap.add_argument("--runs", nargs="+", default=None, metavar="RUN_DIR",
                    help="run directories (default: those ensemble.json names, found via scores.json or "
                         "ENSEMBLE/../runs/<name>)")
    ap.add_argument("--out", default="work/kaggle_pack", help="pack folder (default: %(default)s); an earlier "
                                                              "pack there is replaced")
    wh = ap.add_mutually_exclusive_group()
    wh.add_argument("--wheels", nargs="+", default=list(DEFAULT_WHEELS), metavar="PKG",
                    help="packages to pack as wheels, NAME or NAME==VERSION (default: %(default)s; lightgbm is "
                         "added when the ensemble is the LightGBM stacker)")
    wh.add_argument("--no-wheels", action="store_true", help="pack no wheels (the notebook skips the install)")
    ap.add_argument("--with-torch", action="store_true", help="also pack torch and torchvision (Kaggle has them)")
    ap.add_argument("--wheel-dir", default=None, help="take wheels found here, pip download the others into it "
                                                      "(a cache across packs; default: download into the pack)")
    ap.add_argument("--python-version", default=None, help="pip download for this Python, e.g. 3.11 (Kaggle's)")
    ap.add_argument("--platform", default=None, help="pip download for this platform, e.g. manylinux2014_x86_64")
    ap.add_argument("--fp32", action="store_true", help="keep the checkpoints as they are (no fp16 cast)")
    ap.add_argument("--dataset-id", default="YOUR_KAGGLE_USERNAME/sdi2p-pack",
                    help="id written to dataset-metadata.json for `kaggle datasets create` (default: %(default)s)")
    ap.add_argument("--write-notebook", metavar="PATH", default=None,
                    help="only write the notebook to PATH (e.g. kaggle/notebook.ipynb) and exit")
    args = ap.parse_args(argv)
    if args.write_notebook:
        print(f"wrote {write_notebook(args.write_notebook)}")
        return 0
    if not args.ensemble:
        ap.error("--ensemble is required")
    make_pack(args.ensemble, args.out, args.runs, [] if args.no_wheels else args.wheels, args.with_torch,
              args.wheel_dir, args.python_version, args.platform, not args.fp32, args.dataset_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
