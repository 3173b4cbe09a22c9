"""The report's figures as PNG bytes (matplotlib's object API on the Agg canvas: no display, no pyplot state).

Figures of per-image values are drawn from a fixed-size random sample of rows (same seed,
same rows for every model), so drawing costs the same at 2,000 or 500,000 images; the tables
next to them are computed on all rows.
"""
import io

import numpy as np

SAMPLE_ROWS = 20_000
DPI = 90


def sample_rows(n, size=SAMPLE_ROWS, seed=0):
    """Sorted row indices of a fixed-size sample (all rows when n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _figure(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def learning_curves(log, title):
    """Train loss and monitoring cosine per epoch, one line per fold; None when no fold has 2+ epochs."""
    if log is None or log.empty or log.groupby("fold")["epoch"].nunique().max() < 2:
        return None
    fig = _figure(9, 3.2)
    ax_loss, ax_cos = fig.subplots(1, 2)
    for fold, part in log.sort_values(["fold", "epoch"]).groupby("fold"):
        ax_loss.plot(part["epoch"], part["train_loss"], marker=".", label=f"fold {fold}")
        ax_cos.plot(part["epoch"], part["val_cosine"], marker=".", label=f"fold {fold}")
    ax_loss.set(title=f"{title}: train loss", xlabel="epoch")
    ax_cos.set(title=f"{title}: monitoring cosine", xlabel="epoch")
    for ax in (ax_loss, ax_cos):
        ax.grid(alpha=.3)
    ax_cos.legend(fontsize=8)
    return _png(fig)


def histograms(samples, bins=60):
    """Overlaid per-image cosine histograms, {name: sampled scores}."""
    fig = _figure(9, 3.6)
    ax = fig.subplots()
    lo = min(float(np.min(v)) for v in samples.values())
    hi = max(float(np.max(v)) for v in samples.values())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-3, bins + 1)
    for name, v in samples.items():
        counts, _ = np.histogram(v, bins=edges)
        ax.stairs(counts / max(len(v), 1), edges, label=f"{name} (mean {np.mean(v):.4f})", linewidth=1.4)
    ax.set(xlabel="per-image cosine", ylabel="fraction of images")
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    return _png(fig)


def heatmap(matrix, rows, cols, title, cmap="viridis", vmin=None, vmax=None, annotate=True, aspect="equal",
            size=None):
    matrix = np.asarray(matrix, dtype=np.float64)
    w, h = size or (1.2 + 0.9 * len(cols), 0.9 + 0.6 * len(rows))
    fig = _figure(max(w, 4), max(h, 2.4))
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
    ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=8)
    if cols is not None:
        ax.set_xticks(range(len(cols)), [str(c) for c in cols], rotation=45, ha="right", fontsize=8)
    if annotate:
        mid = np.nanmean(matrix)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, f"{matrix[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] < mid else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def weights_heatmap(weights, models, title="per-dimension weights (rows: models, columns: the 384 dimensions)"):
    """Per-dimension stacker weights, models x dimensions."""
    return heatmap(weights, models, None, title,
                   cmap="coolwarm", vmin=-np.abs(weights).max(), vmax=np.abs(weights).max(), annotate=False,
                   aspect="auto", size=(10, 0.8 + 0.45 * len(models)))


def bars(labels, values, title, xlabel):
    fig = _figure(7, 0.8 + 0.35 * len(labels))
    ax = fig.subplots()
    values = np.asarray(values, dtype=np.float64)
    ax.barh(range(len(labels)), values, color=["#2a7ab9" if v >= 0 else "#c0392b" for v in values])
    ax.set_yticks(range(len(labels)), [str(x) for x in labels], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=.8)
    ax.set(title=title, xlabel=xlabel)
    ax.grid(axis="x", alpha=.3)
    return _png(fig)


def lines_by_bin(labels, series, title, xlabel):
    """Mean score per bin (e.g. prompt-length bins), one line per model."""
    fig = _figure(9, 3.4)
    ax = fig.subplots()
    x = np.arange(len(labels))
    for name, values in series.items():
        ax.plot(x, values, marker="o", label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set(title=title, xlabel=xlabel, ylabel="mean cosine")
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    return _png(fig)


def paired_scatter(a, b, name_a, name_b):
    """Per-image cosine of A against B (sampled rows) and the histogram of B - A."""
    fig = _figure(10, 4)
    ax_sc, ax_h = fig.subplots(1, 2)
    ax_sc.scatter(a, b, s=3, alpha=.35, linewidths=0)
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    ax_sc.plot([lo, hi], [lo, hi], color="black", linewidth=.8)
    ax_sc.set(xlabel=f"{name_a} per-image cosine", ylabel=f"{name_b} per-image cosine", title="per image")
    d = b - a
    ax_h.hist(d, bins=60, color="#2a7ab9")
    ax_h.axvline(0, color="black", linewidth=.8)
    ax_h.axvline(float(d.mean()), color="#c0392b", linewidth=1.2, label=f"mean {d.mean():+.4f}")
    ax_h.set(xlabel=f"{name_b} - {name_a}", ylabel="images", title="per-image difference")
    ax_h.legend(fontsize=8)
    for ax in (ax_sc, ax_h):
        ax.grid(alpha=.3)
    return _png(fig)
