"""Load a Stable Diffusion 2 pipeline and render a batch of prompts, one seeded generator per image.

Each image's initial latent comes from its own CPU torch.Generator seeded from its id, so an
image does not depend on its batch neighbours, the batch size, the GPU or the shard. Batched
kernels are not bit-identical to unbatched ones, so across batch sizes pixels may differ by a
few levels; the same id, settings and batch size on the same machine give identical bytes.
"""
import logging
from pathlib import Path

import numpy as np

from core.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "stabilityai/stable-diffusion-2"  # the 768-v model; "-base" is the 512 one
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # torch attribute names (torch loads lazily)
# name -> (diffusers class, config overrides); "model" keeps the pipeline folder's own scheduler.
SCHEDULERS = {
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                     "use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "model": (None, {}),
}


def resolve_device(device="auto", local_rank=None):
    """'auto' -> cuda[:LOCAL_RANK] when a GPU is visible, else cpu; 'cuda' under torchrun -> cuda:LOCAL_RANK."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and local_rank is not None:
        device = f"cuda:{local_rank}"
    return torch.device(device)


def resolve_dtype(dtype, device):
    """'auto' -> fp16 on a GPU, fp32 on the CPU. Half precision on the CPU is refused (slow, unsupported ops)."""
    if dtype == "auto":
        dtype = "fp16" if device.type == "cuda" else "fp32"
    if dtype != "fp32" and device.type != "cuda":
        raise ValueError(f"--dtype {dtype} needs a GPU (--device cuda); use fp32 on {device}")
    import torch

    return getattr(torch, DTYPES[dtype])


def quiet_libraries():
    """Prompts longer than CLIP's 77 tokens are truncated by design: a warning per batch is noise, and
    so are diffusers' / transformers' per-component loading bars beside the generation progress bar."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def load_pipeline(model, device, dtype, scheduler="dpm++", variant=None, quiet=True):
    """A StableDiffusionPipeline on `device` with SDPA attention, no safety checker, no inner progress bar."""
    import diffusers
    from diffusers import StableDiffusionPipeline
    from diffusers.models.attention_processor import AttnProcessor2_0

    if quiet:
        quiet_libraries()

    local = Path(model)
    # A hub id is exactly "owner/name"; anything else that is not a folder is a missing folder.
    if not local.is_dir() and (local.is_absolute() or str(model).startswith(".") or len(local.parts) != 2):
        raise DataError(model, "pipeline folder not found (give a local folder or a hub id such as "
                        f"{DEFAULT_MODEL})")
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            str(model), dtype=dtype, variant=variant, safety_checker=None, requires_safety_checker=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(model, f"cannot load a Stable Diffusion pipeline ({type(e).__name__}: {e})") from e
    cls_name, overrides = SCHEDULERS[scheduler]
    if cls_name:
        cls = getattr(diffusers, cls_name)
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)
    # PyTorch's fused scaled_dot_product_attention (flash / memory-efficient kernels on GPU).
    # diffusers picks it by default; set it explicitly so a folder saved with another processor
    # cannot silently fall back to the slow path.
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def native_size(pipe):
    """The resolution the model was trained at (768 for SD2 768-v, 512 for SD2-base)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def render_batch(pipe, prompts, seeds, size, steps=20, guidance=7.5, negative_prompt=None):
    """float32 (B, size, size, 3) in [0, 1] for `prompts`, image i from torch.Generator(seeds[i])."""
    import torch

    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    negative = [negative_prompt] * len(prompts) if negative_prompt else None
    with torch.inference_mode():
        out = pipe(prompt=list(prompts), negative_prompt=negative, height=size, width=size,
                   num_inference_steps=steps, guidance_scale=guidance, generator=generators, output_type="np")
    return np.asarray(out.images, dtype=np.float32)
