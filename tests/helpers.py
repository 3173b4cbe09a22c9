"""Assertions and child-process settings shared by the test files (fixtures live in tests/conftest.py)."""
import os
import sys

import numpy as np

from core.runs import load_run
from tests.model_fixtures import REPO

RUN_METRICS = ("oof_cosine", "fold_cosine", "config_hash")


def subprocess_env(fault=None):
    """The environment of a child process running this checkout: offline, one OpenMP thread, run_all.sh's stages on
    the interpreter running the tests (PYTHON), and FAULT_AT (core.faults) set to `fault` or unset."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHON=sys.executable)
    env.pop("FAULT_AT", None)
    if fault:
        env["FAULT_AT"] = fault
    return env


def assert_one_error_line(err, *needles, alone=False):
    """`err` (a stderr) holds one `error: ` line, not on another line's tail (a progress bar's), and no traceback;
    each needle is in that line. alone: the stderr is that line and nothing else. Returns the line."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), err
    assert "Traceback" not in err, err
    assert not alone or len(lines) == 1, err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def assert_same_run(a, b, metrics=RUN_METRICS):
    """Run directories a and b hold the same run: ids, OOF and test predictions and mean embedding bit for bit, and
    the same `metrics` in metrics.json."""
    ra, rb = load_run(a), load_run(b)
    assert ra.oof_ids == rb.oof_ids and ra.test_ids == rb.test_ids
    np.testing.assert_array_equal(ra.oof, rb.oof)
    np.testing.assert_array_equal(ra.test, rb.test)
    np.testing.assert_array_equal(ra.mean_embedding, rb.mean_embedding)
    for key in metrics:
        assert ra.metrics.get(key) == rb.metrics.get(key), key
