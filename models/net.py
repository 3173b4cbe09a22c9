"""Backbone + head regressing the 384-d prompt embedding, and the two training losses.

The model carries the training targets' mean and per-dimension std as buffers, so a fold
checkpoint alone turns head outputs into embeddings (`to_embedding`):
    cosine loss        head output is the embedding
    residual_mse loss  head output z is the standardised residual: embedding = mean + z * std
"""
import torch
import torch.nn.functional as F
from torch import nn

from core import EMBEDDING_DIM
from models.backbones import create_backbone, prefix_regex
from models.head_init import UnitInputLinear


def make_head(kind, in_features, hidden=1024, dropout=0.0, out_features=EMBEDDING_DIM, unit_input=False):
    """unit_input (head.init clip_text): the linear head reads the L2-normalised features (models/head_init.py)."""
    if kind == "linear":
        linear = UnitInputLinear if unit_input else nn.Linear
        return nn.Sequential(nn.Dropout(dropout), linear(in_features, out_features))
    if kind == "mlp":
        return nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_features),
        )
    raise ValueError(f"unknown head type {kind!r}")


class EmbeddingRegressor(nn.Module):
    def __init__(self, backbone, head, loss_type, target_mean, target_std, backbone_matcher):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.loss_type = loss_type
        self.register_buffer("target_mean", torch.as_tensor(target_mean, dtype=torch.float32).clone())
        self.register_buffer("target_std", torch.as_tensor(target_std, dtype=torch.float32).clone())
        self._backbone_matcher = backbone_matcher

    freeze_backbone = False  # set during linear-probe epochs

    def forward(self, x):
        if self.freeze_backbone:
            with torch.no_grad():
                feats = self.backbone(x)
            return self.head(feats)
        return self.head(self.backbone(x))

    def to_embedding(self, z):
        z = z.float()
        if self.loss_type == "residual_mse":
            return self.target_mean + z * self.target_std
        return z

    def group_matcher(self, coarse=False):
        """timm-style layer groups: the backbone's own, then the head as the top layer."""
        inner = self._backbone_matcher
        return {
            "stem": prefix_regex(inner["stem"], "backbone."),
            "blocks": [(prefix_regex(rx, "backbone."), o) for rx, o in inner["blocks"]]
            # backbone parameters its matcher leaves out (e.g. convnext's head.norm) sit just below our head
            + [(r"^backbone\.", (999998,)), (r"^head\.", (999999,))],
        }

    def backbone_parameters(self):
        return self.backbone.parameters()


def build_model(cfg, target_mean, target_std, load_weights=True):
    """The config's model; returns (model, preprocessing dict with mean/std/interpolation)."""
    bb = create_backbone(cfg["backbone"], cfg["image"]["size"], load_weights=load_weights)
    hcfg = cfg["head"]
    clip_init = hcfg.get("init") == "clip_text"
    head = make_head(hcfg["type"], bb.num_features, hcfg["hidden"], hcfg["dropout"], unit_input=clip_init)
    if clip_init and load_weights:  # a checkpoint (inference, resume) brings its own head
        init_head_from_clip_text(head, bb.num_features, cfg, target_mean, target_std)
    model = EmbeddingRegressor(bb.module, head, cfg["loss"]["type"], target_mean, target_std, bb.group_matcher)
    pre = {
        "mean": tuple(cfg["image"]["mean"] or bb.mean),
        "std": tuple(cfg["image"]["std"] or bb.std),
        "interpolation": cfg["image"]["interpolation"] or bb.interpolation,
    }
    return model, pre


def init_head_from_clip_text(head, num_features, cfg, target_mean, target_std):
    """The linear head set to the bank's CLIP-text -> MiniLM map (models/head_init.py)."""
    from models.head_init import clip_text_map, init_head_weights
    from models.schema import ConfigError

    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, c = clip_text_map(cfg["backbone"], cfg["head"]["init_bank"], cfg["data"]["cache_dir"], cfg["head"]["init_ridge"],
                         device=device)
    if a.shape[0] != num_features:
        raise ConfigError(f"head.init clip_text: the backbone gives {num_features} features but its text tower "
                          f"{a.shape[0]}; the head needs the CLIP-projected image embedding")
    init_head_weights(head[-1], a, c, cfg["loss"]["type"], target_mean, target_std)


def training_loss(model, z, targets, loss_cfg):
    """Loss between head outputs z and unit target embeddings."""
    if loss_cfg["type"] == "residual_mse":
        residual = (targets - model.target_mean) / model.target_std
        return F.mse_loss(z.float(), residual)
    pred = z.float()
    loss = 1.0 - F.cosine_similarity(pred, targets, dim=1).mean()
    if loss_cfg.get("mse_weight"):
        loss = loss + loss_cfg["mse_weight"] * F.mse_loss(pred, targets)
    return loss
