"""bench.gpu_check: the documented command with --smoke runs the GPU check's code on the CPU at toy sizes.

The CUDA-only lines (device synchronisation, per-phase peak-memory counters, emptying the cache,
pinned memory) cannot run here; everything else is the code a GPU run takes.
"""
import math
import shlex

import pytest
import torch

from bench.gpu_check.cli import main
from bench.gpu_check.plan import MODELS, SMOKE, SMOKE_BATCH, SMOKE_MEMBERS, model_config
from core.io import read_json
from models.config import load_config
from tests.test_readme import blocks


def readme_argv(out):
    """The documented bench.gpu_check command line (after `python -m bench.gpu_check`), writing to `out`."""
    cmds = [c for c in blocks("bash bench") if c.startswith("python -m bench.gpu_check")]
    assert len(cmds) == 1, "the benchmarks page runs bench.gpu_check once"
    argv = shlex.split(cmds[0])[3:]
    argv[argv.index("--out") + 1] = str(out)
    return argv


@pytest.fixture(scope="module")
def tiny_sd2(tmp_path_factory):
    from tests.sd_fixtures import build_tiny_sd_pipeline

    return build_tiny_sd_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd2")


def test_smoke_keeps_every_production_setting_but_the_member_and_sizes():
    changed = {("backbone", "name"), ("backbone", "kwargs"), ("backbone", "pretrained"), ("image", "size"),
               ("train", "batch_size")}
    for key, path in MODELS.items():
        prod, smoke = load_config(path), model_config(key, SMOKE)
        diff = {(section, k) for section in prod if isinstance(prod[section], dict)
                for k in prod[section] if prod[section][k] != smoke[section][k]}
        assert diff <= changed, (key, diff - changed)
        assert smoke["backbone"]["pretrained"] is None and smoke["train"]["batch_size"] == SMOKE_BATCH
        assert prod["train"]["ema_decay"] > 0 and prod["backbone"]["grad_checkpointing"]  # what smoke keeps


def test_smoke_run_measures_every_figure(tmp_path, tiny_sd2, capsys):
    out = tmp_path / "gpu_check.json"
    assert main(readme_argv(out) + ["--smoke", "--sd2", str(tiny_sd2)]) == 0
    printed = capsys.readouterr().out
    report = read_json(out)
    assert report["complete"] and report["smoke"] and report["steps"] == SMOKE.steps
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["device"].startswith("cpu") and "cuda" in env
    assert sorted(report["models"]) == sorted(MODELS)
    for key, row in report["models"].items():
        prod = load_config(MODELS[key])["train"]
        member = dict(a.split("=", 1) for a in SMOKE_MEMBERS[key])["backbone.name"]
        assert row["backbone"].endswith(member)
        # the production settings, the precision auto resolves to on a CPU
        assert (row["precision_config"], row["precision"]) == ("auto", "fp32")
        assert (row["grad_accum"], row["ema_decay"], row["grad_checkpointing"]) == (prod["grad_accum"],
                                                                                   prod["ema_decay"], True)
        assert row["batch_size"] == SMOKE_BATCH
        # one untimed update, then the timed steps' updates, all through the trainer's _optimizer_update
        assert row["optimizer_updates"] == 1 + math.ceil(SMOKE.steps / prod["grad_accum"])
        assert math.isfinite(row["trainer_loss"]) and 0 < row["trainer_loss"] < 2  # cosine loss range
        for name in ("bare_images_per_sec", "trainer_images_per_sec", "stream_images_per_sec", "peak_memory_gib",
                     "bare_peak_memory_gib"):
            assert 0 < row[name] < 1e6, (key, name, row[name])
        assert row["ratio"] == pytest.approx(row["trainer_images_per_sec"] / row["bare_images_per_sec"])
        assert row["stream_vs_trainer"] == pytest.approx(row["stream_images_per_sec"] / row["trainer_images_per_sec"])
        assert row["stream_batch_shape"] == [SMOKE_BATCH, 3, row["image_size"], row["image_size"]]
        line = next(ln for ln in printed.splitlines() if ln.startswith(key + " "))
        for figure in (f"{row['trainer_images_per_sec']:.1f}", f"{row['ratio']:.3f}",
                       f"{row['peak_memory_gib']:.2f}", f"{row['stream_vs_trainer']:.2f}"):
            assert figure in line, (figure, line)
    sd2 = report["sd2"]
    assert sd2["images_per_sec"] > 0 and sd2["finite"] and sd2["dtype"] == "float32"
    assert sd2["image_shape"] == [SMOKE.sd2_batch, SMOKE.sd2_px, SMOKE.sd2_px, 3]
    assert f"sd2: {sd2['images_per_sec']:.2f} img/s" in printed


def test_refuses_without_cuda_and_without_a_pipeline_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "gpu_check.json"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(readme_argv(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no CUDA device") and "--smoke" in err[0]
    assert main(["--smoke", "--out", str(out), "--sd2", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'nowhere'}: --sd2 needs")
    assert not out.exists()


def test_a_model_out_of_memory_is_reported_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    from bench.gpu_check import cli

    measure = cli.measure_model

    def vit_out_of_memory(cfg, steps, device, tmp):
        if cfg["name"] == "vit_h14":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return measure(cfg, steps, device, tmp)

    monkeypatch.setattr(cli, "measure_model", vit_out_of_memory)
    out = tmp_path / "gpu_check.json"
    assert main(["--smoke", "--out", str(out), "--models", "vit_h14", "convnext_xxl"]) == 1
    report = read_json(out)
    assert report["complete"]
    assert report["models"]["vit_h14"]["error"].startswith(f"out of memory at batch {SMOKE_BATCH}")
    assert report["models"]["convnext_xxl"]["trainer_images_per_sec"] > 0
    assert "vit_h14        error: out of memory" in capsys.readouterr().out
