import os
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Property tests (tests/test_fuzz.py) draw the same examples on every run and machine: the test command
# gives CI and a new user the same result. HYPOTHESIS_PROFILE=explore draws new examples each run.
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

REPO = Path(__file__).resolve().parents[1]

def _find_shared_data():
    for cand in (os.environ.get("SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"):
        if cand and (Path(cand) / "kaggle_sample").is_dir():
            return Path(cand)
    return REPO.parent / "shared" / "data"


SHARED_DATA = _find_shared_data()
KAGGLE_SAMPLE = SHARED_DATA / "kaggle_sample"


@pytest.fixture(scope="session")
def kaggle_sample():
    if not (KAGGLE_SAMPLE / "prompts.csv").is_file():
        pytest.fail(f"shared data not found at {KAGGLE_SAMPLE} (set SHARED_DATA)")
    return KAGGLE_SAMPLE


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny demo project (tests/model_fixtures.make_tiny_project: data, targets, folds.csv, groups.csv), one per
    test module; a module that needs another size or more files defines its own `project`."""
    from tests.model_fixtures import make_tiny_project

    return make_tiny_project(tmp_path_factory.mktemp("proj"))


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """The smallest whole run_all (tests/pipeline_fixtures.py), run once per session for the crash and pipeline
    tests; a test that changes it works on a copy (pipeline_fixtures.checkout)."""
    from tests.pipeline_fixtures import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipeline"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip model trained contrastively on 200 demo pairs, saved as a local weights file
    (tests/clip_fixtures.py), once per session for the CLIP-tower, filter and head-init tests."""
    from tests.clip_fixtures import train_tiny_clip

    return train_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))
