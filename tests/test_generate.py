"""datagen.generate on a real (tiny, randomly initialised) Stable Diffusion 2 pipeline folder.

The pipeline is built once per module (tests/sd_fixtures.py), saved with save_pretrained and
loaded back through `--model DIR` with HF_HUB_OFFLINE=1: the same code path as the real
stabilityai/stable-diffusion-2 weights, at 32 px and 2 steps.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.dataset import load_dataset
from core.errors import DataError
from core.ids import check_img_id
from datagen.generate import layout
from datagen.generate.cli import main
from datagen.generate.encode import check_image_file
from datagen.generate.holdout import choose_holdout
from datagen.generate.plan import expand, image_seed, select_shard, shard_from_env, shard_of
from datagen.generate.render import load_pipeline, native_size, resolve_device
from datagen.generate.run import Settings, generate
from tests.helpers import subprocess_env
from tests.sd_fixtures import build_tiny_sd_pipeline

PROMPTS = [
    ("a0", "a red fox in the snow, digital art"),
    ("a1", "portrait of an old fisherman, oil painting"),
    ("a2", "a futuristic city at night, neon lights"),
    ("a3", "a bowl of ramen on a wooden table"),
    ("a4", "a cat sleeping on a windowsill"),
    ("a5", "mountain lake at sunrise, photograph"),
]
TINY = ["--gen-size", "32", "--save-size", "32", "--steps", "2", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """2 shared CPU cores: torch's own thread pool oversubscribes them and runs these toy models 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return build_tiny_sd_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd2")


@pytest.fixture(scope="module")
def pipe(sd_dir):
    return load_pipeline(sd_dir, torch.device("cpu"), torch.float32)


def write_prompts(path, rows=PROMPTS, source=True):
    frame = pd.DataFrame(rows, columns=["imgId", "prompt"])
    if source:
        frame["source"] = "test"
    frame.to_csv(path, index=False)
    return path


def settings(sd_dir, **kw):
    return Settings(model=str(sd_dir), gen_size=32, save_size=32, steps=2, **kw)


def run(pipe, sd_dir, prompts, out, batch_size=2, **kw):
    opts = {k: kw.pop(k) for k in ("shard", "verify") if k in kw}
    return generate(prompts, out, settings(sd_dir, **kw), batch_size=batch_size, progress=False, pipe=pipe, **opts)


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_cli_loads_folder_offline_and_writes_the_competition_layout(sd_dir, tmp_path, capsys):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    prompts = write_prompts(tmp_path / "prompts.csv", PROMPTS[:3])
    out = tmp_path / "set"
    rc = main(["--prompts", str(prompts), "--out", str(out), "--model", str(sd_dir), "--per-prompt", "2",
               "--batch-size", "4", "--gen-size", "32", "--save-size", "48", "--steps", "2", "--no-progress"])
    assert rc == 0
    assert "6 rendered, 0 skipped" in capsys.readouterr().out
    frame = load_dataset(out, require_prompts=True)
    assert sorted(frame["imgId"]) == sorted(f"{p}_{k}" for p, _ in PROMPTS[:3] for k in range(2))
    assert list(frame.columns) == ["imgId", "path", "prompt", "source"]  # extra columns kept
    arrays = []
    for path in frame["path"]:
        with Image.open(path) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (48, 48))
        arrays.append(pixels(path))
    assert min(a.std() for a in arrays) > 5  # the model drew something
    assert np.abs(arrays[0] - arrays[1]).mean() > 5  # two images of one prompt differ (own seeds)


def test_load_pipeline_sdpa_scheduler_and_native_size(sd_dir):
    from diffusers import EulerAncestralDiscreteScheduler
    from diffusers.models.attention_processor import AttnProcessor2_0

    p = load_pipeline(sd_dir, torch.device("cpu"), torch.float32, scheduler="dpm++")
    procs = list(p.unet.attn_processors.values()) + list(p.vae.attn_processors.values())
    assert procs and all(isinstance(x, AttnProcessor2_0) for x in procs)
    assert type(p.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert p.scheduler.config.algorithm_type == "dpmsolver++"
    assert p.scheduler.config.prediction_type == "v_prediction"  # the folder's (768-v) setting survives
    assert isinstance(load_pipeline(sd_dir, torch.device("cpu"), torch.float32, "euler-a").scheduler,
                      EulerAncestralDiscreteScheduler)
    assert native_size(p) == 32  # unet sample_size 16 x vae scale factor 2
    half = load_pipeline(sd_dir, torch.device("cpu"), torch.bfloat16)
    assert {half.unet.dtype, half.vae.dtype, half.text_encoder.dtype} == {torch.bfloat16}


def test_same_id_same_bytes_and_batch_size_changes_at_most_a_few_levels(pipe, sd_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.csv")
    a = run(pipe, sd_dir, prompts, tmp_path / "a", batch_size=3)
    b = run(pipe, sd_dir, prompts, tmp_path / "b", batch_size=3)
    c = run(pipe, sd_dir, prompts, tmp_path / "c", batch_size=1)
    assert a.rendered == b.rendered == c.rendered == len(PROMPTS)
    for img_id, _ in PROMPTS:
        name = f"images/{img_id}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert np.abs(pixels(tmp_path / "a" / name) - pixels(tmp_path / "c" / name)).max() <= 3
    # The seed follows the id, not the row: a reordered subset renders the same images.
    sub = write_prompts(tmp_path / "sub.csv", [PROMPTS[4], PROMPTS[1], PROMPTS[2]])
    run(pipe, sd_dir, sub, tmp_path / "d", batch_size=3)
    for img_id in ("a4", "a1", "a2"):
        assert np.abs(pixels(tmp_path / "a" / f"images/{img_id}.png")
                      - pixels(tmp_path / "d" / f"images/{img_id}.png")).max() <= 3
    assert image_seed("a1") != image_seed("a1", seed=1) != image_seed("a2", seed=1)


def test_formats_and_sizes(pipe, sd_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.csv", PROMPTS[:2])
    for fmt, pil_name, ext in (("webp", "WEBP", ".webp"), ("jpeg", "JPEG", ".jpg")):
        out = tmp_path / fmt
        generate(prompts, out, Settings(model=str(sd_dir), gen_size=32, save_size=24, steps=2, format=fmt),
                 pipe=pipe, progress=False)
        frame = load_dataset(out, require_prompts=True)
        for path in frame["path"]:
            assert path.endswith(ext)
            with Image.open(path) as im:
                assert (im.format, im.size) == (pil_name, (24, 24))


def test_resume_after_kill_renders_only_the_missing(pipe, sd_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.csv")
    out = tmp_path / "set"
    run(pipe, sd_dir, prompts, out, batch_size=1)
    images = out / "images"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in images.iterdir()}
    # What a SIGKILL leaves: one image never renamed into place, its temporary file half written.
    (images / "a3.png").unlink()
    (images / ".a3.png.k1ll3d_x.tmp").write_bytes(before["a3.png"][0][:100])
    foreign = images / ".zz9.png.other_sh.tmp"  # another shard's temporary: not ours to delete
    foreign.write_bytes(b"x")
    s = run(pipe, sd_dir, prompts, out, batch_size=1)
    assert (s.rendered, s.skipped, s.temps_removed, s.failed) == (1, len(PROMPTS) - 1, 1, {})
    assert (images / "a3.png").read_bytes() == before["a3.png"][0]
    for name, (_, mtime) in before.items():
        if name != "a3.png":
            assert (images / name).stat().st_mtime_ns == mtime  # not rewritten
    assert not (images / ".a3.png.k1ll3d_x.tmp").exists() and foreign.exists()
    assert len(load_dataset(out)) == len(PROMPTS)
    # Nothing left: the model is not even loaded.
    s = generate(prompts, out, settings(sd_dir), progress=False, pipe=None)
    assert (s.rendered, s.skipped) == (0, len(PROMPTS))


def test_resume_after_a_real_sigkill(pipe, sd_dir, tmp_path, capsys):
    rows = [(f"k{i:02d}", f"a photo of object number {i}") for i in range(24)]
    prompts = write_prompts(tmp_path / "prompts.csv", rows)
    out = tmp_path / "set"
    proc = subprocess.Popen([sys.executable, "-m", "datagen.generate", "--prompts", str(prompts), "--out", str(out),
                             "--model", str(sd_dir), "--batch-size", "1", *TINY], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(layout.existing_images(out / "images")) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    done = layout.existing_images(out / "images")
    assert 3 <= len(done) < len(rows)
    for name in done.values():  # whatever exists under its final name is complete
        assert check_image_file(out / "images" / name, 32) is None
    assert main(["--prompts", str(prompts), "--out", str(out), "--model", str(sd_dir), "--batch-size", "4", *TINY]) == 0
    assert f"{len(rows) - len(done)} rendered, {len(done)} skipped" in capsys.readouterr().out
    assert len(load_dataset(out, require_prompts=True)) == len(rows)
    assert not list((out / "images").glob(".*"))
    # The images from before the kill are the ones an uninterrupted run makes.
    first = sorted(done)[:2]
    run(pipe, sd_dir, write_prompts(tmp_path / "two.csv", [r for r in rows if r[0] in first]), tmp_path / "clean")
    for img_id in first:
        assert np.abs(pixels(out / "images" / f"{img_id}.png")
                      - pixels(tmp_path / "clean" / "images" / f"{img_id}.png")).max() <= 3


def test_verify_rerenders_broken_files(pipe, sd_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.csv")
    out = tmp_path / "set"
    run(pipe, sd_dir, prompts, out)
    good = (out / "images" / "a0.png").read_bytes()
    (out / "images" / "a0.png").write_bytes(good[: len(good) // 2])  # truncated
    (out / "images" / "a5.png").write_text("not an image")
    s = run(pipe, sd_dir, prompts, out)
    assert s.rendered == 0  # without --verify an existing file is trusted
    s = run(pipe, sd_dir, prompts, out, verify=True)
    assert sorted(s.reverified) == ["a0", "a5"] and s.rendered == 2
    assert (out / "images" / "a0.png").read_bytes() == good
    with Image.open(out / "images" / "a5.png") as im:
        im.load()


def test_render_failures_are_counted_with_their_reason(pipe, sd_dir, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.csv", PROMPTS[:3])
    s = generate(prompts, tmp_path / "set", Settings(model=str(sd_dir), gen_size=36, steps=2), pipe=pipe,
                 batch_size=2, progress=False)
    assert s.rendered == 0 and sorted(s.failed) == ["a0", "a1", "a2"]
    assert all("divisible by 8" in r for r in s.failed.values())
    assert s.merged["train"]["listed"] == 0


def test_shards_are_disjoint_covering_and_stable():
    rng = np.random.default_rng(0)
    ids = [f"{x:012x}" for x in rng.integers(0, 2**48, 300)]
    frame = pd.DataFrame({"imgId": ids, "prompt": [f"prompt {i}" for i in ids]})
    plan = expand(frame, 3)
    for n in (1, 2, 3, 8):
        parts = [set(select_shard(plan, i, n)["imgId"]) for i in range(n)]
        assert sum(map(len, parts)) == len(plan) and set().union(*parts) == set(plan["imgId"])
        assert all(len(p) > len(plan) / n / 2 for p in parts)  # roughly balanced
        for i, part in enumerate(parts):  # all images of a prompt in one shard
            prompt_ids = {x.rsplit("_", 1)[0] for x in part}
            assert all(shard_of(p, n) == i for p in prompt_ids)
    # Adding prompts moves nobody: a shard is a hash of the prompt id, not a row position.
    bigger = expand(pd.concat([frame.iloc[::-1], frame.assign(imgId=frame["imgId"] + "x")]), 3)
    for i in range(4):
        old = set(select_shard(plan, i, 4)["imgId"])
        assert old <= set(select_shard(bigger, i, 4)["imgId"])


def test_torchrun_env_picks_shard_and_device():
    assert shard_from_env({"WORLD_SIZE": "1"}) is None
    assert shard_from_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == (5, 8, 1)
    assert resolve_device("cuda", 3) == torch.device("cuda:3")
    assert resolve_device("cpu", 3) == torch.device("cpu")


def test_sharded_runs_and_merge(pipe, sd_dir, tmp_path, monkeypatch, capsys):
    prompts = write_prompts(tmp_path / "prompts.csv")
    out = tmp_path / "set"
    # Shard 1/2 as torchrun rank 1 would run it (CLI, env only), then shard 0/2 explicitly.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(["--prompts", str(prompts), "--out", str(out), "--model", str(sd_dir), *TINY]) == 0
    monkeypatch.delenv("WORLD_SIZE")
    assert "shard 1/2" in capsys.readouterr().out
    one = pd.read_csv(out / "prompts.1-of-2.csv", dtype=str)
    assert set(pd.read_csv(out / "prompts.csv", dtype=str)["imgId"]) == set(one["imgId"])  # partial set usable
    run(pipe, sd_dir, prompts, out, shard=(0, 2))
    zero = pd.read_csv(out / "prompts.0-of-2.csv", dtype=str)
    assert not set(zero["imgId"]) & set(one["imgId"])
    assert set(zero["imgId"]) | set(one["imgId"]) == {p for p, _ in PROMPTS}
    merged = (out / "prompts.csv").read_bytes()
    assert len(load_dataset(out, require_prompts=True)) == len(PROMPTS)
    assert main(["--merge", str(out)]) == 0
    assert (out / "prompts.csv").read_bytes() == merged  # idempotent
    (out / "images" / "a2.png").unlink()
    layout.merge(out)
    first = (out / "prompts.csv").read_bytes()
    layout.merge(out)
    assert (out / "prompts.csv").read_bytes() == first
    listed = pd.read_csv(out / "prompts.csv", dtype=str)
    assert "a2" not in set(listed["imgId"]) and len(listed) == len(PROMPTS) - 1
    assert list(listed.columns) == ["imgId", "prompt", "source"]
    assert not list(out.glob("**/.*.tmp"))


PARAPHRASES = [
    ["a red fox in the snow, digital art", "A red fox in the snow, digital art.",
     "a red fox in the snow - digital art"],
    ["portrait of an old fisherman, oil painting", "portrait of an old fisherman, oil painting, detailed",
     "an oil painting portrait of an old fisherman"],
    ["a futuristic city at night, neon lights", "futuristic city at night with neon lights"],
]
SINGLES = ["a bowl of ramen on a wooden table", "a cat sleeping on a windowsill",
           "mountain lake at sunrise, photograph", "a steampunk airship above the clouds",
           "a watercolor of a lighthouse", "an astronaut riding a horse on mars", "a medieval castle in the fog",
           "a close-up photo of a honeybee on a flower"]


def test_holdout_keeps_paraphrases_on_one_side():
    from core.targets import embed_prompts

    prompts = [p for group in PARAPHRASES for p in group] + SINGLES
    ids = [f"p{i:02d}" for i in range(len(prompts))]
    emb = embed_prompts(prompts)
    cos = emb @ emb.T
    start = 0
    for group in PARAPHRASES:  # premise: each paraphrase set chains at cosine >= 0.9
        block = cos[start:start + len(group), start:start + len(group)]
        assert (block.max(axis=1, initial=0, where=~np.eye(len(group), dtype=bool)) >= 0.9).all()
        start += len(group)
    held_somewhere = set()
    assert choose_holdout(ids, prompts, 0.4) == choose_holdout(ids, prompts, 0.4, emb=emb)
    for seed in range(8):
        held = choose_holdout(ids, prompts, 0.4, seed=seed, emb=emb)
        assert len(held) == round(0.4 * len(prompts))
        start = 0
        for g, group in enumerate(PARAPHRASES):
            sides = {ids[start + k] in held for k in range(len(group))}
            assert len(sides) == 1, f"seed {seed}: paraphrase group {g} split across train and test"
            if sides == {True}:
                held_somewhere.add(g)
            start += len(group)
        order = np.random.default_rng(seed).permutation(len(ids))  # row order does not matter
        assert choose_holdout([ids[i] for i in order], [prompts[i] for i in order], 0.4, seed=seed,
                              emb=emb[order]) == held
    assert held_somewhere == {0, 1, 2}  # every group is held out (whole) for some seed


def test_holdout_writes_the_test_split(pipe, sd_dir, tmp_path):
    prompts = [p for group in PARAPHRASES for p in group] + SINGLES[:3]
    rows = [(f"h{i:02d}", p) for i, p in enumerate(prompts)]
    src = write_prompts(tmp_path / "prompts.csv", rows)
    out = tmp_path / "set"
    # --prepare chooses the split once (what every shard then reads) and renders nothing.
    assert main(["--prompts", str(src), "--out", str(out), "--model", str(sd_dir), *TINY, "--holdout", "0.3",
                 "--prepare", "--cache", str(tmp_path / "text_cache")]) == 0
    assert (out / "holdout.json").is_file() and not (out / "images").exists()
    assert list((tmp_path / "text_cache").rglob("*.keys.npy"))  # embeddings kept by text for later sets
    chosen = (out / "holdout.json").stat().st_mtime_ns
    s = run(pipe, sd_dir, src, out, batch_size=4, holdout=0.3)
    assert s.planned["test"] == round(0.3 * len(rows)) and s.planned["train"] + s.planned["test"] == len(rows)
    train = load_dataset(out, require_prompts=True)
    test = pd.read_csv(out / "test_prompts.csv", dtype=str)
    assert not set(train["imgId"]) & set(test["imgId"])
    assert sorted(p.stem for p in (out / "test" / "images").iterdir()) == sorted(test["imgId"])
    assert len(load_dataset(out / "test")) == len(test)  # a test set: images/ without prompts.csv
    text_side = {p: "test" for p in test["prompt"]} | {p: "train" for p in train["prompt"]}
    for group in PARAPHRASES:
        assert len({text_side[p] for p in group}) == 1
    # A resume reads the cached choice (holdout.json) and renders nothing.
    assert run(pipe, sd_dir, src, out, batch_size=4, holdout=0.3).rendered == 0
    assert (out / "holdout.json").stat().st_mtime_ns == chosen


def test_check_img_id():
    assert check_img_id("9f3a_b-1", "p.csv") == "9f3a_b-1"
    with pytest.raises(DataError, match=r"p\.csv: row 3: imgId 'abc\.png' ends in the file extension \.png"):
        check_img_id("abc.png", "p.csv", row=3)
    for bad in ("a b", "a/b", "", "x.y", "é"):
        with pytest.raises(DataError, match="not a file stem"):
            check_img_id(bad, "p.csv")


@pytest.mark.parametrize("rows, args, message", [
    (None, [], "file not found"),
    ([("abc.png", "a cat")], [], "ends in the file extension .png"),
    ([("a/b", "a cat")], [], "not a file stem"),
    (PROMPTS[:1], ["--model", "/nonexistent/sd2"], "pipeline folder not found"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, rows, args, message):
    prompts = tmp_path / "prompts.csv"
    if rows is not None:
        write_prompts(prompts, rows)
    rc = main(["--prompts", str(prompts), "--out", str(tmp_path / "set"), *TINY, *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_usage_errors_and_settings_guard(pipe, sd_dir, tmp_path, capsys):
    prompts = write_prompts(tmp_path / "prompts.csv", PROMPTS[:2])
    out = tmp_path / "set"
    for bad in (["--gen-size", "30"], ["--dtype", "fp16", "--device", "cpu"], ["--shard", "2/2"],
                ["--format", "png", "--quality", "90"]):
        with pytest.raises(SystemExit) as e:
            main(["--prompts", str(prompts), "--out", str(out), *bad])
        assert e.value.code == 2
    run(pipe, sd_dir, prompts, out)
    # A resume with other settings would mix two kinds of images in one set.
    assert main(["--prompts", str(prompts), "--out", str(out), "--model", str(sd_dir), *TINY, "--steps", "3"]) == 2
    assert "steps 2 -> 3" in capsys.readouterr().err
    assert main(["--prompts", str(prompts), "--out", str(out), "--model", str(sd_dir), *TINY, "--steps", "3",
                 "--allow-settings-change"]) == 0
    assert main(["--merge", str(tmp_path / "nothing")]) == 2
    assert "generated set folder not found" in capsys.readouterr().err
    # The corpus must not be the set's own prompts.csv (the merge rewrites it).
    assert main(["--prompts", str(out / "prompts.csv"), "--out", str(out), *TINY]) == 2
    assert "outside --out" in capsys.readouterr().err


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "datagen.generate", "--prompts", str(tmp_path / "none.csv"),
                          "--out", str(tmp_path / "set")], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "none.csv: file not found" in res.stderr and "Traceback" not in res.stderr


def test_generated_pipeline_config_reads_what_generate_writes(pipe, sd_dir, tmp_path, monkeypatch):
    import argparse

    from core import targets
    from pipeline.config import load_pipeline, resolve_config
    from pipeline.stages import build_stages

    rows = [(f"g{i:02d}", p) for i, p in enumerate([p for group in PARAPHRASES for p in group] + SINGLES)]
    data = tmp_path / "data" / "sd2"  # the config's paths, relative to where run_all.sh starts
    run(pipe, sd_dir, write_prompts(tmp_path / "prompts.csv", rows), data, batch_size=8, holdout=0.2)
    monkeypatch.chdir(tmp_path)
    cfg = load_pipeline(resolve_config("configs/pipeline/generated.yaml"))
    args = argparse.Namespace(work=str(tmp_path / "work"), n_train=None, n_test=None, size=None, model_set=[])
    stages = build_stages(cfg, args)
    assert {"targets", "test-targets", "folds", "baseline", "score"} <= {s.name for s in stages}
    inputs = [p for s in stages for p in s.inputs if data in (p, *p.parents)]
    assert inputs and all(p.exists() for p in inputs), [str(p) for p in inputs if not p.exists()]
    # The first stages' commands accept the generated files.
    assert targets.main(["--prompts", str(data), "--out", str(tmp_path / "t_train")]) == 0
    assert targets.main(["--prompts", str(data / "test_prompts.csv"), "--out", str(tmp_path / "t_test")]) == 0
    assert len(load_dataset(data / "test")) == len(pd.read_csv(data / "test_prompts.csv"))
