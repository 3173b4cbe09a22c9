"""The Kaggle notebook a pack carries (also committed as kaggle/notebook.ipynb), built with nbformat from
the cells in pipeline/kaggle/notebook_cells.py: installs the packed wheels offline, runs
models.submit.make_submission from the packed code, checks submission.csv."""
import re
from pathlib import Path

import nbformat
from nbformat import v4

from core.io import write_text

REPO = Path(__file__).resolve().parents[2]
CELLS_FILE = Path(__file__).with_name("notebook_cells.py")
NOTEBOOK_TEMPLATE = REPO / "kaggle" / "notebook.ipynb"
CELL_MARKER = re.compile(r"^# %%(?: \[(markdown)\])?\s*$")
CELL_ID = "sdi2p-{}"  # fixed ids: the same cells give the same file
METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}


def _markdown(lines, path):
    """A `# %% [markdown]` cell's comment lines as markdown (`# text` -> `text`, `#` -> blank)."""
    out = []
    for line in lines:
        if line and not line.startswith("#"):
            raise ValueError(f"{path}: markdown cell line is not a comment: {line!r}")
        out.append(line[2:] if line.startswith("# ") else line[1:])
    return out


def read_cells(path=CELLS_FILE):
    """[(cell_type, source)] from a `# %%` cell file; what precedes the first marker is left out."""
    cells, kind, lines = [], None, []
    for line in Path(path).read_text(encoding="utf-8").splitlines() + ["# %%"]:
        m = CELL_MARKER.match(line)
        if not m:
            lines.append(line)
            continue
        if kind is not None:
            body = _markdown(lines, path) if kind == "markdown" else lines
            cells.append((kind, "\n".join(body).strip("\n")))
        kind, lines = m.group(1) or "code", []
    return cells


def build_notebook(cells=None):
    """The notebook (an nbformat NotebookNode, validated) holding `cells` (default: the cell file's)."""
    cells = read_cells() if cells is None else cells
    new = {"code": v4.new_code_cell, "markdown": v4.new_markdown_cell}
    nb = v4.new_notebook(metadata=METADATA)
    nb.cells = [new[kind](source, id=CELL_ID.format(i)) for i, (kind, source) in enumerate(cells)]
    nbformat.validate(nb)
    return nb


def notebook_text():
    return nbformat.writes(build_notebook()) + "\n"


def write_notebook(path):
    write_text(path, notebook_text())
    return Path(path)


def notebook_code(path):
    """The notebook's code cells joined into one script (how the tests run it)."""
    nb = nbformat.read(path, as_version=4)
    return "\n\n\n".join(c.source for c in nb.cells if c.cell_type == "code") + "\n"
