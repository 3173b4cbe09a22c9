"""The project code a Kaggle pack carries: the first-party modules inference imports, transitively
(lazy imports inside functions included), and the data files they read."""
import ast
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What the notebook runs; everything first-party it imports (at module level or inside functions)
# travels in the pack.
ENTRY_MODULES = ("models.submit",)
DATA_DIRS = ("configs/open_clip",)  # non-Python files the packed code reads at run time


def _first_party(repo):
    return {d.name for d in repo.iterdir() if (d / "__init__.py").is_file()}


def _module_file(module, repo):
    path = repo.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None  # an attribute (`from core import EMBEDDING_DIM`) or not ours


def _imports(tree, module, is_package):
    """Every module name an AST imports, anywhere (lazy imports inside functions included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def code_closure(entries=ENTRY_MODULES, repo=REPO):
    """Repository-relative paths of the first-party .py files `entries` import, transitively."""
    repo = Path(repo)
    ours = _first_party(repo)
    todo, seen, files = list(entries), set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module, repo)
        if path is None:
            continue
        files.add(path.relative_to(repo))
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages' __init__
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        todo.extend(m for m in _imports(tree, module, path.name == "__init__.py") if m.split(".")[0] in ours)
    return sorted(files)


def copy_code(dest, repo=REPO):
    """Copy the inference code and its data files; returns their repository-relative paths."""
    rel = [str(p) for p in code_closure(repo=repo)]
    for d in DATA_DIRS:
        rel += sorted(str(p.relative_to(repo)) for p in (repo / d).rglob("*") if p.is_file())
    for r in rel:
        (dest / r).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo / r, dest / r)
    return rel
