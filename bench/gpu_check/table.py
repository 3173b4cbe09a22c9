"""The check's figures as a text table."""

COLUMNS = [  # header, width, row -> text
    ("model", 13, lambda k, r: k),
    ("backbone", 46, lambda k, r: r["backbone"]),
    ("px", 4, lambda k, r: str(r["image_size"])),
    ("batch", 6, lambda k, r: f"{r['batch_size']}x{r['grad_accum']}"),
    ("prec", 5, lambda k, r: r["precision"]),
    ("bare img/s", 11, lambda k, r: f"{r['bare_images_per_sec']:.1f}"),
    ("trainer img/s", 14, lambda k, r: f"{r['trainer_images_per_sec']:.1f}"),
    ("ratio", 6, lambda k, r: f"{r['ratio']:.3f}"),
    ("peak GiB", 9, lambda k, r: f"{r['peak_memory_gib']:.2f}"),
    ("stream img/s", 13, lambda k, r: f"{r['stream_images_per_sec']:.1f}"),
    ("stream/trainer", 14, lambda k, r: f"{r['stream_vs_trainer']:.2f}"),
]


def format_table(report):
    """Header lines, one row per model (or its error), the SD2 line."""
    env = report["environment"]
    kind = "smoke (CPU, toy sizes)" if report["smoke"] else "GPU"
    title = (f"{kind} check on {env['device']}: torch {env['torch']}, CUDA {env['cuda']}, {report['steps']} timed "
             f"steps per model; ratio goal >= 0.9, stream/trainer >= 1 keeps the GPU fed")
    header = "  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w, _) in enumerate(COLUMNS))
    lines = [title, header]
    for key, row in report["models"].items():
        if "error" in row:
            lines.append(f"{key:<13}  error: {row['error']}")
            continue
        lines.append("  ".join(f(key, row).rjust(w) if i > 1 else f(key, row)[:w].ljust(w)
                               for i, (_, w, f) in enumerate(COLUMNS)))
    sd2 = report["sd2"]
    if sd2 is None:
        lines.append(f"sd2: not measured ({report['sd2_skipped']})")
    else:
        lines.append(f"sd2: {sd2['images_per_sec']:.2f} img/s at {sd2['image_size']} px, {sd2['steps']} steps, "
                     f"batch {sd2['batch']}, {sd2['dtype']} ({sd2['path']})")
    return "\n".join(lines)
