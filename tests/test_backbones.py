"""Local checkpoints load through the libraries' own loaders, at the config's image size."""
import pytest
import torch

from models.backbones import BackboneError, create_backbone

EVA = {"source": "timm", "name": "eva02_tiny_patch14_224", "pretrained": None, "kwargs": {}}


def test_timm_vit_follows_image_size_and_resamples_pos_embed_of_a_local_checkpoint(tmp_path):
    torch.manual_seed(0)
    src = create_backbone(EVA, 28).module  # image.size 28 -> a 2 x 2 patch grid, no kwargs needed
    assert src.pos_embed.shape[1] == 1 + 2 * 2
    path = tmp_path / "eva28.pt"
    torch.save(src.state_dict(), path)
    big = create_backbone({**EVA, "pretrained": str(path)}, 42).module  # 3 x 3 grid: interpolated by timm
    assert big.pos_embed.shape[1] == 1 + 3 * 3
    assert torch.equal(big.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert torch.equal(big.pos_embed[:, :1], src.pos_embed[:, :1])  # the class token's slot is kept
    with torch.no_grad():
        assert big(torch.zeros(1, 3, 42, 42)).shape == (1, src.num_features)


def test_open_clip_checkpoint_at_another_size_gets_resized_pos_embed(tmp_path):
    import open_clip

    from models.backbones import register_open_clip_configs

    register_open_clip_configs()
    clip = open_clip.create_model("demo-ViT-4L-192-p8", force_image_size=32)
    torch.save(clip.state_dict(), tmp_path / "clip32.pt")
    vis = create_backbone({"source": "open_clip", "name": "demo-ViT-4L-192-p8",
                           "pretrained": str(tmp_path / "clip32.pt"), "kwargs": {}}, 48).module.visual
    assert vis.positional_embedding.shape[0] == 1 + 6 * 6
    assert torch.equal(vis.conv1.weight, clip.visual.conv1.weight)


def test_cnn_checkpoint_with_a_classifier_loads_headless(tmp_path):
    import timm

    torch.manual_seed(0)
    full = timm.create_model("convnext_atto", num_classes=10)
    torch.save({"state_dict": full.state_dict()}, tmp_path / "cnx.pth")
    backbone = create_backbone({"source": "timm", "name": "convnext_atto", "pretrained": str(tmp_path / "cnx.pth"),
                                "kwargs": {}}, 32)
    loaded = backbone.module
    # headless: no classifier, the forward pass gives the pooled features, not 10 logits
    assert loaded.num_classes == 0 and isinstance(loaded.get_classifier(), torch.nn.Identity)
    assert not any(k.startswith("head.fc.") for k in loaded.state_dict())
    with torch.no_grad():
        assert loaded(torch.zeros(1, 3, 32, 32)).shape == (1, backbone.num_features) == (1, full.num_features)
    # every other weight is the checkpoint's
    own, src = loaded.state_dict(), full.state_dict()
    assert set(src) - set(own) == {"head.fc.weight", "head.fc.bias"}
    for k, v in own.items():
        assert torch.equal(v, src[k]), k


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    eva = create_backbone(EVA, 28).module
    torch.save(eva.state_dict(), tmp_path / "eva.pt")
    with pytest.raises(BackboneError, match=r"eva\.pt: weights do not fit the architecture"):
        create_backbone({"source": "timm", "name": "convnext_atto", "pretrained": str(tmp_path / "eva.pt"),
                         "kwargs": {}}, 32)
    cnx = create_backbone({"source": "timm", "name": "convnext_atto", "pretrained": None, "kwargs": {}}, 32).module
    torch.save(cnx.state_dict(), tmp_path / "cnx.pt")
    with pytest.raises(BackboneError, match=r"cnx\.pt: weights do not fit the architecture"):
        create_backbone({**EVA, "pretrained": str(tmp_path / "cnx.pt")}, 28)
