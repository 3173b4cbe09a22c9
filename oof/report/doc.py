"""The report as data: sections of paragraphs, tables, figures and thumbnail galleries.

Tables hold raw values (numbers stay numbers); the renderers format them and report.json
stores them as they are, so every number shown is also in report.json.
"""
import math
from dataclasses import dataclass, field

DEFAULT_FLOAT = "{:.4f}"
MISSING = "—"


@dataclass
class Table:
    key: str
    columns: list
    rows: list
    title: str = None
    formats: dict = field(default_factory=dict)  # column name -> format string, e.g. "{:+.4f}"
    note: str = None

    def cell(self, col, value):
        """`value` of column index `col` as text."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        fmt = self.formats.get(self.columns[col])
        if fmt is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            return fmt.format(value)
        if isinstance(value, float):
            return DEFAULT_FLOAT.format(value)
        return str(value)


@dataclass
class Figure:
    key: str
    png: bytes
    caption: str
    title: str = None


@dataclass
class Card:
    png: bytes  # None when the image could not be found or read
    lines: list  # caption lines, first one bold
    alt: str = "image"
    data: dict = None  # the card's numbers and texts for report.json


@dataclass
class Gallery:
    key: str
    title: str
    cards: list
    note: str = None


@dataclass
class Section:
    title: str
    anchor: str
    paragraphs: list = field(default_factory=list)
    items: list = field(default_factory=list)  # Table, Figure, Gallery or str (a paragraph between items)


@dataclass
class Document:
    title: str
    paragraphs: list
    sections: list
    meta: dict = field(default_factory=dict)  # extra numbers for report.json (timings, settings)


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _clean(value.item())
    return value


def to_json(doc):
    """Everything in the tables (and galleries' captions) as plain JSON, keyed by section anchor and table key."""
    sections = {}
    for sec in doc.sections:
        entry = {"title": sec.title, "tables": {}, "galleries": {}}
        for item in sec.items:
            if isinstance(item, Table):
                entry["tables"][item.key] = {"title": item.title, "columns": list(item.columns),
                                             "rows": _clean(item.rows)}
            elif isinstance(item, Gallery):
                entry["galleries"][item.key] = [_clean(c.data) if c.data is not None else c.lines for c in item.cards]
        sections[sec.anchor] = entry
    return {"title": doc.title, "meta": _clean(doc.meta), "sections": sections}
