"""webdataset shards: conversion, manifest, tamper detection, and reading them split per rank and worker."""
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import DataError
from core.io import sha256_file, write_json
from core.shards import (
    SHARD_MANIFEST,
    load_shard_dataset,
    main,
    pixel_identity,
    read_manifest,
    verify_shards,
    write_shards,
)
from models.data.shards import ShardSource
from models.data.sources import CacheSource
from models.distributed import DistEnv
from models.image_cache import decode_resized

N, SIZE = 30, 24


def make_images(root, n=N, ids=None):
    """A training set of noise images (some not square), prompts with a comma and non-ASCII text."""
    rng = np.random.default_rng(0)
    ids = ids or [f"img{i:03d}" for i in range(n)]
    (root / "images").mkdir(parents=True)
    for k, i in enumerate(ids):
        shape = (40, 40, 3) if k % 3 else (40, 48, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / "images" / f"{i}.png")
    rows = [f'{i},"a photo of thing {k // 2}, café"' for k, i in enumerate(ids)]
    (root / "prompts.csv").write_text("imgId,prompt\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def shards(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "s"
    assert main(["--data", str(dataset), "--out", str(out), "--shard-size", "7", "--workers", "1"]) == 0
    return out


def test_conversion_writes_tars_prompts_and_manifest(dataset, shards, tmp_path):
    manifest = read_manifest(shards)
    assert [s["count"] for s in manifest["shards"]] == [7, 7, 7, 7, 2] and manifest["n_samples"] == N
    for s in manifest["shards"]:
        assert sha256_file(shards / s["name"]) == s["sha256"] and (shards / s["name"]).stat().st_size == s["bytes"]
    with tarfile.open(shards / "shard-000001.tar") as tar:
        names = tar.getnames()
        assert names[:4] == ["img007.png", "img007.txt", "img008.png", "img008.txt"]
        assert tar.extractfile("img007.txt").read().decode("utf-8") == "a photo of thing 3, café"
        # without --size the images are the source files' own bytes
        assert tar.extractfile("img008.png").read() == (dataset / "images" / "img008.png").read_bytes()
    frame = load_shard_dataset(shards)
    assert frame["imgId"].tolist() == [f"img{i:03d}" for i in range(N)]
    assert frame["shard"].tolist()[6:9] == [0, 1, 1] and frame["pos"].tolist()[6:9] == [6, 0, 1]
    # the same input gives byte-identical shards
    again = tmp_path / "again"
    write_shards(dataset, again, 7, progress=False)
    assert [s["sha256"] for s in read_manifest(again)["shards"]] == [s["sha256"] for s in manifest["shards"]]
    with pytest.raises(DataError, match="not empty.*--overwrite"):
        write_shards(dataset, again, 7, progress=False)


def test_resized_and_lossy_shards(dataset, shards, tmp_path):
    png = write_shards(dataset, tmp_path / "png", 10, size=SIZE, progress=False)
    jpg = write_shards(dataset, tmp_path / "jpg", 10, size=SIZE, fmt="jpg", quality=90, progress=False)
    assert pixel_identity(read_manifest(shards), SIZE) is None  # the files' own pixels
    assert pixel_identity(png, SIZE) is None and pixel_identity(png, 32) is not None
    assert pixel_identity(jpg, SIZE) == {"image_format": "jpg", "size": SIZE, "quality": 90}
    frame = load_shard_dataset(tmp_path / "jpg")
    with tarfile.open(frame["path"][0]) as tar:
        assert tar.getnames()[0] == "img000.jpg"
    # PNG written at the training size decodes to the same pixels as the loose files resized by the trainer
    src = ShardSource(load_shard_dataset(tmp_path / "png"), SIZE)
    loose = np.stack([decode_resized(dataset / "images" / f"img{i:03d}.png", SIZE) for i in range(5)])
    x = next(iter(src.iterate([np.arange(5)], "cpu")))
    assert np.array_equal((x * 255).round().byte().permute(0, 2, 3, 1).numpy(), loose)


def test_img_id_with_a_dot_is_refused(tmp_path):
    data = make_images(tmp_path / "d", ids=["ok1", "bad.1"])
    with pytest.raises(DataError, match=r"prompts\.csv: row 2: imgId 'bad\.1'"):
        write_shards(data, tmp_path / "out", 5, progress=False)


def test_tampered_shard_is_named(dataset, tmp_path):
    out = tmp_path / "s"
    write_shards(dataset, out, 10, progress=False)
    stamp = tmp_path / "stamp.json"
    verify_shards(out, stamp, progress=False)
    data = bytearray((out / "shard-000001.tar").read_bytes())
    data[700] ^= 0xFF  # one byte of an image
    (out / "shard-000001.tar").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"shard-000001\.tar: sha256 .* differs from the manifest"):
        verify_shards(out, stamp, progress=False)  # the stamp of the good file no longer matches
    assert main(["--verify", str(out)]) == 2
    (out / "shard-000002.tar").unlink()
    (out / "shard-000001.tar").unlink()
    with pytest.raises(DataError, match=r"shard-000001\.tar: shard listed in the manifest is missing"):
        verify_shards(out, progress=False)
    (out / SHARD_MANIFEST).write_text("{}")
    with pytest.raises(DataError, match="not a shard manifest"):
        read_manifest(out)


def test_two_ranks_two_workers_read_each_image_once(dataset, shards):
    frame = load_shard_dataset(shards)
    cache = CacheSource(np.stack([decode_resized(p, SIZE) for p in (dataset / "images" / f"{i}.png"
                                                                    for i in frame["imgId"])]))
    rows = np.arange(3, N)  # 27 rows (another fold holds 0-2)
    world, bsz = 2, 4
    seen, plans = [], {}
    for rank in range(world):
        src = ShardSource(frame, SIZE, workers=2, shuffle_buffer=5)
        env = DistEnv(rank=rank, world_size=world)
        batches = src.epoch_batches(rows, bsz, env, seed=11, steps=10**6)
        plans[rank] = batches
        assert len(batches) == len(rows) // (world * bsz)  # the same number of steps on every rank
        out = list(src.iterate(batches, "cpu"))
        for b, x in zip(batches, out):  # each batch holds exactly the pixels of its rows
            assert torch.equal(x, next(iter(cache.iterate([b], "cpu"))))
        assert len(out) == len(batches)
        seen += [int(r) for b in batches for r in b]
    assert len(seen) == len(set(seen)) and set(seen) <= set(rows.tolist())  # no image twice within the epoch
    assert len(rows) - len(seen) < world * bsz  # fewer than world x batch dropped
    src = ShardSource(frame, SIZE, workers=2, shuffle_buffer=5)
    same = src.epoch_batches(rows, bsz, DistEnv(rank=0, world_size=world), seed=11, steps=10**6)
    assert all(np.array_equal(a, b) for a, b in zip(same, plans[0]))  # deterministic per seed
    other = src.epoch_batches(rows, bsz, DistEnv(rank=0, world_size=world), seed=12, steps=10**6)
    assert not all(np.array_equal(a, b) for a, b in zip(other, plans[0]))  # another epoch, another order
    # resume at step 1: the rest of the epoch, batch for batch
    full = list(src.iterate(plans[0], "cpu"))
    assert all(torch.equal(a, b) for a, b in zip(src.iterate(plans[0][1:], "cpu"), full[1:]))


def test_prediction_split_over_ranks_covers_every_row_once(shards):
    src = ShardSource(load_shard_dataset(shards), SIZE, workers=2)
    rows = np.array([29, 3, 17, 4, 8, 22, 0])
    parts = [src.local_positions(rows, DistEnv(rank=r, world_size=2)) for r in range(2)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(rows)))
    batches = src.arrange([parts[0][i:i + 2] for i in range(0, len(parts[0]), 2)])
    assert sorted(np.concatenate(batches).tolist()) == sorted(parts[0].tolist())


def test_unreadable_image_in_a_shard_names_shard_member_and_id(dataset, tmp_path):
    out = tmp_path / "s"
    write_shards(dataset, out, 10, progress=False)
    path = out / "shard-000001.tar"
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in members:
            data = b"not a png" if m.name == "img013.png" else data
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    manifest = read_manifest(out)
    manifest["shards"][1]["sha256"] = sha256_file(path)
    write_json(out / SHARD_MANIFEST, manifest)
    src = ShardSource(load_shard_dataset(out), SIZE, workers=2)
    with pytest.raises(DataError, match=r"shard-000001\.tar: member img013\.png \(imgId img013\): cannot be decoded"):
        list(src.iterate([np.arange(0, 8), np.arange(8, 16)], "cpu"))
