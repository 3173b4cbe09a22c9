"""A tiny randomly initialised Stable Diffusion 2 pipeline, saved as a local pipeline folder.

Real diffusers / transformers classes at toy sizes (a few hundred thousand weights): the code
path of `python -m datagen.generate --model DIR` is exactly the one a real SD2 folder takes, and
a 32-px image in 2 steps renders in a fraction of a second on a CPU. Like the 768-v model it
predicts v (`prediction_type="v_prediction"`) and uses linear attention projections.
"""
import json
from pathlib import Path

import torch


def _bytes_to_unicode():
    """GPT-2 / CLIP byte-level alphabet: 256 printable characters standing for the 256 bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


# A handful of merges, so BPE really merges something ("the", "of", ...).
MERGES = ["t h", "th e</w>", "o f</w>", "a n", "an d</w>", "i n</w>", "p h", "ph o", "pho t", "phot o</w>"]


def write_tokenizer_files(folder):
    """Hand-written vocab.json + merges.txt: every byte alone and word-final, the merges, the specials."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _bytes_to_unicode():
        vocab.setdefault(ch, len(vocab))
    for ch in _bytes_to_unicode():
        vocab.setdefault(ch + "</w>", len(vocab))
    for merge in MERGES:
        vocab.setdefault("".join(merge.split()), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    return len(vocab)


def build_tiny_sd_pipeline(out_dir, seed=0):
    """Build, `save_pretrained` into `out_dir` and return that folder."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out_dir = Path(out_dir)
    tok_dir = out_dir.parent / (out_dir.name + "_tokenizer_src")
    vocab_size = write_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=77)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=32))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
        sample_size=32)
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        prediction_type="v_prediction", algorithm_type="dpmsolver++", solver_order=2, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out_dir)
    return out_dir
