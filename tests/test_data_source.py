"""Image sources (cache / stream / shards), one image per prompt per epoch, and TTA views."""
import re
import shutil

import numpy as np
import pytest
import torch

from core.dataset import load_dataset
from core.errors import DataError
from core.runs import load_run
from core.shards import write_shards
from models.config import ConfigError, config_hash, load_config
from models.data import CACHE_LIMIT_GIB, CacheSource, StreamSource, choose_source
from models.data.sampling import PromptSampler
from models.distributed import DistEnv
from models.image_cache import decode_resized
from models.train import TrainingData, train_run
from models.train import main as train_main
from tests.model_fixtures import REPO, tiny_overrides

VIT = REPO / "configs/vit_demo.yaml"


@pytest.fixture(scope="module")
def train_frame(project):
    return load_dataset(project / "data" / "train")


def cfg_for(project, out, *extra, **kw):
    return load_config(VIT, tiny_overrides(project, out, extra=list(extra), **kw))


def test_cache_and_stream_give_identical_predictions(project, tmp_path):
    runs = {}
    for source in ("cache", "stream"):
        metrics = train_run(cfg_for(project, tmp_path / source, f"data.source={source}", "data.workers=2"),
                            progress=False)
        runs[source] = metrics["config_hash"], load_run(tmp_path / source)
    assert runs["cache"][0] == runs["stream"][0]  # the source is not part of the hash
    np.testing.assert_array_equal(runs["cache"][1].oof, runs["stream"][1].oof)
    np.testing.assert_array_equal(runs["cache"][1].test, runs["stream"][1].test)


def test_stream_batches_follow_the_list_from_any_step(train_frame):
    paths, ids = train_frame["path"].tolist(), train_frame["imgId"].tolist()
    cache = CacheSource(np.stack([decode_resized(p, 32) for p in paths]))
    stream = StreamSource(paths, ids, 32, workers=2)
    batches = CacheSource(cache.images).epoch_batches(np.arange(len(paths)), 5, DistEnv(), seed=3, steps=6)
    expected = [x.clone() for x in cache.iterate(batches, "cpu")]
    first = stream.iterate(batches, "cpu")
    assert torch.equal(next(first), expected[0])  # abandoned after one batch, as an interrupted epoch is
    for start in (0, 4):  # the persistent workers serve a new list from its start
        got = list(stream.iterate(batches[start:], "cpu"))
        assert len(got) == len(batches) - start and all(torch.equal(a, b) for a, b in zip(got, expected[start:]))
    stream.close()


def test_unreadable_image_stops_the_run_naming_file_and_id(project, tmp_path, capsys):
    train = tmp_path / "train"
    shutil.copytree(project / "data" / "train", train)
    frame = load_dataset(train)
    bad = frame["path"].iloc[5]
    with open(bad, "r+b") as f:  # a truncated PNG: the header reads, the pixels do not
        f.truncate(60)
    cfg = cfg_for(project, tmp_path / "run", f"data.train={train}", "data.source=stream", "data.workers=2")
    with pytest.raises(DataError, match=rf"{re.escape(bad)}: imgId {frame['imgId'].iloc[5]}: cannot be decoded"):
        train_run(cfg, progress=False)
    argv = ["--config", str(VIT), "--no-progress"]
    for o in tiny_overrides(project, tmp_path / "cli", extra=[f"data.train={train}", "data.source=stream"]):
        argv += ["--set", o]
    assert train_main(argv) == 2
    assert f"error: {bad}: imgId" in capsys.readouterr().err


def test_training_from_shards(project, train_frame, tmp_path):
    shards = tmp_path / "shards"
    write_shards(project / "data" / "train", shards, 7, progress=False)
    metrics = train_run(cfg_for(project, tmp_path / "run", f"data.train={shards}", "data.workers=2"), progress=False)
    run = load_run(tmp_path / "run")  # auto: a shard folder is read as shards
    assert run.oof_ids == train_frame["imgId"].tolist() and np.isfinite(run.oof).all()
    # the shard order (and lossy pixels) enter the hash; cache and stream share one
    loose = cfg_for(project, tmp_path / "run")
    data = TrainingData(loose)
    cache_hash = config_hash(loose, data.identity(loose, "cache"))
    assert cache_hash == config_hash(loose, data.identity(loose, "stream")) != metrics["config_hash"]
    with pytest.raises(DataError, match="data.source cache reads image files; this is a shard folder"):
        train_run(cfg_for(project, tmp_path / "r2", f"data.train={shards}", "data.source=cache"), progress=False)
    with pytest.raises(DataError, match="data.source shards needs data.train to be a shard folder"):
        train_run(cfg_for(project, tmp_path / "r3", "data.source=shards"), progress=False)
    data = bytearray((shards / "shard-000002.tar").read_bytes())
    data[900] ^= 0xFF
    (shards / "shard-000002.tar").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"shard-000002\.tar: sha256 .* differs from the manifest"):
        train_run(cfg_for(project, tmp_path / "r4", f"data.train={shards}"), progress=False)


def test_auto_source_choice(tmp_path):
    assert choose_source("auto", 1500, 64, tmp_path) == "cache"
    big = CACHE_LIMIT_GIB * 2**30 // (224 * 224 * 3) + 1
    assert choose_source("auto", big, 224, tmp_path) == "stream"
    assert choose_source("stream", 10, 64, tmp_path) == "stream"
    assert choose_source("auto", 10, 64, tmp_path, is_shards=True) == "shards"


def make_prompts(n_prompts=8, per=3):
    prompts = [f"prompt {k}" for k in range(n_prompts) for _ in range(per)]
    return prompts, [f"id{i:03d}" for i in range(len(prompts))]


def test_one_image_per_prompt_per_epoch():
    prompts, ids = make_prompts()
    sampler = PromptSampler(prompts, ids)
    rows = np.arange(18)  # prompts 0-5
    picks = [sampler.epoch_rows(rows, seed) for seed in range(4)]
    for p in picks:
        assert sorted(prompts[r] for r in p) == [f"prompt {k}" for k in range(6)]
    assert np.array_equal(picks[0], sampler.epoch_rows(rows, 0))  # deterministic
    assert len({tuple(p) for p in picks}) > 1  # another epoch, other images
    # a prompt's draw depends on its own images only
    assert set(sampler.epoch_rows(rows[3:], 0)) == set(picks[0]) - {picks[0][0]}
    assert sampler.groups(rows) == 6


class RecordingSource(CacheSource):
    def __init__(self, images):
        super().__init__(images)
        self.epochs = []

    def epoch_batches(self, rows, batch_size, env, seed, steps):
        batches = super().epoch_batches(rows, batch_size, env, seed, steps)
        self.epochs.append([b.tolist() for b in batches])
        return batches


def test_sample_per_prompt_trains_one_image_per_prompt(tmp_path):
    from models.loop import train_fold

    prompts, ids = make_prompts()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(ids), 32, 32, 3), dtype=np.uint8)
    targets = rng.normal(size=(len(ids), 384)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    cfg = load_config(VIT, ["image.size=32", "train.epochs=2", "train.batch_size=2", "train.num_threads=1",
                            "data.sample_per_prompt=1"])
    records = []
    for attempt in range(2):
        src = RecordingSource(images)
        train_fold(cfg, 0, src, targets, np.arange(18), np.arange(18, 24), tmp_path / str(attempt), DistEnv(),
                   progress=False, sampler=PromptSampler(prompts, ids))
        records.append(src.epochs)
    assert records[0] == records[1]  # the same draws on a rerun (and on a resume)
    for epoch in records[0]:
        assert len(epoch) == 3  # 6 prompts / batch 2: the epoch shrinks to one image per prompt
        assert sorted(prompts[r] for b in epoch for r in b) == [f"prompt {k}" for k in range(6)]
    assert records[0][0] != records[0][1]


def test_sample_per_prompt_and_tta_config():
    plain = load_config(VIT)
    assert plain["data"]["sample_per_prompt"] is None
    assert config_hash(load_config(VIT, ["data.sample_per_prompt=0"])) == config_hash(plain)
    assert config_hash(load_config(VIT, ["data.sample_per_prompt=1"])) != config_hash(plain)
    flip = load_config(VIT, ["predict.tta=flip"])
    as_list = load_config(VIT, ["predict.tta=[none, flip]"])
    assert as_list["predict"]["tta"] == "flip" and config_hash(as_list) == config_hash(flip)
    views = load_config(VIT, ["predict.tta=[none, flip, norm2, resize]"])
    assert views["predict"]["tta"] == ["none", "flip", "norm2", "resize"] and config_hash(views) != config_hash(flip)
    for bad in ("predict.tta=[none, sideways]", "predict.tta=[]", "predict.tta=[flip, flip]", "data.source=disk",
                "data.sample_per_prompt=3"):
        with pytest.raises(ConfigError):
            load_config(VIT, [bad])


def test_tta_views_average_normalised_predictions():
    from models.engine import predict_rows
    from models.net import build_model

    cfg = load_config(VIT, ["image.size=32"])
    torch.manual_seed(0)
    model, pre = build_model(cfg, np.zeros(384), np.ones(384))
    images = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)

    def pred(tta):
        return predict_rows(model, images, np.arange(6), pre, 4, torch.device("cpu"), "fp32", tta)

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    np.testing.assert_array_equal(pred("none"), pred(["none"]))
    single = {v: pred([v]) for v in ("none", "flip", "norm2", "resize")}
    assert all(not np.allclose(single["none"], single[v]) for v in ("flip", "norm2", "resize"))
    np.testing.assert_allclose(pred(["none", "norm2", "resize"]),
                               (unit(single["none"]) + unit(single["norm2"]) + unit(single["resize"])) / 3, atol=1e-6)
    np.testing.assert_array_equal(pred("flip"), pred(["none", "flip"]))
