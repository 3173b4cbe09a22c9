"""What a run was trained on: paths and content hashes of its inputs, recorded in metrics.json.

The stacker checks `folds.sha256` across runs (stacking runs trained on different folds leaks).
"""
from pathlib import Path

from core.io import read_json, sha256_file, sha256_strings
from core.targets import META_FILE


def input_provenance(targets_dir, folds_path, train_ids, test_ids, train_dir=None, test_dir=None):
    targets_dir, folds_path = Path(targets_dir), Path(folds_path)
    return {
        "targets": {"path": str(targets_dir.resolve()), "key": read_json(targets_dir / META_FILE)["key"]},
        "folds": {"path": str(folds_path.resolve()), "sha256": sha256_file(folds_path)},
        "train_images": {"path": str(Path(train_dir).resolve()) if train_dir else None,
                         "n": len(train_ids), "ids_sha256": sha256_strings(train_ids)},
        "test_images": {"path": str(Path(test_dir).resolve()) if test_dir else None,
                        "n": len(test_ids), "ids_sha256": sha256_strings(test_ids)},
    }
