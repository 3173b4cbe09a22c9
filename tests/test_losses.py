"""models/net.py's training losses and embedding mapping against a hand computation (float64 numpy)."""
import numpy as np
import pytest
import torch
from torch import nn

from models.net import EmbeddingRegressor, training_loss


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 384))
    y /= np.linalg.norm(y, axis=1, keepdims=True)  # unit target embeddings
    z = rng.normal(size=(6, 384))
    mean = rng.normal(size=384) * 0.05
    std = rng.uniform(0.02, 0.08, size=384)
    return z, y, mean, std


def regressor(loss_type, mean, std):
    return EmbeddingRegressor(nn.Identity(), nn.Identity(), loss_type, mean, std, {})


def loss_of(loss_type, z, y, mean, std, **cfg):
    model = regressor(loss_type, mean, std)
    return training_loss(model, torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32),
                         {"type": loss_type, **cfg}).item()


def test_residual_mse(batch):
    z, y, mean, std = batch
    hand = np.mean(((y - mean) / std - z) ** 2)  # MSE on the standardised residual
    assert loss_of("residual_mse", z, y, mean, std) == pytest.approx(hand, rel=1e-5)
    assert loss_of("residual_mse", (y - mean) / std, y, mean, std) == pytest.approx(0.0, abs=1e-8)
    emb = regressor("residual_mse", mean, std).to_embedding(torch.tensor(z, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(emb, mean + z * std, rtol=1e-5, atol=1e-6)  # head output -> embedding


@pytest.mark.parametrize("mse_weight", [0.0, 0.5])
def test_cosine(batch, mse_weight):
    z, y, mean, std = batch
    cos = np.sum(z * y, axis=1) / (np.linalg.norm(z, axis=1) * np.linalg.norm(y, axis=1))
    hand = 1.0 - cos.mean() + mse_weight * np.mean((z - y) ** 2)
    assert loss_of("cosine", z, y, mean, std, mse_weight=mse_weight) == pytest.approx(hand, rel=1e-5)
    # scale-free without the MSE term: any positive multiple of the target scores 0
    assert loss_of("cosine", 3.0 * y, y, mean, std) == pytest.approx(0.0, abs=1e-6)
    assert loss_of("cosine", -y, y, mean, std) == pytest.approx(2.0, abs=1e-6)
    emb = regressor("cosine", mean, std).to_embedding(torch.tensor(z, dtype=torch.float32)).numpy()
    np.testing.assert_array_equal(emb, z.astype(np.float32))  # the head output is the embedding


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_of_half_precision_outputs_are_float32(batch, dtype):
    z, y, mean, std = batch
    zh = torch.tensor(z, dtype=torch.float32).to(dtype)
    z_rounded = zh.double().numpy()
    for loss_type in ("cosine", "residual_mse"):
        got = training_loss(regressor(loss_type, mean, std), zh, torch.tensor(y, dtype=torch.float32),
                            {"type": loss_type})
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(loss_of(loss_type, z_rounded, y, mean, std), rel=1e-6)
