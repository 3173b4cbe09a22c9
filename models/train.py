"""Train one config with K-fold CV and write its run directory (the format core/runs.py owns).

    python -m models.train --config configs/convnext_demo.yaml [--folds 0,2] [--resume] [--overwrite]
                           [--set train.epochs=3 ...]
    torchrun --nproc_per_node 4 -m models.train --config ...      # several GPUs / processes

For each fold k: train on the other folds, save the fold checkpoint, predict fold k (OOF) and
the test set. When every fold is done: oof.npy, test.npy (mean of L2-normalised fold
predictions), metrics.json, train_log.csv, manifest.json (last).

A finished run with the same config hash is skipped; a different hash is an error naming both
unless --overwrite (delete it) or --replace-changed (move it aside to OUT.replaced-<its hash>, kept;
run_all.sh passes this, so an edited config retrains). A killed run continues with --resume: finished folds are
kept, the interrupted fold continues from its last checkpoint (epoch ends, every `train.checkpoint_every`,
and the one SIGTERM / SIGINT writes before the process exits), position in the epoch included.
"""
import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from core.dataset import load_dataset
from core.errors import DataError, InputError, close_progress_bars, print_error
from core.folds import groups_path, load_folds, load_groups
from core.io import read_json, sha256_file, sha256_json, write_json
from core.runs import METRICS_FILE, is_complete
from core.shards import is_shard_dir, load_shard_dataset, pixel_identity, read_manifest, verify_shards
from core.targets import targets_for
from models.config import config_hash, load_config
from models.fold_outputs import LAST_CHECKPOINT, assemble_run, fold_dir, fold_done, save_fold_outputs
from models.provenance import input_provenance
from models.run_lock import LOCK_FILE, release_run_lock, take_run_lock

CONFIG_FILE = "config.json"
_log = logging.getLogger(__name__)


class RunError(InputError):
    """The run directory refuses this run (locked, another config's, an interrupted fold without --resume) or
    --folds names folds that do not exist; the message starts with the file or option."""


class TrainingData:
    """Everything a run reads: datasets, targets and folds, aligned by row."""

    def __init__(self, cfg):
        d = cfg["data"]
        self.shards = read_manifest(d["train"]) if is_shard_dir(d["train"]) else None
        self.train = load_shard_dataset(d["train"]) if self.shards else load_dataset(d["train"], require_prompts=True)
        self.test = load_dataset(d["test"])
        self.ids = self.train["imgId"].tolist()
        self.test_ids = self.test["imgId"].tolist()
        self.targets = np.ascontiguousarray(targets_for(d["targets"], self.ids), dtype=np.float32)
        self.folds = load_folds(d["folds"], self.ids)
        self.k = int(self.folds.max()) + 1
        self.provenance = input_provenance(d["targets"], d["folds"], self.ids, self.test_ids, d["train"], d["test"])
        self.groups, self.groups_sha256 = self._inner_val_groups(cfg)

    def _inner_val_groups(self, cfg):
        """The rows' prompt groups (groups.csv beside folds.csv) when an inner validation split needs them.

        No fallback to a split by row: near-duplicate prompts on both sides would inflate the early-stopping
        score, so folds from before groups.csv existed are an error naming the file."""
        if cfg["model"] != "backbone" or cfg["train"]["inner_val_fraction"] <= 0:
            return None, None
        folds_path = cfg["data"]["folds"]
        groups = load_groups(folds_path, self.ids, self.folds)
        if groups is None:
            raise DataError(groups_path(folds_path),
                            "not found: train.inner_val_fraction > 0 holds out whole prompt groups, read from the "
                            "groups.csv `python -m core.folds` writes beside folds.csv; rerun it, or set "
                            "train.inner_val_fraction: 0")
        return groups, sha256_file(groups_path(folds_path))

    def identity(self, cfg, source):
        p = self.provenance
        ident = {"targets": p["targets"]["key"], "folds": p["folds"]["sha256"],
                 "train_ids": p["train_images"]["ids_sha256"], "test_ids": p["test_images"]["ids_sha256"]}
        if self.groups_sha256:  # only runs with an inner split read it: the others keep their hash
            ident["groups"] = self.groups_sha256
        if cfg["head"]["init"]:  # the bank the head starts from (models/head_init.py), by content
            from models.head_init import bank_identity

            ident["head_init_bank"] = bank_identity(cfg["head"]["init_bank"])
        if source == "shards":  # cache and stream give the same batches; shards their own order (and maybe pixels)
            ident["shards"] = {"shuffle_buffer": cfg["data"]["shuffle_buffer"],
                               "pixels": pixel_identity(self.shards, cfg["image"]["size"])}
        return ident

    def sources(self, cfg, env):
        """The kinds of image source (cache / stream / shards) for the training and the test set, as rank 0 decides."""
        from models.data import choose_source
        from models.distributed import broadcast_object

        d, size = cfg["data"], cfg["image"]["size"]
        kinds = None
        if env.is_main:
            train = choose_source(d["source"], len(self.train), size, d["cache_dir"], d["train"], bool(self.shards))
            test = choose_source("auto" if train == "shards" else d["source"], len(self.test), size, d["cache_dir"])
            kinds = (train, test)
        return broadcast_object(kinds, env)

    def prompt_sampler(self, cfg):
        from models.data.sampling import PromptSampler

        return PromptSampler(self.train["prompt"], self.ids) if cfg["data"]["sample_per_prompt"] else None


def prepare_run_dir(run_dir, cfg, chash, overwrite, env, replace_changed=False):
    """Create or check the run directory and take its lock (rank 0; train_run releases it).
    Returns False when an identical run already finished. A run with another config hash is an error, unless
    `overwrite` (deleted) or `replace_changed` (moved aside, see move_aside)."""
    from models.distributed import broadcast_object

    run_dir = Path(run_dir)
    refused = take_run_lock(run_dir) if env.is_main else None
    refused = broadcast_object(refused, env)  # every rank stops, not only rank 0
    if refused:
        raise RunError(refused)
    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.is_file():
        old = read_json(cfg_path).get("config_hash")
        if old != chash and replace_changed and not overwrite:
            if env.is_main:
                _log.warning("%s: trained with another config (hash %s); moved to %s", run_dir, old[:12],
                             move_aside(run_dir, old))
        elif old != chash and not overwrite:
            raise RunError(f"{run_dir} holds a run with config hash {old}, this config has {chash}; "
                           f"pass --overwrite to replace it (or set another `out:`)")
        if old == chash and is_complete(run_dir) and not overwrite:
            return False
        if overwrite and env.is_main:
            for p in run_dir.iterdir():  # all but the lock this process holds
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.name != LOCK_FILE:
                    p.unlink()
    if env.is_main:
        write_json(cfg_path, {"config_hash": chash, "config": cfg})
    return True


def move_aside(run_dir, old_hash):
    """Move a run's files (all but the lock this process holds) to a new sibling RUN.replaced-<hash>[-n]."""
    base = run_dir.with_name(f"{run_dir.name}.replaced-{old_hash[:12]}")
    dest, n = base, 1
    while dest.exists():
        dest, n = base.with_name(f"{base.name}-{n}"), n + 1
    dest.mkdir()
    for p in run_dir.iterdir():
        if p.name != LOCK_FILE:
            p.rename(dest / p.name)
    return dest


def shard_stamp_path(cfg):
    """Where a shard set's verified (size, mtime) stamps live: the cache folder, so a set is hashed in full once."""
    key = sha256_json(str(Path(cfg["data"]["train"]).resolve()))[:16]
    return Path(cfg["data"]["cache_dir"]) / f"shards-{key}.json"


def run_fold(cfg, chash, data, fold, images, test_images, run_dir, env, resume, progress, sampler=None):
    from models.engine import predict_rows
    from models.loop import train_fold

    d = fold_dir(run_dir, fold)
    if env.is_main:
        d.mkdir(parents=True, exist_ok=True)
    if (d / LAST_CHECKPOINT).is_file() and not resume:
        raise RunError(f"{d / LAST_CHECKPOINT}: fold {fold} was interrupted; pass --resume to continue it "
                       f"or --overwrite to start the run over")
    train_rows = np.flatnonzero(data.folds != fold)
    val_rows = np.flatnonzero(data.folds == fold)
    t0 = time.time()
    model, pre, log_rows, stats = train_fold(cfg, fold, images, data.targets, train_rows, val_rows, d, env,
                                             resume=resume, progress=progress, sampler=sampler, groups=data.groups)
    bs, device, prec = cfg["predict"]["batch_size"], env.device, stats["precision"]
    tta = cfg["predict"]["tta"]
    oof = predict_rows(model, images, val_rows, pre, bs, device, prec, tta, env, progress and env.is_main, "OOF")
    test = predict_rows(model, test_images, np.arange(len(test_images)), pre, bs, device, prec, tta, env,
                        progress and env.is_main, "test")
    if env.is_main:
        stats.update(seconds=round(time.time() - t0, 2), n_val=len(val_rows))
        checkpoint = {"config": cfg, "config_hash": chash, "fold": fold, "preprocess": pre,
                      "state_dict": model.state_dict()}
        score = save_fold_outputs(run_dir, fold, chash, checkpoint, oof, test, log_rows, stats, data.targets[val_rows])
        _log.info("fold %d: OOF cosine %.4f (%.0f s, %.0f train img/s)", fold, score, stats["seconds"],
                  stats["train_images_per_sec"] or 0)


def parse_folds(text, k):
    if text is None:
        return list(range(k))
    folds = sorted({int(f) for f in text.split(",") if f.strip() != ""})
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise RunError(f"--folds {text}: folds {bad} do not exist (K = {k})")
    return folds


def checked_inputs(cfg, env):
    """(training data, image source kinds, identity beyond the config) of a run: the backbone named, the inputs
    checked before any image is decoded."""
    from models.backbones import check_backbone
    from models.knn import frozen_backbone_section

    towers = cfg["model"] == "retrieval" and cfg["retrieval"]["query"] == "clip"
    section = cfg["backbone"] if cfg["model"] == "backbone" or towers else frozen_backbone_section(cfg)
    if section:  # a model name or pretrained tag typo fails here, before any image is decoded
        check_backbone(section)
    data = TrainingData(cfg)
    if (cfg["model"] == "knn" or towers) and data.shards:
        raise RunError(f"{cfg['data']['train']}: kNN and CLIP retrieval runs read image files, not shards; point "
                       f"data.train at the images")
    kinds = data.sources(cfg, env) if cfg["model"] == "backbone" else None
    identity = data.identity(cfg, kinds[0] if kinds else None)
    if cfg["model"] == "knn" and cfg["knn"]["features_from"]:
        # the kNN run is only as current as the run whose features it uses
        src = Path(cfg["knn"]["features_from"]) / METRICS_FILE
        if not src.is_file():
            raise DataError(src, "the feature run (knn.features_from) is not finished; train it first")
        identity["features_from"] = read_json(src)["config_hash"]
    if cfg["model"] == "retrieval":  # as current as its bank's content and its query run
        from models.retrieval import retrieval_identity

        identity.update(retrieval_identity(cfg))
    return data, kinds, identity


def run_backbone_folds(cfg, chash, data, kinds, run_dir, folds, env, resume=False, progress=True):
    """Every fold to run of a backbone regressor, over the run's train and test image sources."""
    from models.data import open_source
    from models.distributed import barrier

    if env.is_main:
        _log.info("%s: images from %s (train), %s (test)", cfg["name"], *kinds)
        if data.shards:
            verify_shards(cfg["data"]["train"], shard_stamp_path(cfg), progress)
    barrier(env)
    images = open_source(kinds[0], data.train, cfg, env, progress)
    test_images = open_source(kinds[1], data.test, cfg, env, progress)
    sampler = data.prompt_sampler(cfg)
    try:
        for k in parse_folds(folds, data.k):
            if fold_done(run_dir, k, chash):
                if env.is_main:
                    _log.info("fold %d: finished earlier; skipped", k)
                continue
            run_fold(cfg, chash, data, k, images, test_images, run_dir, env, resume, progress, sampler)
            barrier(env)
    finally:
        images.close()
        test_images.close()


def train_run(cfg, folds=None, resume=False, overwrite=False, progress=True, replace_changed=False):
    """Train (or continue) a run; returns metrics when the run is complete, else None."""
    import torch

    from models.distributed import barrier, cleanup, init_distributed

    env = init_distributed()
    try:
        import os

        torch.set_num_threads(cfg["train"]["num_threads"] or max(1, (os.cpu_count() or 1) // env.world_size))
        t0 = time.time()
        data, kinds, identity = checked_inputs(cfg, env)
        chash = config_hash(cfg, identity)
        run_dir = Path(cfg["out"])
        if not prepare_run_dir(run_dir, cfg, chash, overwrite, env, replace_changed):
            if env.is_main:
                _log.info("%s: finished run with the same config hash %s; skipped", run_dir, chash[:12])
            return read_json(run_dir / METRICS_FILE)
        barrier(env)
        if cfg["model"] == "knn":
            from models.knn import run_knn_folds

            run_knn_folds(cfg, chash, data, run_dir, parse_folds(folds, data.k), env, progress)
        elif cfg["model"] == "retrieval":
            from models.retrieval import run_retrieval_folds

            run_retrieval_folds(cfg, chash, data, run_dir, parse_folds(folds, data.k), env, progress)
        else:
            run_backbone_folds(cfg, chash, data, kinds, run_dir, folds, env, resume, progress)
        if all(fold_done(run_dir, k, chash) for k in range(data.k)):
            metrics = None
            if env.is_main:
                metrics = assemble_run(cfg, chash, data, run_dir, time.time() - t0)
                _log.info("%s: OOF cosine %.4f -> %s", cfg["name"], metrics["oof_cosine"], run_dir)
            barrier(env)
            return metrics or read_json(run_dir / METRICS_FILE)
        if env.is_main:
            _log.info("%s: folds %s done; the run is complete once every fold is", cfg["name"], folds)
        return None
    finally:
        if env.is_main:
            release_run_lock(cfg["out"])
        cleanup(env)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="configs/<model>.yaml")
    ap.add_argument("--folds", default=None, help="comma-separated folds to train (default: all)")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted fold from its last epoch")
    ap.add_argument("--overwrite", action="store_true", help="delete the run in the output folder and train anew")
    ap.add_argument("--replace-changed", action="store_true",
                    help="a run trained with another config is moved to <out>.replaced-<its hash> (kept) and this "
                         "config trains from scratch; a run with this config is continued or skipped as usual")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from models.checkpoint import TrainingInterrupted

    try:
        cfg = load_config(args.config, args.overrides)
        train_run(cfg, args.folds, args.resume, args.overwrite, progress=not args.no_progress,
                  replace_changed=args.replace_changed)
    except InputError as e:  # bad data, config, backbone name or weights; a refused run dir (RunError)
        print_error(e)
        return 2
    except TrainingInterrupted as e:
        close_progress_bars()
        print(f"interrupted: {e}", file=sys.stderr, flush=True)
        return 128 + (e.signum or 15)  # the shell's convention for a process ended by a signal
    return 0


if __name__ == "__main__":
    sys.exit(main())
