"""Text embeddings cached by the text itself, so any set built from the same prompts reuses them.

One folder per embedder (named by its fingerprint) under the cache root:

    ROOT/<fingerprint[:16]>/cache.json                       embedder fingerprint, dim, format
    ROOT/<fingerprint[:16]>/shard-<stamp>.vectors.npy        float32 (n, dim), rows as the embedder returned them
    ROOT/<fingerprint[:16]>/shard-<stamp>.keys.npy           S64 (n,), sha256 hex of each row's UTF-8 text

Shards are immutable and written atomically, vectors first, keys last: a keys file marks its shard
complete, so a killed writer leaves at most an orphan vectors file that nothing reads. New texts
are appended as new shards (unique names), so several processes can fill one cache at once
without locks; `compact` merges the shards into one when they become many.
"""
import hashlib
import logging
import os
import time
import uuid
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.io import read_json, save_npy, write_json

log = logging.getLogger(__name__)

CACHE_META_FILE = "cache.json"
SHARD_PREFIX = "shard-"
KEYS_SUFFIX = ".keys.npy"
VECTORS_SUFFIX = ".vectors.npy"
CACHE_FORMAT = 1
COMPACT_ABOVE = 32  # shards; `embed` merges them when a cache holds more


def text_key(text):
    """The cache key of a text: sha256 hex of its UTF-8 bytes (the text exactly as embedded)."""
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest().encode("ascii")


class TextEmbeddingCache:
    """Rows of one embedder, keyed by text. `fingerprint` identifies the embedder's files."""

    def __init__(self, root, fingerprint, dim, about=None):
        self.root = Path(root)
        self.fingerprint = str(fingerprint)
        self.dim = int(dim)
        self.folder = self.root / self.fingerprint[:16]
        self.about = dict(about or {})
        self._shards = []  # indexed shard stems
        self._index = {}  # key -> (position in _shards, row)
        meta = self.folder / CACHE_META_FILE
        if meta.is_file():
            found = read_json(meta)
            if found.get("fingerprint") != self.fingerprint or int(found.get("dim", -1)) != self.dim:
                raise DataError(meta, f"cache of another embedder (fingerprint {found.get('fingerprint')}, "
                                      f"dim {found.get('dim')}); expected {self.fingerprint}, dim {self.dim}")

    # -- reading ---------------------------------------------------------------------------
    def _shard_stems(self):
        if not self.folder.is_dir():
            return []
        return sorted(p.name[: -len(KEYS_SUFFIX)] for p in self.folder.glob(f"{SHARD_PREFIX}*{KEYS_SUFFIX}"))

    def _refresh(self):
        """Index new complete shards (shards never change once complete); start over when
        another process compacted some away."""
        stems = self._shard_stems()
        if set(self._shards) - set(stems):
            self._shards, self._index = [], {}
        for stem in stems:
            if stem in self._shards:
                continue
            try:
                keys = np.load(self.folder / f"{stem}{KEYS_SUFFIX}")
            except FileNotFoundError:  # compacted away between listing and reading
                continue
            s = len(self._shards)
            self._shards.append(stem)
            for r, k in enumerate(keys.tolist()):
                self._index.setdefault(k, (s, r))

    def __len__(self):
        self._refresh()
        return len(self._index)

    def lookup(self, texts):
        """Return (float32 (N, dim) rows, bool (N,) found); rows of texts not cached are zero."""
        keys = [text_key(t) for t in texts]
        for _ in range(3):
            self._refresh()
            out = np.zeros((len(keys), self.dim), dtype=np.float32)
            hit = [(self._index[k], i) for i, k in enumerate(keys) if k in self._index]
            shard = np.array([h[0][0] for h in hit], dtype=np.int64)
            row = np.array([h[0][1] for h in hit], dtype=np.int64)
            pos = np.array([h[1] for h in hit], dtype=np.int64)
            found = np.zeros(len(keys), dtype=bool)
            try:
                for s in np.unique(shard):
                    rows, at = row[shard == s], pos[shard == s]
                    path = self.folder / f"{self._shards[s]}{VECTORS_SUFFIX}"
                    vec = np.load(path, mmap_mode="r")
                    if vec.ndim != 2 or vec.shape[1] != self.dim or rows.max() >= len(vec):
                        raise DataError(path, f"shape {vec.shape} does not match its keys (dim {self.dim})")
                    out[at] = vec[rows]
                    found[at] = True
                return out, found
            except FileNotFoundError:  # a concurrent `compact` removed a shard: index again
                self._shards, self._index = [], {}
        raise RuntimeError(f"{self.folder}: shards kept disappearing while reading")

    # -- writing ---------------------------------------------------------------------------
    def _ensure_folder(self):
        meta = self.folder / CACHE_META_FILE
        if not meta.is_file():
            write_json(meta, {"fingerprint": self.fingerprint, "dim": self.dim, "format": CACHE_FORMAT, **self.about})

    def _write_shard(self, keys, vectors):
        stem = f"{SHARD_PREFIX}{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        save_npy(self.folder / f"{stem}{VECTORS_SUFFIX}", np.asarray(vectors, dtype=np.float32))
        save_npy(self.folder / f"{stem}{KEYS_SUFFIX}", np.asarray(keys, dtype="S64"))  # last: marks complete
        return stem

    def add(self, texts, vectors):
        """Store rows for texts not cached yet (one new shard). Returns how many rows were written."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(f"{vectors.shape} vectors for {len(texts)} texts of dim {self.dim}")
        self._refresh()
        known = set(self._index)
        keys, rows = [], []
        for r, t in enumerate(texts):
            k = text_key(t)
            if k not in known:
                known.add(k)
                keys.append(k)
                rows.append(r)
        if keys:
            self._ensure_folder()
            self._write_shard(keys, vectors[rows])
        return len(keys)

    def embed(self, texts, embed_fn, chunk=4096, progress=False):
        """Rows for `texts` (float32 (N, dim)): cached ones read, the others embedded by
        `embed_fn(list_of_texts) -> (n, dim)` once per distinct text, in chunks stored as they
        finish (an interrupted run keeps what it embedded). Returns (rows, number embedded)."""
        from tqdm import tqdm

        texts = [str(t) for t in texts]
        out, found = self.lookup(texts)
        missing = list(dict.fromkeys(t for t, f in zip(texts, found) if not f))
        if missing:
            log.info("text cache %s: %d of %d texts cached, embedding %d", self.folder, int(found.sum()),
                     len(texts), len(missing))
            with tqdm(total=len(missing), desc="embed", unit="text", disable=not progress) as bar:
                for start in range(0, len(missing), chunk):
                    part = missing[start:start + chunk]
                    self.add(part, embed_fn(part))
                    bar.update(len(part))
            rest, found_now = self.lookup([t for t, f in zip(texts, found) if not f])
            if not found_now.all():
                raise RuntimeError(f"{self.folder}: rows just written cannot be read back")
            out[~found] = rest
            if len(self._shard_stems()) > COMPACT_ABOVE:
                self.compact()
        return out, len(missing)

    def compact(self, orphan_age_s=3600):
        """Merge all complete shards into one (duplicates dropped) and delete vectors files whose
        keys never came (a killed writer) after `orphan_age_s`. Returns the number of rows."""
        self._refresh()
        stems = list(self._shards)
        now = time.time()
        for vec in self.folder.glob(f"{SHARD_PREFIX}*{VECTORS_SUFFIX}"):
            keys = vec.with_name(vec.name[: -len(VECTORS_SUFFIX)] + KEYS_SUFFIX)
            try:
                if not keys.exists() and now - vec.stat().st_mtime > orphan_age_s:
                    vec.unlink()
            except FileNotFoundError:
                pass
        if len(stems) <= 1:
            return len(self._index)
        keys, parts, seen = [], [], set()
        try:
            for stem in stems:
                ks = np.load(self.folder / f"{stem}{KEYS_SUFFIX}")
                vec = np.load(self.folder / f"{stem}{VECTORS_SUFFIX}")
                take = [r for r, k in enumerate(ks.tolist()) if k not in seen and not seen.add(k)]
                keys.extend(ks[take].tolist())
                parts.append(vec[take])
        except FileNotFoundError:  # another process is compacting the same shards
            self._shards, self._index = [], {}
            return len(self)
        self._write_shard(keys, np.concatenate(parts))
        for stem in stems:  # the merged shard already holds every row, so readers never miss one
            for suffix in (KEYS_SUFFIX, VECTORS_SUFFIX):
                (self.folder / f"{stem}{suffix}").unlink(missing_ok=True)
        self._shards, self._index = [], {}
        return len(keys)
