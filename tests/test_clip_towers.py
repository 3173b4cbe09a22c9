"""models/clip_towers.py on a tiny open_clip model (configs/open_clip/tiny-ViT-2L-64-p8.json)."""
import numpy as np
import pytest
import torch

from models import knn_features
from models.backbones import BackboneError
from models.clip_towers import (
    TEXT_FEATURES_DIR,
    cached_text_features,
    clip_identity,
    contrastive_loss,
    encode_images,
    encode_texts,
    finetune_contrastive,
    load_clip,
)
from tests.clip_fixtures import TINY_CLIP, pair_auc


@pytest.fixture(scope="module")
def trained(tiny_clip):
    model, pre, tokenizer = load_clip(TINY_CLIP, str(tiny_clip.weights))
    return model, pre, tokenizer


def test_load_clip_random_init_is_seeded_and_pre_has_the_size():
    a, pre, _ = load_clip(TINY_CLIP)
    b, _, _ = load_clip(TINY_CLIP)
    c, _, _ = load_clip(TINY_CLIP, seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert pre["size"] == 32 and len(pre["mean"]) == 3 and pre["interpolation"] == "bicubic"
    assert hasattr(a, "transformer") and hasattr(a, "visual")  # both towers


def test_load_clip_errors_name_the_problem(tmp_path):
    with pytest.raises(BackboneError, match="unknown open_clip model 'tiny-ViT-2L-46-p8'"):
        load_clip("tiny-ViT-2L-46-p8")
    with pytest.raises(BackboneError, match="checkpoint file not found"):
        load_clip(TINY_CLIP, str(tmp_path / "missing.pt"))


def test_clip_identity_tells_weights_apart(tiny_clip, tmp_path):
    file_id = clip_identity(TINY_CLIP, str(tiny_clip.weights))
    assert file_id == clip_identity(TINY_CLIP, str(tiny_clip.weights))
    copy = tmp_path / "same.pt"
    copy.write_bytes(tiny_clip.weights.read_bytes())
    assert clip_identity(TINY_CLIP, str(copy)) == file_id  # by content, not by path
    others = {clip_identity(TINY_CLIP, None), clip_identity(TINY_CLIP, None, seed=1),
              clip_identity("ViT-B-32", "openai"), clip_identity(TINY_CLIP, str(tiny_clip.weights), extra={"fold": 0})}
    assert len(others) == 4 and file_id not in others


def test_encoders_give_unit_rows_and_stream_equals_array(tiny_clip, trained):
    model, pre, tokenizer = trained
    text = encode_texts(model, tokenizer, tiny_clip.prompts[:10], batch_size=4)
    img = encode_images(model, pre, tiny_clip.images[:10], batch_size=4)
    paths = [tiny_clip.data / "train" / "images" / f"{i}.png" for i in tiny_clip.img_ids[:10]]
    streamed = encode_images(model, pre, paths, batch_size=3)
    for f in (text, img, streamed):
        assert f.shape == (10, 64) and f.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(streamed, img, atol=1e-6)  # the same decoded pixels either way
    assert encode_texts(model, tokenizer, []).shape == (0, 64)


def test_cached_text_features_hit_and_invalidation(tmp_path, tiny_clip, trained):
    model, _, tokenizer = trained
    calls = []

    def compute(texts):
        calls.append(len(texts))
        return encode_texts(model, tokenizer, texts)

    ident = clip_identity(TINY_CLIP, str(tiny_clip.weights))
    texts = tiny_clip.prompts[:12]
    first = cached_text_features(tmp_path, ident, texts, compute, chunk=5)
    assert calls == [5, 5, 2] and first.dtype == np.float16 and isinstance(first, np.memmap)
    np.testing.assert_allclose(first, encode_texts(model, tokenizer, texts), atol=2e-3)
    knn_features._MEMO.clear()  # read back from the file, not this process's memo
    again = cached_text_features(tmp_path, ident, texts, compute)
    assert calls == [5, 5, 2] and np.array_equal(again, first)
    cached_text_features(tmp_path, ident, texts[:11] + ["another prompt"], compute)
    cached_text_features(tmp_path, clip_identity(TINY_CLIP, None), texts, compute)
    assert calls == [5, 5, 2, 12, 12]
    assert len(list((tmp_path / TEXT_FEATURES_DIR).glob("*.npy"))) == 3


def test_finetune_lowers_the_loss_and_separates_true_pairs(tiny_clip, trained):
    model, pre, tokenizer = trained
    start, _, _ = load_clip(TINY_CLIP)
    x = torch.from_numpy(tiny_clip.images).permute(0, 3, 1, 2).float() / 255
    tokens = tokenizer(tiny_clip.prompts)
    with torch.no_grad():
        before, after = (float(contrastive_loss(m, tokens, x, pre)) for m in (start, model))
    assert after < before - 0.5, (before, after)
    assert np.mean(tiny_clip.losses[-5:]) < np.mean(tiny_clip.losses[:5])
    auc = pair_auc(encode_images(model, pre, tiny_clip.images), encode_texts(model, tokenizer, tiny_clip.prompts))
    print(f"true-vs-shuffled pair AUC after {len(tiny_clip.losses)} steps: {auc:.3f}")
    assert auc >= 0.75


def test_finetune_is_deterministic(tiny_clip):
    states = []
    for _ in range(2):
        model, pre, tokenizer = load_clip(TINY_CLIP)
        model, losses = finetune_contrastive(model, tokenizer, pre, tiny_clip.images[:16], tiny_clip.prompts[:16],
                                             steps=3, lr=1e-3, batch_size=8, seed=5)
        states.append(model.state_dict())
    assert len(losses) == 3
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
