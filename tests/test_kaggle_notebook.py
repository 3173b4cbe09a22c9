"""The Kaggle notebook's source: pipeline/kaggle/notebook_cells.py, made into kaggle/notebook.ipynb with nbformat.

Fast checks of the cell file and the generator; tests/test_kaggle_pack.py runs the notebook on a real pack."""
import ast
import inspect
import json
import os
import subprocess
import sys

import nbformat
import numpy as np
import pytest

from core.errors import DataError
from core.submission import write_submission
from pipeline.kaggle import notebook as nbk
from pipeline.kaggle import notebook_cells as cells
from tests.model_fixtures import REPO


def _functions(module):
    return {n: f for n, f in vars(module).items() if inspect.isfunction(f) and f.__module__ == module.__name__}


def test_committed_notebook_is_the_generated_one():
    text = nbk.notebook_text()
    assert nbk.NOTEBOOK_TEMPLATE.read_text(encoding="utf-8") == text, \
        "kaggle/notebook.ipynb is stale: python -m pipeline.kaggle.pack --write-notebook kaggle/notebook.ipynb"
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert [c.cell_type for c in nb.cells] == ["markdown"] + ["code"] * 5
    assert [c.id for c in nb.cells] == [f"sdi2p-{i}" for i in range(6)]
    assert nb.cells[0].source.startswith("# Stable Diffusion - Image to Prompts: offline inference\n\nAttach two")


def test_the_notebook_runs_what_the_cell_module_defines():
    """Importing the cell file ran nothing (no pack here) and defined the functions the notebook's code calls."""
    code = nbk.notebook_code(nbk.NOTEBOOK_TEMPLATE)
    tree = ast.parse(code)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    functions = _functions(cells)
    assert set(functions) == defined == {"find_pack", "install_wheels", "use_packed_code", "predict",
                                         "check_written"}
    assert defined <= called
    for f in functions.values():
        assert inspect.getsource(f) in code  # the notebook holds the module's code, not a copy of it
    # every call runs under the guard: importing the module executes definitions only
    guarded = [n for n in tree.body if isinstance(n, ast.If)]
    assert len(guarded) == 5 and all(ast.unparse(n.test) == "__name__ == '__main__'" for n in guarded)
    assert all(isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign, ast.If)) for n in tree.body)


def test_read_cells(tmp_path):
    src = tmp_path / "cells.py"
    src.write_text('"""Left out."""\n\n# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\n'
                   'print(x)\n')
    assert nbk.read_cells(src) == [("markdown", "# Title\n\ntext"), ("code", "x = 1"), ("code", "print(x)")]
    src.write_text("# %% [markdown]\nnot a comment\n")
    with pytest.raises(ValueError, match="markdown cell line is not a comment"):
        nbk.read_cells(src)


def test_find_pack_takes_the_attached_input_holding_a_pack(tmp_path):
    inputs = tmp_path / "input"
    pack = inputs / "renamed-upload" / "pack"
    pack.mkdir(parents=True)
    (pack / cells.PACK_MANIFEST).write_text(json.dumps({"kind": "sdi2p-kaggle-pack"}))
    (inputs / "stable-diffusion-image-to-prompts").mkdir()
    assert cells.find_pack({}, str(inputs)) == (str(pack), {"kind": "sdi2p-kaggle-pack"})
    assert cells.find_pack({"SDI2P_PACK": str(pack)}, "/nonexistent")[0] == str(pack)
    with pytest.raises(FileNotFoundError, match="no pack there"):  # an explicit SDI2P_PACK is never second-guessed
        cells.find_pack({"SDI2P_PACK": str(tmp_path)}, str(inputs))
    with pytest.raises(FileNotFoundError, match="no pack there"):
        cells.find_pack({}, str(tmp_path / "empty"))


def test_install_wheels_without_wheels_installs_nothing(tmp_path, capsys):
    cells.install_wheels(str(tmp_path), {"wheels": [{"spec": "x==1"}]})  # named, but no .whl in the pack
    assert "no wheels packed" in capsys.readouterr().out


def test_check_written_checks_every_image(kaggle_sample, tmp_path, capsys):
    images = kaggle_sample / "images"
    ids = sorted(p.stem for p in images.iterdir())
    emb = np.random.default_rng(0).normal(size=(len(ids), 384))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    write_submission(tmp_path / "ok.csv", ids, emb)
    cells.check_written(images, tmp_path / "ok.csv")
    assert f"{len(ids)} images x 384" in capsys.readouterr().out
    write_submission(tmp_path / "short.csv", ids[1:], emb[1:])
    with pytest.raises(DataError, match="imgIds differ from the images"):
        cells.check_written(images, tmp_path / "short.csv")


def test_use_packed_code_imports_from_the_pack_first(tmp_path):
    """The pack's code shadows the repository's, and the frozen-backbone folder is the pack's (names from its code)."""
    from models.knn_features import BACKBONES_ENV, PACKED_BACKBONES_DIR
    from pipeline.kaggle.code import copy_code

    pack = tmp_path / "pack"
    copy_code(pack / "code")
    script = ("import os, sys; from pipeline.kaggle.notebook_cells import use_packed_code; "
              "m = use_packed_code(sys.argv[1]); "
              f"print(os.environ[{BACKBONES_ENV!r}]); print(sys.modules['models.knn_features'].__file__)")
    env = dict(os.environ, PYTHONPATH=str(REPO))  # the repository's models are importable too: the pack's win
    env.pop(BACKBONES_ENV, None)
    res = subprocess.run([sys.executable, "-c", script, str(pack)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert lines[0] == f"code from {pack / 'code'}"
    assert lines[1:] == [str(pack / PACKED_BACKBONES_DIR), str(pack / "code" / "models" / "knn_features.py")]
