"""Render a report Document as one self-contained HTML page.

Plain HTML and inline CSS, no JavaScript; every image is a base64 PNG data URI, so the file
opens offline in any browser and can be mailed or attached as it is.
"""
import base64
from html import escape

from oof.report.doc import Figure, Gallery, Table

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: .88em; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border: 1px solid #d5d5d5; padding: .25em .55em; vertical-align: top; }
th { background: #f3f3f6; } tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
p.note { color: #555; font-size: .9em; } code { background: #f3f3f6; padding: 0 .2em; }
figure { margin: .8em 0 1.6em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .88em; }
div.gallery { display: flex; flex-wrap: wrap; gap: .8em; }
figure.card { width: 260px; margin: 0; border: 1px solid #ddd; padding: .4em; font-size: .8em; }
figure.card img { display: block; margin: 0 auto .3em; border: 0; width: 128px; height: auto;
                  image-rendering: pixelated; }
span.missing { display: block; text-align: center; color: #999; padding: 2em 0; }
nav ul { columns: 3; font-size: .92em; }
"""


def data_uri(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table_html(t):
    out = ["<table>"]
    if t.title:
        out.append(f"<caption>{escape(t.title)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{escape(str(c))}</th>" for c in t.columns) + "</tr></thead><tbody>")
    for row in t.rows:
        cells = []
        for j, v in enumerate(row):
            cls = ' class="num"' if _is_num(v) or v is None else ""
            cells.append(f"<td{cls}>{escape(t.cell(j, v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if t.note:
        out.append(f'<p class="note">{escape(t.note)}</p>')
    return "\n".join(out)


def figure_html(f):
    head = f"<h3>{escape(f.title)}</h3>\n" if f.title else ""
    return (f'{head}<figure><img src="{data_uri(f.png)}" alt="{escape(f.caption, quote=True)}">'
            f"<figcaption>{escape(f.caption)}</figcaption></figure>")


def gallery_html(g):
    out = [f"<h3>{escape(g.title)}</h3>"]
    if g.note:
        out.append(f'<p class="note">{escape(g.note)}</p>')
    out.append('<div class="gallery">')
    for card in g.cards:
        img = (f'<img src="{data_uri(card.png)}" alt="{escape(card.alt, quote=True)}">' if card.png is not None
               else '<span class="missing">(image not found)</span>')
        lines = [f"<strong>{escape(card.lines[0])}</strong>"] + [escape(x) for x in card.lines[1:]] \
            if card.lines else []
        out.append(f'<figure class="card">{img}<figcaption>{"<br>".join(lines)}</figcaption></figure>')
    out.append("</div>")
    return "\n".join(out)


def render_html(doc):
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(doc.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{escape(doc.title)}</h1>"]
    parts += [f"<p>{escape(p)}</p>" for p in doc.paragraphs]
    parts.append("<nav><ul>" + "".join(f'<li><a href="#{s.anchor}">{escape(s.title)}</a></li>' for s in doc.sections)
                 + "</ul></nav>")
    for sec in doc.sections:
        parts.append(f'<section id="{escape(sec.anchor, quote=True)}">')
        parts.append(f"<h2>{escape(sec.title)}</h2>")
        parts += [f"<p>{escape(p)}</p>" for p in sec.paragraphs]
        for item in sec.items:
            if isinstance(item, Table):
                parts.append(table_html(item))
            elif isinstance(item, Figure):
                parts.append(figure_html(item))
            elif isinstance(item, Gallery):
                parts.append(gallery_html(item))
            else:
                parts.append(f'<p class="note">{escape(str(item))}</p>')
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
