"""The comparison page for two runs: did the change from A to B help, where, and is it real?"""
import numpy as np

from oof.report import failures, plots
from oof.report.doc import Card, Figure, Gallery, Section, Table
from oof.report.failure_sections import breakdown_items


def flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(a, b):
    """Rows (key, A's value, B's value) of the config entries that differ."""
    fa, fb = flatten(a), flatten(b)
    rows = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key, "(absent)"), fb.get(key, "(absent)")
        if va != vb:
            rows.append([key, str(va), str(vb)])
    return rows


def change_section(an, a, b, sample):
    run_a, run_b = (next(r for r in an.inputs.runs if r.name == n) for n in (a, b))
    rows = config_diff(run_a.metrics.get("config"), run_b.metrics.get("config"))
    items = [Table("config_diff", ["config key", a, b], rows, title="what changed: config entries that differ")
             if rows else "the runs' metrics.json record no differing config entries"]
    caption = f"per-image cosine, drawn on a fixed random sample of {len(sample):,} of {an.inputs.n:,} images"
    items.append(Figure("paired", plots.paired_scatter(an.scores[a][sample], an.scores[b][sample], a, b), caption))
    return Section("What changed", "change", [], items)


def moved_items(an, a, b, k=failures.N_EXTREMES):
    """The images B improved most and the ones it hurt most, with their prompts."""
    inputs = an.inputs
    d = an.scores[b].astype(np.float64) - an.scores[a]
    gains, losses = failures.extremes(d, k)
    prompt_of = failures.prompt_texts(inputs, [inputs.ids[i] for i in np.concatenate([gains, losses])])
    galleries = []
    for key, title, idx in (("gains", f"the {len(gains)} images {b} improved most", gains),
                            ("losses", f"the {len(losses)} images {b} hurt most", losses)):
        cards = []
        for i in idx:
            img_id = inputs.ids[i]
            data = {"imgId": img_id, a: float(an.scores[a][i]), b: float(an.scores[b][i]), "diff": float(d[i]),
                    "prompt": prompt_of.get(img_id)}
            lines = [f"{img_id}: {b} - {a} = {d[i]:+.4f}", f"{a} {data[a]:.4f}, {b} {data[b]:.4f}",
                     f"true: {data['prompt'] if data['prompt'] is not None else '(prompt unknown)'}"]
            cards.append(Card(failures.thumbnail(failures.find_image(inputs.images_dir, img_id)), lines,
                              alt=f"image {img_id}", data=data))
        galleries.append(Gallery(key, title, cards))
    return galleries


def where_section(an, a, b, by_column):
    items = breakdown_items(an, [a, b], by_column, sort_by=f"{b} - {a}", diff=(a, b)) + moved_items(an, a, b)
    return Section("Where it changed", "where", [f"Mean per-image cosine of {a} and {b} and their difference "
                                                 f"{b} - {a}, on all {an.inputs.n:,} images; words sorted by the "
                                                 "difference, biggest loss first."], items)
