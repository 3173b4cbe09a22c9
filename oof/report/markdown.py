"""Render a report Document's tables as Markdown (summary.md): for a terminal or a PR comment."""
from oof.report.doc import Figure, Gallery, Table


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_md(t):
    out = [f"**{_cell(t.title)}**", ""] if t.title else []
    out.append("| " + " | ".join(_cell(c) for c in t.columns) + " |")
    out.append("|" + "|".join(" ---: " if any(isinstance(r[j], (int, float)) for r in t.rows) else " --- "
                              for j in range(len(t.columns))) + "|")
    for row in t.rows:
        out.append("| " + " | ".join(_cell(t.cell(j, v)) for j, v in enumerate(row)) + " |")
    if t.note:
        out += ["", f"_{_cell(t.note)}_"]
    return "\n".join(out)


def render_markdown(doc):
    parts = [f"# {doc.title}", ""] + [p + "\n" for p in doc.paragraphs]
    for sec in doc.sections:
        parts += [f"## {sec.title}", ""]
        parts += [p + "\n" for p in sec.paragraphs]
        for item in sec.items:
            if isinstance(item, Table):
                parts += [table_md(item), ""]
            elif isinstance(item, Figure):
                parts += [f"_(figure in report.html: {item.caption})_", ""]
            elif isinstance(item, Gallery):
                parts += [f"**{item.title}**", ""] + [f"- {' · '.join(c.lines)}" for c in item.cards] + [""]
            else:
                parts += [f"_{item}_", ""]
    return "\n".join(parts).rstrip() + "\n"
