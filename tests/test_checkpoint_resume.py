"""Step-level checkpoints: a run killed or preempted anywhere inside an epoch resumes to the same result."""
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.runs import load_run
from models.config import ConfigError, config_hash, load_config
from tests.helpers import assert_same_run, subprocess_env
from tests.model_fixtures import REPO, tiny_overrides

EPOCHS, STEPS = 3, 4


def train_cmd(project, out, *extra, resume=False):
    cmd = [sys.executable, "-m", "models.train", "--config", "configs/vit_demo.yaml", "--no-progress"]
    # 18 training rows per fold at batch 4: 4 steps per epoch
    for o in tiny_overrides(project, out, epochs=EPOCHS, steps=STEPS, extra=("train.batch_size=4",) + extra):
        cmd += ["--set", o]
    return cmd + (["--resume"] if resume else [])


def run(cmd, fault=None):
    return subprocess.run(cmd, cwd=REPO, env=subprocess_env(fault), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def reference(project, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    res = run(train_cmd(project, out))
    assert res.returncode == 0, res.stderr
    load_run(out)  # a finished, valid run
    return out


def last_state(out, fold=0):
    return torch.load(out / "folds" / f"fold{fold}" / "last.pt", map_location="cpu", weights_only=False)


def test_killed_mid_epoch_resumes_at_the_saved_step(project, reference, tmp_path):
    out = tmp_path / "run"
    # checkpoint every optimizer update; SIGKILL after the 6th step (epoch 2, step 2 of fold 0),
    # before that step's checkpoint: the last one holds step 1, and step 2 is trained again
    cut = run(train_cmd(project, out, "train.checkpoint_every=1"), fault="train_step:6")
    assert cut.returncode == -signal.SIGKILL
    state = last_state(out)
    assert (state["epoch"], state["step"]) == (1, 1)
    resumed = run(train_cmd(project, out, "train.checkpoint_every=1", resume=True))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1, step 1 of epoch 2" in resumed.stdout
    assert_same_run(reference, out)


def test_sigterm_saves_a_checkpoint_and_exits(project, reference, tmp_path):
    out = tmp_path / "run"
    # no periodic checkpoints: the preemption notice alone must save the position
    cut = run(train_cmd(project, out), fault="train_step:7:TERM")
    assert cut.returncode == 128 + signal.SIGTERM, cut.stderr
    assert "SIGTERM" in cut.stderr and "--resume" in cut.stderr and "Traceback" not in cut.stderr
    state = last_state(out)
    assert (state["epoch"], state["step"]) == (1, 3)
    resumed = run(train_cmd(project, out, resume=True))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference, out)


def test_killed_while_writing_a_checkpoint_keeps_the_previous_one(project, reference, tmp_path):
    out = tmp_path / "run"
    # the 3rd checkpoint write dies after the bytes are written, before the rename
    cut = run(train_cmd(project, out, "train.checkpoint_every=2"), fault="checkpoint_write:3")
    assert cut.returncode == -signal.SIGKILL
    fold_dir = out / "folds" / "fold0"
    assert [p.name for p in fold_dir.glob(".last.pt.*")], "the interrupted write should have left its temp file"
    state = last_state(out)  # the previous good checkpoint: epoch 1's end
    assert (state["epoch"], state["step"]) == (1, 0)
    resumed = run(train_cmd(project, out, "train.checkpoint_every=2", resume=True))
    assert resumed.returncode == 0, resumed.stderr
    assert not list(fold_dir.glob(".last.pt.*")), "stale temporary checkpoint left behind"
    assert_same_run(reference, out)


def test_checkpoint_every_and_clip_grad_are_validated(project, tmp_path):
    base = tiny_overrides(project, tmp_path / "r")
    for bad in ("train.checkpoint_every=ten", "train.checkpoint_every=-3", "train.clip_grad=0",
                "train.clip_grad=abc"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(REPO / "configs/vit_demo.yaml", base + [bad])
    ok = load_config(REPO / "configs/vit_demo.yaml", base + ["train.checkpoint_every=30min", "train.clip_grad=1.0"])
    plain = load_config(REPO / "configs/vit_demo.yaml", base)
    # checkpointing never changes results; clip_grad left at null keeps the hashes of older runs
    assert config_hash(plain) == config_hash(load_config(REPO / "configs/vit_demo.yaml",
                                                         base + ["train.checkpoint_every=5"]))
    assert config_hash(ok) != config_hash(plain)
    without = dict(plain, train={k: v for k, v in plain["train"].items() if k not in ("clip_grad", "checkpoint_every")})
    assert config_hash(without) == config_hash(plain)


def test_clip_grad_trains(project, tmp_path, monkeypatch):
    """train.clip_grad clips the gradient norm before every optimizer update, and the update uses the clipped
    gradients (the run differs from an unclipped one); without it nothing is clipped."""
    from models.train import train_run

    max_norm = 1e-3  # far below these gradients' norms: every update is clipped
    calls = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def spy_clip(parameters, clip, *args, **kwargs):
        parameters = list(parameters)
        before = real_clip(parameters, clip, *args, **kwargs)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters if p.grad is not None]))
        calls.append((clip, float(before), float(after)))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy_clip)
    runs = {}
    for name, extra in (("plain", []), ("clip", [f"train.clip_grad={max_norm}"])):
        cfg = load_config(REPO / "configs/vit_demo.yaml", tiny_overrides(project, tmp_path / name, extra=extra))
        assert np.isfinite(train_run(cfg, progress=False)["oof_cosine"])
        runs[name] = load_run(tmp_path / name)
        if name == "plain":
            assert calls == []
    updates = 2 * 1 * 2  # folds x epochs x steps (tiny_overrides: 1 epoch of 2 steps)
    assert len(calls) == updates and all(c == max_norm for c, _, _ in calls)
    assert all(before > 10 * max_norm and after <= max_norm * (1 + 1e-4) for _, before, after in calls)
    assert not np.array_equal(runs["plain"].oof, runs["clip"].oof)


def test_stream_source_killed_mid_epoch_resumes_exactly(project, reference, tmp_path):
    # decode workers instead of the cache: the same pixels, so the same run as the cache's reference,
    # and a kill mid-epoch resumes at the saved step with the workers restarted
    out = tmp_path / "run"
    stream = ("train.checkpoint_every=1", "data.source=stream", "data.workers=2")
    cut = run(train_cmd(project, out, *stream), fault="train_step:6")
    assert cut.returncode == -signal.SIGKILL
    assert (last_state(out)["epoch"], last_state(out)["step"]) == (1, 1)
    resumed = run(train_cmd(project, out, *stream, resume=True))
    assert resumed.returncode == 0, resumed.stderr
    assert "images from stream (train), stream (test)" in resumed.stdout
    assert_same_run(reference, out)
