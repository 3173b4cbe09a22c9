"""run_all's stage fingerprints: code is followed by content, regenerated identical data reruns nothing."""
import os
import shutil

from datagen.demo import generate_demo
from pipeline.run import REPO, Stage, code_digest, fingerprint


def test_code_fingerprint_follows_content_not_mtimes_or_bytecode(tmp_path):
    pkg = tmp_path / "demo"
    shutil.copytree(REPO / "datagen" / "demo", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(pkg)
    for f in pkg.glob("*.py"):
        os.utime(f, (1, 1))  # touched, unchanged
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "writer.cpython-311.pyc").write_bytes(b"\0compiled")
    assert code_digest(pkg) == before
    with open(pkg / "writer.py", "a") as f:
        f.write("\n# an edit\n")
    assert code_digest(pkg) != before


def test_regenerated_identical_demo_keeps_downstream_fingerprints(tmp_path):
    generate_demo(tmp_path / "d", n_train=20, n_test=4, size=16, seed=1, progress=False)
    stage = Stage("baseline", ["x"], inputs=[tmp_path / "d" / "test" / "images", tmp_path / "d" / "train" / "prompts.csv"])
    first = fingerprint(stage)
    generate_demo(tmp_path / "d", n_train=20, n_test=4, size=16, seed=1, progress=False)
    assert fingerprint(stage) == first  # same bytes: files left alone, later stages skipped
    generate_demo(tmp_path / "d", n_train=20, n_test=4, size=16, seed=2, progress=False)
    assert fingerprint(stage) != first
