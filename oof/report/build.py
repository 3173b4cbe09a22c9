"""Assemble the full report and the two-run comparison page, and write report.html, summary.md, report.json."""
import logging
import time
from pathlib import Path

from core.io import write_json, write_text
from oof.report import HTML_FILE, JSON_FILE, SUMMARY_FILE, compare, plots
from oof.report.analysis import analyze
from oof.report.doc import Document, to_json
from oof.report.ensemble_sections import diversity_section, stacker_section
from oof.report.failure_sections import failures_section
from oof.report.html import render_html
from oof.report.markdown import render_markdown
from oof.report.sections import (
    difference_section,
    distribution_section,
    learning_section,
    provenance_section,
    scoreboard,
)

log = logging.getLogger(__name__)



def _timed_sections(builders, timings):
    sections = []
    for key, build in builders:
        t = time.perf_counter()
        sections.append(build())
        timings[f"section_{key}"] = round(time.perf_counter() - t, 2)
        log.info("section %s: %.1f s", key, timings[f"section_{key}"])
    return sections


def header(inputs, an):
    paragraphs = [f"{len(inputs.runs)} run(s): {', '.join(inputs.names)}; {inputs.n:,} OOF images, "
                  f"{len(an.fold_values)} folds."]
    if inputs.ensemble is not None:
        paragraphs.append(f"ensemble: {inputs.ensemble.path} (chosen method {inputs.ensemble.method}).")
    paragraphs += [f"note: {n}" for n in inputs.notes]
    return paragraphs


def build_report(inputs, argv, n_boot, seed, sample_size, by_column, progress=False):
    an = analyze(inputs, n_boot=n_boot, seed=seed, progress=progress)
    sample = plots.sample_rows(inputs.n, sample_size, seed)
    sections = _timed_sections([
        ("scoreboard", lambda: scoreboard(an)),
        ("differences", lambda: difference_section(an, seed)),
        ("learning", lambda: learning_section(an)),
        ("distributions", lambda: distribution_section(an, sample)),
        ("diversity", lambda: diversity_section(an)),
        ("stacker", lambda: stacker_section(an)),
        ("failures", lambda: failures_section(an, by_column)),
        ("provenance", lambda: provenance_section(an, argv)),
    ], an.timings)
    meta = {"n_images": inputs.n, "folds": an.fold_values, "bootstrap": {"resamples": n_boot, "seed": seed,
                                                                         "units": inputs.groups_source},
            "plot_sample_rows": len(sample), "notes": inputs.notes, "unfinished_runs": inputs.unfinished,
            "timings_s": an.timings}
    return Document("OOF analysis report", header(inputs, an), sections, meta)


def build_compare(inputs, argv, n_boot, seed, sample_size, by_column, progress=False):
    a, b = inputs.names
    an = analyze(inputs, n_boot=n_boot, seed=seed, progress=progress, pairs=[(b, a)])
    sample = plots.sample_rows(inputs.n, sample_size, seed)
    sections = _timed_sections([
        ("scoreboard", lambda: scoreboard(an)),
        ("differences", lambda: difference_section(an, seed)),
        ("change", lambda: compare.change_section(an, a, b, sample)),
        ("where", lambda: compare.where_section(an, a, b, by_column)),
        ("learning", lambda: learning_section(an)),
        ("provenance", lambda: provenance_section(an, argv)),
    ], an.timings)
    p = an.pairs[0]
    verdict = (f"{b} - {a} = {p['diff']:+.4f} (95% CI {p['ci_low']:+.4f} .. {p['ci_high']:+.4f}; "
               f"{b} wins {p['fold_wins_a']} of {p['folds']} folds): {p['verdict']}")
    meta = {"n_images": inputs.n, "a": a, "b": b, "difference": p,
            "bootstrap": {"resamples": n_boot, "seed": seed, "units": inputs.groups_source},
            "plot_sample_rows": len(sample), "notes": inputs.notes, "timings_s": an.timings}
    return Document(f"Did it help? {b} vs {a}", [verdict] + header(inputs, an)[1:], sections, meta)


def write_report(doc, out):
    out = Path(out)
    write_text(out / HTML_FILE, render_html(doc))
    write_text(out / SUMMARY_FILE, render_markdown(doc))
    write_json(out / JSON_FILE, to_json(doc))
    return out / HTML_FILE
