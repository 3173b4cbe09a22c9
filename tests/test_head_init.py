"""head.init clip_text: the bank's CLIP-text -> MiniLM least-squares map as the linear head's starting weights."""
import numpy as np
import pytest
import torch

from core.metric import l2_normalize
from models.config import ConfigError, config_hash, load_config
from models.head_init import HEAD_INIT_DIR, UnitInputLinear, bank_identity, clip_text_map, fit_linear_map
from models.net import build_model
from tests.clip_fixtures import TINY_CLIP


def test_fit_recovers_a_planted_linear_relation():
    rng = np.random.default_rng(0)
    x = l2_normalize(rng.normal(size=(3000, 64))).astype(np.float16)  # like the cached text features
    a, c = rng.normal(size=(64, 384)), rng.normal(size=384)
    y = x.astype(np.float64) @ a + c + 1e-3 * rng.normal(size=(3000, 384))
    fa, fc = fit_linear_map(x, y, ridge=1e-8)
    np.testing.assert_allclose(fa, a, atol=0.02)
    np.testing.assert_allclose(fc, c, atol=0.005)
    ca, cc = fit_linear_map(x, y, ridge=1e-8, chunk=700)  # accumulated over chunks: the same solution
    np.testing.assert_allclose(ca, fa, atol=1e-4)
    np.testing.assert_allclose(cc, fc, atol=1e-4)


def _cfg(tiny_clip, cache_dir, *extra):
    return load_config("configs/vit_demo.yaml", [
        f"backbone.name={TINY_CLIP}", f"backbone.pretrained={tiny_clip.weights}", "image.size=32",
        "head.type=linear", "head.init=clip_text", f"head.init_bank={tiny_clip.data / 'train' / 'prompts.csv'}",
        f"data.cache_dir={cache_dir}", *extra])


@pytest.fixture(scope="module")
def fitted(tiny_clip, tmp_path_factory):
    """(cache folder, A, c): the map fitted once on the demo prompts as the bank."""
    cache = tmp_path_factory.mktemp("head_init")
    cfg = _cfg(tiny_clip, cache)
    a, c = clip_text_map(cfg["backbone"], cfg["head"]["init_bank"], cfg["data"]["cache_dir"])
    return cache, a, c


def test_the_map_is_the_fit_of_the_banks_features(tiny_clip, fitted, monkeypatch):
    from core.targets import embed_prompts
    from models import clip_towers
    from models.clip_towers import encode_texts, load_clip

    cache, a, c = fitted
    cfg = _cfg(tiny_clip, cache)
    model, _, tokenizer = load_clip(TINY_CLIP, str(tiny_clip.weights))
    feats = encode_texts(model, tokenizer, tiny_clip.prompts).astype(np.float16)  # cached as float16
    ra, rc = fit_linear_map(feats, embed_prompts(tiny_clip.prompts))
    assert a.shape == (64, 384) and c.shape == (384,)
    np.testing.assert_allclose(a, ra, atol=1e-4 * np.abs(ra).max())
    np.testing.assert_allclose(c, rc, atol=1e-4 * np.abs(ra).max())
    monkeypatch.setattr(clip_towers, "load_clip", lambda *a, **k: pytest.fail("the fit was cached"))
    again = clip_text_map(cfg["backbone"], cfg["head"]["init_bank"], cfg["data"]["cache_dir"])
    assert np.array_equal(again[0], a) and np.array_equal(again[1], c)
    assert len(list((cache / HEAD_INIT_DIR).glob("*.npy"))) == 1
    monkeypatch.undo()
    stronger = clip_text_map(cfg["backbone"], cfg["head"]["init_bank"], cfg["data"]["cache_dir"], ridge=1.0)
    assert len(list((cache / HEAD_INIT_DIR).glob("*.npy"))) == 2 and np.abs(stronger[0]).max() < np.abs(a).max()


@pytest.mark.parametrize("loss", ["cosine", "residual_mse"])
def test_the_head_starts_with_the_map(tiny_clip, fitted, loss):
    from models.augment import normalize
    from models.clip_towers import encode_images, load_clip

    cache, a, c = fitted
    cfg = _cfg(tiny_clip, cache, f"loss.type={loss}")
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=384) * 0.05, 0.05 + rng.random(384) * 0.05
    model, pre = build_model(cfg, mean, std)
    assert isinstance(model.head[-1], UnitInputLinear)
    x = torch.from_numpy(tiny_clip.images[:16]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        pred = model.to_embedding(model.eval()(normalize(x, pre["mean"], pre["std"]))).numpy()
    clip, clip_pre, _ = load_clip(TINY_CLIP, str(tiny_clip.weights))
    expected = encode_images(clip, clip_pre, tiny_clip.images[:16]) @ a + c
    np.testing.assert_allclose(pred, expected, atol=1e-4)


def test_inference_builds_the_head_without_the_bank(tiny_clip, tmp_path):
    cfg = _cfg(tiny_clip, tmp_path, f"head.init_bank={tmp_path / 'no_bank.csv'}")
    model, _ = build_model(cfg, np.zeros(384), np.ones(384), load_weights=False)  # a checkpoint brings the head
    assert isinstance(model.head[-1], UnitInputLinear) and "head.1.weight" in model.state_dict()
    assert not (tmp_path / HEAD_INIT_DIR).exists()


@pytest.mark.parametrize("override, message", [
    (["backbone.source=timm", "backbone.name=eva02_tiny_patch14_224"], "timm backbones drop"),
    (["head.type=mlp"], "set head.type: linear"),
    (["head.init_bank=null"], "needs head.init_bank"),
    (["model=knn", "knn.features_from=x"], "is for model: backbone"),
])
def test_config_errors(tiny_clip, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(tiny_clip, tmp_path, *override)


def test_hash_holds_the_init_and_the_banks_content(tiny_clip, tmp_path):
    cfg = _cfg(tiny_clip, tmp_path)
    plain = load_config("configs/vit_demo.yaml", [f"backbone.name={TINY_CLIP}",
                                                  f"backbone.pretrained={tiny_clip.weights}", "image.size=32",
                                                  "head.type=linear", f"data.cache_dir={tmp_path}"])
    assert config_hash(cfg) != config_hash(plain)
    assert config_hash(_cfg(tiny_clip, tmp_path, "head.init_ridge=1")) != config_hash(cfg)
    bank = tmp_path / "bank.csv"
    bank.write_text("imgId,prompt\na,one prompt\n")
    first = bank_identity(bank)
    bank.write_text("imgId,prompt\na,another prompt\n")
    assert bank_identity(bank) != first
