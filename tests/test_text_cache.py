"""The text-keyed embedding cache: rows read back exactly, texts embedded once, safe shards."""
import os

import numpy as np
import pandas as pd
import pytest

from core.errors import DataError
from core.io import read_json
from core.targets import (
    META_FILE,
    compute_targets,
    embed_prompts,
    embed_prompts_cached,
    load_targets,
    targets_key,
    text_cache,
)
from core.text_cache import KEYS_SUFFIX, VECTORS_SUFFIX, TextEmbeddingCache, text_key

DIM = 8


def rand_rows(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


class CountingEmbedder:
    """A deterministic stand-in for the model in the cache's own tests: row = f(text)."""

    def __init__(self):
        self.calls, self.texts = 0, []

    def __call__(self, texts):
        self.calls += 1
        self.texts += list(texts)
        return np.stack([rand_rows(1, int(text_key(t)[:8], 16))[0] for t in texts])


def test_add_lookup_roundtrip_and_second_object_sees_rows(tmp_path):
    cache = TextEmbeddingCache(tmp_path, "f" * 64, DIM)
    texts = ["a cat", "a dog", "a cat", "ünïcode ✓"]
    rows = rand_rows(4)
    rows[2] = rows[0]
    assert cache.add(texts, rows) == 3  # the repeated text is stored once
    got, found = cache.lookup(["a dog", "missing", "ünïcode ✓", "a cat"])
    assert found.tolist() == [True, False, True, True]
    assert np.array_equal(got[[0, 2, 3]], rows[[1, 3, 0]]) and not got[1].any()
    other = TextEmbeddingCache(tmp_path, "f" * 64, DIM)  # another process, same folder
    assert len(other) == 3 and other.add(["a dog", "a bird"], rand_rows(2, 1)) == 1
    assert cache.lookup(["a bird"])[1].all()  # the first object indexes the new shard


def test_embed_embeds_each_distinct_missing_text_once_in_chunks(tmp_path):
    cache = TextEmbeddingCache(tmp_path, "e" * 64, DIM)
    fn = CountingEmbedder()
    texts = [f"prompt {i % 7}" for i in range(20)]
    rows, new = cache.embed(texts, fn, chunk=3)
    assert new == 7 and sorted(fn.texts) == sorted(set(texts)) and fn.calls == 3
    assert np.array_equal(rows, fn(texts))
    again, new2 = cache.embed(texts[::-1] + ["prompt 99"], fn, chunk=3)
    assert new2 == 1 and np.array_equal(again[:-1], rows[::-1])


def test_interrupted_embed_keeps_finished_chunks(tmp_path):
    cache = TextEmbeddingCache(tmp_path, "d" * 64, DIM)
    fn = CountingEmbedder()

    def dies_on_second_chunk(texts):
        if fn.calls == 1:
            raise KeyboardInterrupt
        return fn(texts)

    texts = [f"t{i}" for i in range(6)]
    with pytest.raises(KeyboardInterrupt):
        cache.embed(texts, dies_on_second_chunk, chunk=3)
    _, new = cache.embed(texts, fn, chunk=3)
    assert new == 3


def test_orphan_vectors_are_ignored_and_compact_merges(tmp_path):
    cache = TextEmbeddingCache(tmp_path, "c" * 64, DIM)
    for k in range(4):
        cache.add([f"x{k}", f"y{k}"], rand_rows(2, k))
    # A writer killed between its vectors and its keys file leaves an orphan nobody reads.
    orphan = cache.folder / f"shard-0-0-dead{VECTORS_SUFFIX}"
    np.save(orphan, rand_rows(5, 9))
    os.utime(orphan, (0, 0))
    before, _ = cache.lookup([f"x{k}" for k in range(4)])
    assert len(cache) == 8
    assert cache.compact() == 8
    assert len(list(cache.folder.glob(f"*{KEYS_SUFFIX}"))) == 1 and not orphan.exists()
    fresh = TextEmbeddingCache(tmp_path, "c" * 64, DIM)
    after, found = fresh.lookup([f"x{k}" for k in range(4)])
    assert found.all() and np.array_equal(before, after)
    # An object that indexed the old shards re-indexes after another process compacted them.
    stale = TextEmbeddingCache(tmp_path, "c" * 64, DIM)
    stale.add(["z"], rand_rows(1, 5))
    len(stale)
    fresh.compact()
    assert stale.lookup(["z", "x1"])[1].all()


def test_another_embedder_in_the_same_folder_is_refused(tmp_path):
    TextEmbeddingCache(tmp_path, "b" * 64, DIM).add(["a"], rand_rows(1))
    with pytest.raises(DataError, match="another embedder"):
        TextEmbeddingCache(tmp_path, "b" * 16 + "0" * 48, DIM)
    with pytest.raises(DataError, match="another embedder"):
        TextEmbeddingCache(tmp_path, "b" * 64, DIM + 1)


# -- with the real MiniLM model ---------------------------------------------------------------

PROMPTS = [
    "a watercolor painting of a lighthouse at dusk",
    "a close-up photo of a red fox in the snow",
    "an isometric render of a tiny medieval village",
    "portrait of an astronaut, oil on canvas",
    "a bowl of ramen, studio lighting",
    "a bowl of ramen, studio lighting",
]


@pytest.fixture(scope="module")
def direct():
    return embed_prompts(PROMPTS, progress=False)


def test_cached_rows_equal_direct_embedding_and_are_read_back_bitwise(tmp_path, direct):
    emb, new = embed_prompts_cached(PROMPTS, tmp_path, progress=False)
    assert new == 5  # the repeated prompt is embedded once
    assert emb.dtype == np.float32 and emb.shape == (6, 384)
    np.testing.assert_allclose(emb, direct, atol=1e-6)
    again, new2 = embed_prompts_cached(PROMPTS[::-1], tmp_path, progress=False)
    assert new2 == 0 and np.array_equal(again, emb[::-1])
    assert len(text_cache(tmp_path)) == 5


def test_targets_of_another_set_of_the_same_prompts_are_read_not_embedded(tmp_path, direct, monkeypatch):
    cache = tmp_path / "cache"
    emb, reused = compute_targets([f"a{i}" for i in range(6)], PROMPTS, tmp_path / "t1",
                                  cache_dir=cache, progress=False)
    assert not reused
    np.testing.assert_allclose(emb, direct, atol=1e-6)

    def no_model(path):
        raise AssertionError("the model was loaded although every prompt is cached")

    monkeypatch.setattr("core.targets.load_embedder", no_model)
    # Other ids, a subset, several images per prompt: all read from the cache.
    ids = ["b0", "b1", "b2", "b3"]
    prompts = [PROMPTS[3], PROMPTS[3], PROMPTS[0], PROMPTS[4]]
    emb2, reused2 = compute_targets(ids, prompts, tmp_path / "t2", cache_dir=cache)
    assert not reused2 and np.array_equal(emb2, emb[[3, 3, 0, 4]])
    # The targets folder's format and key are those of a folder written without a cache.
    got_ids, loaded = load_targets(tmp_path / "t2")
    assert got_ids == ids and np.array_equal(loaded, emb2)
    from core.targets import default_embedder_path

    assert read_json(tmp_path / "t2" / META_FILE)["key"] == targets_key(ids, prompts, default_embedder_path())


def test_targets_cli_fills_and_reads_the_cache(tmp_path, monkeypatch, capsys):
    from core.targets import main

    pd.DataFrame({"imgId": ["p0", "p1", "p2"], "prompt": PROMPTS[:3]}).to_csv(tmp_path / "prompts.csv", index=False)
    cache = tmp_path / "cache"
    assert main(["--prompts", str(tmp_path), "--out", str(tmp_path / "t0"), "--cache", str(cache), "--no-cache"]) == 0
    assert not cache.exists()
    assert main(["--prompts", str(tmp_path), "--out", str(tmp_path / "t1"), "--cache", str(cache)]) == 0
    assert len(text_cache(cache)) == 3
    monkeypatch.setattr("core.targets.load_embedder", lambda path: pytest.fail("model loaded"))
    assert main(["--prompts", str(tmp_path), "--out", str(tmp_path / "t2"), "--cache", str(cache)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert np.array_equal(load_targets(tmp_path / "t2")[1], load_targets(tmp_path / "t1")[1])
