"""Pack what the Kaggle notebook needs into one folder, to upload as a Kaggle dataset.

    python -m pipeline.kaggle.pack --ensemble work/ensemble [--runs work/runs/a work/runs/b ...]
        [--out work/kaggle_pack] [--wheels timm open_clip_torch ftfy wcwidth | --no-wheels] [--with-torch]
        [--wheel-dir DIR] [--python-version 3.11 --platform manylinux2014_x86_64] [--fp32]
    python -m pipeline.kaggle.pack --write-notebook kaggle/notebook.ipynb   # (re)write the notebook only

The pack (written beside OUT first, then renamed into place, so a killed pack never leaves a
half-written folder under a valid name):

    OUT/code/            the project's modules that inference imports (models.submit's import
                         closure) + configs/open_clip/*.json; no tests, no work/
    OUT/runs/<name>/     metrics.json, mean_embedding.npy, folds/fold<k>/model.pt for every run the
                         ensemble blends; floating fp32 tensors / arrays cast to fp16 (target_mean /
                         target_std stay fp32; `load_state_dict` copies fp16 into the fp32 model).
                         A kNN fold holds its own neighbour bank (float16 features + targets);
                         a retrieval run's prompt bank is RUN/bank/ (float16 MiniLM embeddings,
                         the text-tower keys of query: clip), its folds hold the query model and
                         the faiss index's kind, nprobe and IVF cells (the lists are rebuilt
                         from the keys when the notebook loads them)
    OUT/backbones/       each frozen kNN backbone's weights once (fp16), named by the kNN fold
                         checkpoints that use it, so the notebook needs no download
    OUT/ensemble/        ensemble.json and what it names: weights.npz (always: the weight blend or the
                         fallback), ridge.npz or lgbm_stacker.json.gz when the ensemble is that stacker
    OUT/wheels/          `pip download --only-binary=:all: --no-deps` of the listed packages, at the
                         versions pinned in requirements.txt (else the installed ones); torch and
                         torchvision only with --with-torch (Kaggle's images ship them); faiss-cpu
                         when a packed run is a kNN or a retrieval (their search), lightgbm for that
                         stacker
    OUT/notebook.ipynb   installs the wheels offline, runs models.submit.make_submission on the
                         competition's images, writes /kaggle/working/submission.csv and checks it
    OUT/MANIFEST.json    what is inside: sizes, sha256 of the checkpoints, the runs' config hashes
                         and OOF scores, the ensemble's method and nested-CV score, the backbones,
                         the wheels
    OUT/dataset-metadata.json   for `kaggle datasets create -p OUT --dir-mode zip`

The parts, in pipeline/kaggle/: code.py (the code), checkpoints.py (fp16 checkpoints, backbones
once), wheels.py, notebook.py (the notebook, from the cells in notebook_cells.py). Runs default to
the ones ensemble.json names: the path scores.json recorded for each, else ENSEMBLE/../runs/<name>.
The notebook reads its settings from SDI2P_PACK, SDI2P_IMAGES and SDI2P_OUT, so the same cells run
here on a local folder (see tests/test_kaggle_pack.py).
"""
import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.errors import DataError, exit_on_input_error
from core.io import read_json, write_json
from models.knn_features import PACKED_BACKBONES_DIR
from pipeline.kaggle.checkpoints import FrozenBackbones, pack_checkpoint, pack_state_file
from pipeline.kaggle.code import copy_code
from pipeline.kaggle.notebook import write_notebook
from pipeline.kaggle.wheels import DEFAULT_WHEELS, FAISS_WHEEL, TORCH_WHEELS, collect_wheels, wheel_specs

REPO = Path(__file__).resolve().parents[2]
PACK_KIND = "sdi2p-kaggle-pack"
RUN_FILES = ("metrics.json", "mean_embedding.npy")


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
    from core.runs import RUN_MANIFEST
    from models.fold_outputs import FOLDS_DIR, fold_checkpoints, fold_index
    from models.predict import is_constant_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "run directory not found")
    if not (run_dir / RUN_MANIFEST).is_file():
        raise DataError(run_dir / RUN_MANIFEST, "missing: the run is unfinished (train it to completion first)")
    for name in RUN_FILES:
        if not (run_dir / name).is_file():
            raise DataError(run_dir / name, "missing although the run is finished")
    metrics = read_json(run_dir / "metrics.json")
    if not is_constant_run(run_dir):
        ckpts = fold_checkpoints(run_dir)
        folds = sorted(int(k) for k in metrics.get("fold_cosine", {}))
        have = sorted(fold_index(p) for p in ckpts)
        if folds and have != folds:
            raise DataError(run_dir / FOLDS_DIR, f"fold checkpoints for folds {have}, but the run scored folds {folds}")
    return metrics


def pack_run(name, src, dest, fp16=True, backbones=None):
    """Copy a finished run's inference files into dest/<name>; returns its MANIFEST entry."""
    from models.fold_outputs import fold_checkpoints
    from models.predict import is_constant_run

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
            checkpoints[str(rel)] = pack_checkpoint(path, out / rel, f"{name}/{rel}", fp16, backbones)
    bank = pack_bank(src, out, fp16) if metrics.get("model") == "retrieval" else None
    return {
        "source": str(Path(src).resolve()),
        "model": metrics.get("model"),
        "backbone": metrics.get("backbone"),
        "config_hash": metrics.get("config_hash"),
        "oof_cosine": metrics.get("oof_cosine"),
        "fold_cosine": metrics.get("fold_cosine"),
        "folds_sha256": (metrics.get("folds") or {}).get("sha256"),
        "checkpoints": checkpoints,
        **({"bank": bank} if bank else {}),
    }


def pack_bank(src, out, fp16=True):
    """A retrieval run's bank as inference reads it (RUN/bank/: float16 MiniLM embeddings, the text-tower keys of a
    query: clip run, bank.json; a fine-tuned clip fold's keys travel in its fold folder) and a query: clip run's
    image tower (fp16; never its text tower); its MANIFEST entry."""
    from models.fold_outputs import FOLDS_DIR
    from models.retrieval_bank import BANK_DIR, BANK_META, INFERENCE_FILES, KEYS_FILE
    from models.retrieval_clip import IMAGE_TOWER_FILE

    files = [Path(BANK_DIR) / f for f in INFERENCE_FILES if (src / BANK_DIR / f).is_file()]
    files += sorted(p.relative_to(src) for p in (src / FOLDS_DIR).glob(f"fold*/bank_{KEYS_FILE}"))
    if not (src / BANK_DIR / BANK_META).is_file():
        raise DataError(src / BANK_DIR / BANK_META, "missing: the retrieval run's bank (train the run to the end)")
    for rel in files:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, out / rel)
    if (src / IMAGE_TOWER_FILE).is_file():
        pack_state_file(src / IMAGE_TOWER_FILE, out / IMAGE_TOWER_FILE, fp16)
        files.append(Path(IMAGE_TOWER_FILE))
    meta = read_json(src / BANK_DIR / BANK_META)
    return {"n": meta["n"], "source": meta["source"], "files": [str(f) for f in files],
            "bytes": sum((out / f).stat().st_size for f in files)}


def pack_ensemble(ensemble_dir, dest):
    from ensemble.apply import ENSEMBLE_MANIFEST, WEIGHTS_FILE, read_manifest

    manifest = read_manifest(ensemble_dir)
    files = [ENSEMBLE_MANIFEST, manifest["file"]]  # only what ensemble.json names (a stale stacker stays behind)
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


def _versions(names=("torch", "torchvision", "timm", "open_clip_torch", "numpy", "pandas", "lightgbm", "faiss-cpu")):
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


def _wheel_packages(wheels, with_torch, method, run_entries):
    """The packages to pack as wheels: those asked for, plus what the runs and the ensemble need."""
    packages = list(wheels or [])
    if with_torch:
        packages += [p for p in TORCH_WHEELS if p not in packages]
    if packages and method == "lgbm" and "lightgbm" not in packages:
        packages.append("lightgbm")
    searches = any(r["model"] in ("knn", "retrieval") for r in run_entries.values())  # faiss at inference
    if packages and searches and FAISS_WHEEL not in packages:
        packages.append(FAISS_WHEEL)
    return packages


def _print_summary(out, manifest, shared, seconds):
    """One line: the pack's sizes, what fp16 saved, the frozen backbones shared by `shared` fold checkpoints."""
    s = manifest["sizes"]
    mib = 1 / 2**20
    print(f"wrote {out}/: {s['total'] * mib:.1f} MiB in all (runs {s['runs'] * mib:.1f}, backbones "
          f"{s['backbones'] * mib:.1f}, wheels {s['wheels'] * mib:.1f}, code {s['code'] * mib:.2f} MiB); checkpoints "
          f"{s['checkpoints_source'] * mib:.1f} MiB in the runs -> {s['checkpoints_packed'] * mib:.1f} MiB packed; "
          f"fp16 saved {s['fp16_saving'] * mib:.1f} MiB"
          + (f" ({len(manifest['backbones'])} frozen backbone(s) stored once for {shared} kNN fold checkpoints)"
             if shared else "") + f"  [{seconds:.1f} s]")


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
        backbones = FrozenBackbones(tmp, fp16)
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # elementwise casts of small tensors: threads only contend
        try:
            run_entries = {name: pack_run(name, path, tmp / "runs", fp16, backbones) for name, path in runs}
        finally:
            torch.set_num_threads(threads)
        ens = pack_ensemble(ensemble_dir, tmp / "ensemble")
        packages = _wheel_packages(wheels, with_torch, ens["method"], run_entries)
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
            "backbones": backbones.manifest(),
            "wheels": wheel_entries,
            "sizes": {"code": _tree_bytes(tmp / "code"), "runs": _tree_bytes(tmp / "runs"),
                      "backbones": _tree_bytes(tmp / PACKED_BACKBONES_DIR),
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
    _print_summary(out, manifest, sum(bool(c["frozen_backbone"]) for c in ckpts), time.time() - t0)
    return manifest


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pipeline.kaggle.pack", description=__doc__,
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
                         "added when the ensemble is the LightGBM stacker, faiss-cpu when a run is a kNN or a "
                         "retrieval)")
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
