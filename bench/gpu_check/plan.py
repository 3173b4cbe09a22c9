"""What the check measures, and at which sizes: the production models on a GPU, tiny members on the CPU."""
from dataclasses import dataclass, field

from models.config import load_config

# model key -> its production config; every setting is kept except the overrides below
MODELS = {
    "eva02_l": "configs/eva02_l.yaml",
    "vit_h14": "configs/vit_h14.yaml",
    "convnext_xxl": "configs/convnext_xxl.yaml",
}
RANDOM_INIT = ["backbone.pretrained=null"]  # no download; step time and memory do not depend on the weights

# --smoke: the smallest member of each family, at a few pixels, with the production settings otherwise
SMOKE_MEMBERS = {
    "eva02_l": ["backbone.name=eva02_tiny_patch14_224", "backbone.kwargs={img_size: 28, depth: 2}",
                "image.size=28"],
    "vit_h14": ["backbone.name=demo-ViT-4L-192-p8", "image.size=16"],
    "convnext_xxl": ["backbone.name=convnext_atto", "image.size=32"],
}
SMOKE_BATCH = 8


@dataclass(frozen=True)
class Scale:
    """Sizes of one run of the check."""

    steps: int  # timed micro-batches of the trainer and of the bare loop, per model
    images: int  # synthetic PNGs the streaming source decodes
    png_px: int  # their side
    sd2_px: int  # Stable Diffusion 2: image side, denoising steps, prompts per batch
    sd2_steps: int
    sd2_batch: int
    overrides: dict = field(default_factory=dict)  # model key -> config overrides


GPU = Scale(steps=10, images=256, png_px=768, sd2_px=512, sd2_steps=20, sd2_batch=8)
SMOKE = Scale(steps=2, images=8, png_px=96, sd2_px=32, sd2_steps=2, sd2_batch=2,
              overrides={k: v + [f"train.batch_size={SMOKE_BATCH}"] for k, v in SMOKE_MEMBERS.items()})


def model_config(key, scale, extra=()):
    """The production config of `key` at random init, with the scale's and the user's overrides."""
    return load_config(MODELS[key], RANDOM_INIT + scale.overrides.get(key, []) + list(extra))
