"""The OOF analysis report: one command, one self-contained HTML page (plus summary.md and report.json).

    python -m oof.report --runs work/runs/a work/runs/b [--ensemble work/ensemble]
        [--test-targets work/targets/test] [--out work/report]
    python -m oof.report --compare work/runs/a work/runs/b [--out work/report/compare-a-vs-b]

Modules, one job each:
    load       find and validate the inputs (runs, ensemble, targets, folds, groups, prompts, images)
    rows       stream rows of big .npy files without keeping them resident; per-image cosine
    stats      the constant baseline, fold means, test scores, group-bootstrap intervals, per-fold wins
    analysis   everything computed once from the inputs (per-image scores, bootstrap, pairs)
    text       prompt text at scale: MiniLM token counts, the words of each prompt
    failures   breakdowns by length / column / word, best and worst images, nearest prompt, thumbnails
    plots      matplotlib (Agg) figures as PNG bytes, drawn on a fixed-size sample of rows
    doc        the report as data (sections of tables, figures, galleries) and its JSON form
    sections, ensemble_sections, failure_sections, compare   the pages' sections
    html, markdown   the renderers; build: assemble and write; cli: the command
"""

# The report folder's files (written by build.py; run_all and the tests find them by these names).
HTML_FILE = "report.html"
SUMMARY_FILE = "summary.md"
JSON_FILE = "report.json"
