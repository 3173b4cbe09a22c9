"""Prompt sources: `NAME=PATH[:weight]`, each a file or a folder of files, read as raw text rows.

Formats, chosen by extension unless `--format NAME=...` says otherwise:
    lines    .txt and anything else: one prompt per line
    csv      .csv (quoted CSV)          -- column: --column NAME=COLUMN_NAME, or an INDEX for a headerless file
    tsv      .tsv .tab (raw tab-separated, quotes kept as text); a .txt source with --column is read as tsv
    parquet  .parquet .pq
    coco     .json: COCO captions (annotations[].caption) or a JSON list of strings
Without --column, tables use the first column named prompt / prompts / text / caption (any
case), or their only column.
"""
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.errors import DataError

FORMATS = ("lines", "csv", "tsv", "parquet", "coco")
_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet", ".json": "coco"}
_FOLDER_SUFFIXES = {".txt", ".csv", ".tsv", ".tab", ".parquet", ".pq", ".json"}
PROMPT_COLUMNS = ("prompt", "prompts", "text", "caption")


@dataclass
class Source:
    name: str
    path: Path
    weight: float = 1.0
    column: object = None  # column name (str), index (int) or None: auto
    format: str = None  # None: by extension
    cap: int = None
    files: list = field(default_factory=list)  # filled by read_source


def parse_source(spec):
    """`NAME=PATH[:weight]` -> Source. The weight is the part after the last ':' when it is a number."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--source {spec!r}: expected NAME=PATH[:weight]")
    path, weight = rest, 1.0
    head, colon, tail = rest.rpartition(":")
    if colon and head:
        try:
            weight = float(tail)
            path = head
        except ValueError:
            pass
    if not (weight >= 0 and math.isfinite(weight)):
        raise ValueError(f"--source {spec!r}: weight must be a finite number >= 0")
    return Source(name=name, path=Path(path), weight=weight)


def parse_column(value):
    """A column argument: an integer is a 0-based index into a headerless table, anything else a name."""
    value = str(value)
    return int(value) if value.lstrip("-").isdigit() else value


def source_files(source):
    """The files a source reads, in order (a folder: its prompt files, sorted, dotfiles skipped)."""
    path = source.path
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and (source.format or p.suffix.lower() in _FOLDER_SUFFIXES))
        if not files:
            raise DataError(path, f"folder holds no prompt files ({' '.join(sorted(_FOLDER_SUFFIXES))})")
        return files
    raise DataError(path, f"source {source.name!r}: file or folder not found")


def file_format(path, source):
    if source.format:
        return source.format
    fmt = _BY_SUFFIX.get(path.suffix.lower(), "lines")
    return "tsv" if fmt == "lines" and source.column is not None else fmt


def read_source(source, limit=None):
    """All raw prompt rows of a source (strings, not cleaned), at most `limit` of them."""
    rows = []
    source.files = []
    for path in source_files(source):
        if limit is not None and len(rows) >= limit:
            break
        fmt = file_format(path, source)
        source.files.append({"path": str(path), "format": fmt})
        left = None if limit is None else limit - len(rows)
        rows.extend(read_file(path, fmt, source.column, left))
    return rows


def read_file(path, fmt, column=None, limit=None):
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if fmt == "lines":
        rows = _read_lines(path)
    elif fmt in ("csv", "tsv"):
        rows = _read_table(path, fmt, column, limit)
    elif fmt == "parquet":
        rows = _read_parquet(path, column)
    elif fmt == "coco":
        rows = _read_json(path)
    else:
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    rows = ["" if r is None else str(r) for r in rows]
    return rows if limit is None else rows[:limit]


def _read_lines(path):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e})") from e
    # Split on newlines only: str.splitlines would also cut at U+2028, form feeds, etc. inside a prompt.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _pick_column(path, columns, column):
    if isinstance(column, int):
        if not -len(columns) <= column < len(columns):
            raise DataError(path, f"column index {column} out of range: the file has {len(columns)} column(s)")
        return columns[column]
    if column is not None:
        if column not in columns:
            raise DataError(path, f"no column {column!r}; found {list(columns)}")
        return column
    lower = {str(c).lower(): c for c in columns}
    for cand in PROMPT_COLUMNS:
        if cand in lower:
            return lower[cand]
    if len(columns) == 1:
        return columns[0]
    raise DataError(path, f"which column holds the prompts? found {list(columns)}; pass --column NAME=COLUMN")


def _read_table(path, fmt, column, limit):
    headerless = isinstance(column, int)
    kw = {"sep": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {"sep": ","}
    try:
        frame = pd.read_csv(path, header=None if headerless else 0, dtype=str, keep_default_na=False,
                            nrows=limit, encoding="utf-8-sig", **kw)
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e})") from e
    except Exception as e:  # pandas raises several types for unparsable files
        raise DataError(path, f"cannot be parsed as {fmt.upper()}: {e}") from e
    return frame[_pick_column(path, list(frame.columns), column)].tolist()


def _read_parquet(path, column):
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        col = _pick_column(path, names, column)
        return pq.read_table(path, columns=[col]).column(col).to_pylist()
    except DataError:
        raise
    except Exception as e:
        raise DataError(path, f"cannot be read as Parquet: {e}") from e


def _read_json(path):
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"not a JSON file: {e}") from e
    if isinstance(data, list) and all(isinstance(x, str) for x in data):
        return data
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list) or not all(isinstance(a, dict) and "caption" in a for a in anns):
        raise DataError(path, "expected COCO captions JSON (annotations[].caption) or a JSON list of strings")
    return [a["caption"] for a in anns]
