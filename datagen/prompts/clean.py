"""Prompt cleaning and token lengths.

`clean_prompt`: Unicode NFKC; whitespace of any kind (tabs, newlines, no-break spaces, U+2028...)
becomes one space; other invisible characters (control, format, private-use, unassigned) are
removed; ends stripped. A prompt left with no letter or digit counts as empty.

Lengths count the model's start/end tokens, as its context limit does:
    MiniLM (the target embedder)  [CLS] + word pieces + [SEP]; it reads at most 256 (max_seq_length)
    CLIP (SD2's text encoder)     <start> + BPE tokens + <end>; SD2 reads at most 77
"""
import functools
import re
import unicodedata

import numpy as np

_SPACES = re.compile(r"\s+")
CLIP_CONTEXT = 77  # Stable Diffusion 2's text context, start and end tokens included
MINILM_MAX_SEQ = 256  # all-MiniLM-L6-v2's max_seq_length: the embedder truncates longer prompts


def clean_prompt(text):
    """The cleaned prompt, or "" when nothing printable with a letter or digit is left."""
    t = unicodedata.normalize("NFKC", str(text))
    if not t.isprintable():
        t = "".join(ch if ch.isprintable() else (" " if ch.isspace() else "") for ch in t)
    t = _SPACES.sub(" ", t).strip()
    return t if any(ch.isalnum() for ch in t) else ""


@functools.lru_cache(maxsize=2)
def minilm_tokenizer(embedder_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(embedder_path))
    tok.model_max_length = 1 << 30  # only counting: no "longer than the model" warnings
    return tok


def minilm_lengths(texts, embedder_path, chunk=8192):
    """MiniLM sequence lengths ([CLS] and [SEP] included), int64 (N,)."""
    out = np.zeros(len(texts), dtype=np.int64)
    if not len(texts):
        return out
    tok = minilm_tokenizer(embedder_path)
    for start in range(0, len(texts), chunk):
        ids = tok(list(texts[start:start + chunk]), add_special_tokens=True, return_attention_mask=False,
                  return_token_type_ids=False)["input_ids"]
        out[start:start + len(ids)] = [len(x) for x in ids]
    return out


@functools.lru_cache(maxsize=1)
def clip_tokenizer():
    # open_clip ships the CLIP BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) in its package:
    # the same vocabulary and text cleaning as SD2's OpenCLIP ViT-H text encoder, offline.
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def clip_lengths(texts):
    """CLIP sequence lengths (<start> and <end> included), int64 (N,)."""
    if not len(texts):
        return np.zeros(0, dtype=np.int64)
    tok = clip_tokenizer()
    return np.array([len(tok.encode(t)) + 2 for t in texts], dtype=np.int64)
