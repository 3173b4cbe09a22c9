"""models.fold_outputs: the per-fold layout (RUN/folds/fold<k>/...) is named once and parsed once."""
from pathlib import Path

import pytest

from core.errors import DataError
from models.fold_outputs import fold_checkpoint, fold_checkpoints, fold_dir, fold_index


def test_paths_and_index_round_trip(tmp_path):
    assert fold_dir(tmp_path, 3) == tmp_path / "folds" / "fold3"  # the on-disk format runs already use
    assert fold_checkpoint(tmp_path, 3) == tmp_path / "folds" / "fold3" / "model.pt"
    for k in (0, 7, 12):
        assert fold_index(fold_dir(tmp_path, k)) == k
        assert fold_index(fold_checkpoint(tmp_path, k)) == k
    assert fold_index(Path("/runs/fold9/folds/fold2/last.pt")) == 2  # the innermost fold folder


@pytest.mark.parametrize("path", ["/runs/a/model.pt", "/runs/a/folds/foldx/model.pt", "/runs/a/folds/fold01/model.pt",
                                  "/runs/a/other/fold1/model.pt"])
def test_fold_index_refuses_other_paths(path):
    with pytest.raises(ValueError, match="not inside a fold folder"):
        fold_index(path)


def test_checkpoints_in_fold_order_and_only_finished_ones(tmp_path):
    for k in (10, 2, 0):
        fold_checkpoint(tmp_path, k).parent.mkdir(parents=True)
        fold_checkpoint(tmp_path, k).write_bytes(b"x")
    fold_dir(tmp_path, 5).mkdir()  # a fold still training: no model.pt yet
    (tmp_path / "folds" / "foldx").mkdir()
    assert [fold_index(p) for p in fold_checkpoints(tmp_path)] == [0, 2, 10]
    with pytest.raises(DataError, match=r"folds: no fold checkpoints"):
        fold_checkpoints(tmp_path / "nothing")
