"""Image backbones from timm and open_clip, behind one registry.

`create_backbone(section, image_size)` returns a `Backbone`: the feature extractor (an
nn.Module mapping (B, 3, S, S) -> (B, F)), its feature width, the model's own preprocessing
(mean / std / interpolation) and a timm-style `group_matcher` for layer-wise LR decay.

Weights (`pretrained`): null -> random init; a string naming an existing file -> a local
checkpoint (Kaggle notebooks run offline); otherwise a pretrained tag the library downloads
(timm: true or a name carrying its tag; open_clip: a tag such as "laion2b_s32b_b79k").
Local files load through the libraries' own loaders (timm `pretrained_cfg_overlay=dict(file=...)`,
open_clip's `load_checkpoint`), so each model's checkpoint filter runs (original-format keys,
position embeddings resized to `image.size`: train above the pretraining resolution), then our
own check lists what does not fit; a timm model is then given the checked weights, unwrapped
(`model.` / `module.` prefixes), which timm's loader would skip.
"""
import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.errors import InputError

OPEN_CLIP_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "open_clip"


class BackboneError(InputError):
    """A backbone that cannot be built as configured (unknown name or tag, weights that do not fit)."""


def _closest(name, names):
    close = difflib.get_close_matches(str(name), list(names), n=5, cutoff=0.6)
    return f"; closest names: {close}" if close else ""


def check_timm_name(name, pretrained):
    """A clear error, with the closest valid names or tags, unless timm knows `name` (arch or arch.tag)."""
    import timm
    from timm.models import split_model_name_tag

    arch, tag = split_model_name_tag(str(name))
    if not timm.is_model(arch):
        raise BackboneError(f"unknown timm model {name!r}{_closest(arch, timm.list_models())}")
    tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*") if n.split(".", 1)[0] == arch]
    if tag and tag not in tags:
        raise BackboneError(f"timm model {arch!r} has no pretrained tag {tag!r}; its tags: {tags or 'none'}")
    if isinstance(pretrained, str) and not _is_file_ref(pretrained) and not Path(pretrained).is_file():
        hint = f" (write name: {arch}.{pretrained})" if pretrained in tags else f"; its tags: {tags or 'none'}"
        raise BackboneError(f"timm backbone {name!r}: pretrained {pretrained!r} is neither true nor a checkpoint "
                            f"file; timm takes the tag in the name{hint}")
    if pretrained is True and not tags:
        raise BackboneError(f"timm model {arch!r} has no pretrained weights; use pretrained: null (random init) "
                            f"or a local checkpoint file")


def check_open_clip_name(name, pretrained):
    """A clear error, with the closest valid names or tags, unless open_clip knows `name` and its tag."""
    import open_clip

    register_open_clip_configs()
    if name not in open_clip.list_models():
        raise BackboneError(f"unknown open_clip model {name!r}{_closest(name, open_clip.list_models())} "
                            f"(or add its JSON config to {OPEN_CLIP_CONFIG_DIR})")
    if not pretrained or (isinstance(pretrained, (str, os.PathLike)) and (_is_file_ref(pretrained)
                                                                          or Path(pretrained).is_file())):
        return
    tags = open_clip.list_pretrained_tags_by_model(name)
    if not isinstance(pretrained, str) or pretrained not in tags:
        raise BackboneError(f"open_clip model {name!r} has no pretrained tag {pretrained!r}; its tags: "
                            f"{tags or 'none (use null for random init, or a local checkpoint file)'}")


def check_backbone(section, load_weights=True):
    """Check a backbone section's source, name and pretrained tag without building it (fast: no weights)."""
    source = section.get("source")
    if source not in BACKBONE_SOURCES:
        raise BackboneError(f"unknown backbone source {source!r}; known: {sorted(BACKBONE_SOURCES)}")
    check = check_timm_name if source == "timm" else check_open_clip_name
    check(section.get("name"), section.get("pretrained") if load_weights else None)


@dataclass
class Backbone:
    module: nn.Module
    num_features: int
    mean: tuple
    std: tuple
    interpolation: str
    group_matcher: dict  # timm format: {"stem": regex, "blocks": [(regex, ordinal), ...]}


BACKBONE_SOURCES = {}


def register_source(name):
    def wrap(fn):
        BACKBONE_SOURCES[name] = fn
        return fn

    return wrap


def create_backbone(section, image_size, load_weights=True):
    """Build the backbone a config's `backbone:` section names (weights skipped if not load_weights)."""
    source = section["source"]
    if source not in BACKBONE_SOURCES:
        raise BackboneError(f"unknown backbone source {source!r}; known: {sorted(BACKBONE_SOURCES)}")
    pretrained = section.get("pretrained") if load_weights else None
    return BACKBONE_SOURCES[source](section, image_size, pretrained)


def _is_file_ref(pretrained):
    return isinstance(pretrained, (str, os.PathLike)) and (
        os.path.sep in str(pretrained) or str(pretrained).endswith((".pt", ".pth", ".bin", ".safetensors"))
    )


def read_state_dict(path):
    """A state dict from a .safetensors / .pt / .pth / .bin file (common wrappers unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"{path}: checkpoint file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BackboneError(f"{path}: cannot be read as a checkpoint ({type(e).__name__}: {e})") from e
    for key in ("state_dict", "model", "module", "model_state"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BackboneError(f"{path}: holds a {type(state).__name__}, not a state dict")
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def check_state_fits(module, state, path, ignore_prefixes=()):
    """A clear error listing what of `state` does not fit `module` (missing, unexpected, wrong shape)."""
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                   if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        raise BackboneError(
            f"{path}: weights do not fit the architecture: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(wrong_shape)} of wrong shape "
            f"(e.g. {wrong_shape[:2]})"
        )
    return state


TIMM_HEAD_PREFIXES = ("head.fc.", "fc.", "classifier.", "head.weight", "head.bias")


def _create_timm_model(name, image_size, kwargs, pretrained=False, local_file=None):
    """timm.create_model, headless, at the config's image size where the architecture takes one.

    ViT-like models get `img_size=image_size`: timm resamples the position embeddings of the
    weights it loads (hub or local file) to that grid, so a model pretrained at 336 px trains at
    448 px. CNNs take no img_size and run at any size.
    """
    import timm

    kw = dict(num_classes=0, **kwargs)
    if local_file:  # timm's own loader: the model's checkpoint filter (key remaps, pos-embed resize) runs
        kw["pretrained_cfg_overlay"] = {"file": str(local_file)}
    if "img_size" not in kwargs:
        try:
            return timm.create_model(name, pretrained=pretrained, img_size=image_size, **kw)
        except TypeError as e:
            if "img_size" not in str(e):
                raise
    return timm.create_model(name, pretrained=pretrained, **kw)


def check_timm_checkpoint(model, path):
    """Our own strict check after timm's loader, which only logs what it skips for headless models.

    The file's state dict goes through the model's checkpoint filter (as timm's loader does), then
    every key of the model must be there with its shape, and nothing else but classifier weights.
    Returns the checked state dict, unwrapped (read_state_dict) and filtered.
    """
    import sys

    state = read_state_dict(path)
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as e:  # a filter meeting keys of another architecture fails on them: list those
            check_state_fits(model, state, path, ignore_prefixes=TIMM_HEAD_PREFIXES)
            raise BackboneError(f"{path}: {type(model).__name__}'s checkpoint filter failed on it "
                                f"({type(e).__name__}: {e})") from e
    return check_state_fits(model, state, path, ignore_prefixes=TIMM_HEAD_PREFIXES)


@register_source("timm")
def create_timm_backbone(section, image_size, pretrained):
    import timm

    name = section["name"]
    kwargs = dict(section.get("kwargs") or {})
    if section.get("drop_path_rate"):
        kwargs["drop_path_rate"] = section["drop_path_rate"]
    check_timm_name(name, pretrained)
    local = Path(pretrained) if pretrained and _is_file_ref(pretrained) else None
    if local is not None and not local.is_file():
        raise BackboneError(f"{local}: checkpoint file not found")
    try:
        model = _create_timm_model(name, image_size, kwargs, pretrained=bool(pretrained), local_file=local)
    except (RuntimeError, KeyError, ValueError) as e:
        if local is None:
            raise BackboneError(f"timm model {name!r} could not be created: {e}") from e
        # timm's loader failed on the file: say what does not fit, in our words
        check_timm_checkpoint(_create_timm_model(name, image_size, kwargs), local)
        raise BackboneError(f"{local}: timm could not load it into {name!r} ({type(e).__name__}: {e})") from e
    if local is not None:
        # timm's loader reads the file as it is: keys wrapped in "model." / "module." fit nothing and it skips
        # them all without an error (a headless model loads non-strictly). Load the checked, unwrapped weights.
        state = check_timm_checkpoint(model, local)
        model.load_state_dict({k: state[k] for k in model.state_dict()})
    if section.get("grad_checkpointing"):
        model.set_grad_checkpointing(True)
    data_cfg = timm.data.resolve_data_config({}, model=model)
    return Backbone(model, model.num_features, tuple(data_cfg["mean"]), tuple(data_cfg["std"]),
                    data_cfg.get("interpolation", "bicubic"), model.group_matcher(coarse=False))


def register_open_clip_configs(config_dir=OPEN_CLIP_CONFIG_DIR):
    """Our own open_clip model configs (JSON data, like open_clip's) become creatable by name."""
    import open_clip

    if Path(config_dir).is_dir():
        for path in sorted(Path(config_dir).glob("*.json")):
            if path.stem not in open_clip.list_models():
                open_clip.add_model_config(path)


class OpenClipVisual(nn.Module):
    """open_clip's image tower (the text tower is dropped after loading)."""

    def __init__(self, visual):
        super().__init__()
        self.visual = visual

    def forward(self, x):
        return self.visual(x)


def _open_clip_group_matcher(visual):
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and hasattr(trunk, "group_matcher"):  # a timm model wrapped by open_clip
        inner = trunk.group_matcher(coarse=False)
        return {
            "stem": prefix_regex(inner["stem"], "visual.trunk."),
            "blocks": [(prefix_regex(rx, "visual.trunk."), ordinal) for rx, ordinal in inner["blocks"]]
            + [(r"^visual\.head", (99999,))],
        }
    return {
        "stem": r"^visual\.(?:conv1|class_embedding|positional_embedding|ln_pre|patch_dropout)",
        "blocks": [(r"^visual\.transformer\.resblocks\.(\d+)", None),
                   (r"^visual\.(?:ln_post|proj|attn_pool)", (99999,))],
    }


def prefix_regex(rx, prefix):
    """Re-anchor a group_matcher regex under a module prefix: '^stem|^norm' -> '^trunk\\.(?:stem|norm)'."""
    import re

    body = re.sub(r"(^|\|)\^", r"\1", rx)  # drop the alternatives' own anchors
    return f"^{re.escape(prefix)}(?:{body})"


def create_open_clip_model(name, pretrained, image_size=None, kwargs=None, device="cpu"):
    """The whole open_clip model (both towers): name and tag checked, a local file loaded by open_clip's loader."""
    import open_clip

    check_open_clip_name(name, pretrained)
    if pretrained and _is_file_ref(pretrained) and not Path(pretrained).is_file():
        raise BackboneError(f"{pretrained}: checkpoint file not found")
    try:
        return open_clip.create_model(name, pretrained=pretrained or None, force_image_size=image_size,
                                      device=device, **dict(kwargs or {}))
    except RuntimeError as e:  # state-dict mismatches surface as RuntimeError
        raise BackboneError(f"open_clip {name!r} with weights {pretrained!r}: weights do not fit ({e})") from e


@register_source("open_clip")
def create_open_clip_backbone(section, image_size, pretrained):
    import open_clip

    model = create_open_clip_model(section["name"], pretrained, image_size, section.get("kwargs"))
    visual = model.visual
    cfg = open_clip.get_model_preprocess_cfg(model)
    del model  # drop the text tower
    if section.get("grad_checkpointing") and hasattr(visual, "set_grad_checkpointing"):
        visual.set_grad_checkpointing(True)
    wrapped = OpenClipVisual(visual)
    return Backbone(wrapped, visual.output_dim, tuple(cfg["mean"]), tuple(cfg["std"]),
                    cfg.get("interpolation", "bicubic"), _open_clip_group_matcher(visual))
