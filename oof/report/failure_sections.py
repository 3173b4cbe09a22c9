"""The "where models fail" section: breakdowns by prompt length, source and word; best and worst images."""
import numpy as np

from oof.report import failures, plots, text
from oof.report.doc import Card, Figure, Gallery, Section, Table
from oof.report.sections import SHARE


def breakdown_items(an, names, by_column="source", sort_by=None, diff=None):
    """Tables (and the length figure) of mean score per prompt-length bin, per `by_column` value, per word.

    `diff` = (a, b) adds a column b - a (the compare page); `sort_by` orders the word table (worst first)."""
    prompts = an.inputs.prompts
    if prompts is None:
        return ["no prompts.csv: breakdowns by prompt length, source and word left out"]
    scores = {n: an.scores[n] for n in names}
    extra = {}
    if diff is not None:
        extra = {f"{diff[1]} - {diff[0]}": an.scores[diff[1]].astype(np.float64) - an.scores[diff[0]]}
    all_scores = {**scores, **extra}
    fmts = {"share": SHARE, **{k: "{:+.4f}" for k in extra}}
    pieces = text.PromptPieces(prompts["prompt"])
    tok, max_len = text.load_tokenizer()
    lengths = text.token_lengths(pieces, tok)
    rows = failures.by_length(lengths, all_scores, max_len)
    items = [Table("by_length", ["MiniLM tokens", "images", "share"] + list(all_scores), rows, formats=fmts,
                   title="by prompt length (MiniLM tokens, [CLS] and [SEP] included)",
                   note=f"all-MiniLM-L6-v2 embeds at most {max_len} tokens: longer prompts are truncated."
                   if max_len else None)]
    items.append(Figure("by_length_lines", plots.lines_by_bin([r[0] for r in rows],
                                                             {n: [r[3 + k] for r in rows] for k, n in enumerate(names)},
                                                             "mean cosine by prompt length", "MiniLM tokens"),
                        "mean per-image cosine per prompt-length bin (all images)"))
    if by_column in prompts.columns:
        rows = failures.by_column(prompts[by_column], all_scores)
        items.append(Table(f"by_{by_column}", [by_column, "images", "share"] + list(all_scores), rows, formats=fmts,
                           title=f"by {by_column} (prompts.csv column)"))
    else:
        items.append(f"prompts.csv has no '{by_column}' column: no breakdown by it "
                     f"(columns: {', '.join(prompts.columns)}; --by-column picks another)")
    ref = sort_by or names[0]
    rows = failures.by_word(pieces, all_scores, ref)
    if rows:
        items.append(Table("by_word", ["word", "images", "share"] + list(all_scores), rows, formats=fmts,
                           title=f"by word: the {len(rows)} words in most prompts (English stop words left out), "
                                 f"worst first by {ref}",
                           note="mean score of the images whose prompt contains the word"))
    return items


def extremes_items(an, ref, k=failures.N_EXTREMES):
    inputs = an.inputs
    best, worst = failures.extremes(an.scores[ref], k)
    idx = np.concatenate([best, worst])
    nearest, near_cos = failures.nearest_prompts(an.readers[ref][idx], inputs.bank)
    prompt_of = failures.prompt_texts(inputs, [inputs.ids[i] for i in idx] + [inputs.bank_ids[j] for j in nearest])
    cards = []
    for j, i in enumerate(idx):
        img_id = inputs.ids[i]
        near_id = inputs.bank_ids[nearest[j]]
        data = {"imgId": img_id, "cosine": float(an.scores[ref][i]), "prompt": prompt_of.get(img_id),
                "nearest_imgId": near_id, "nearest_prompt": prompt_of.get(near_id),
                "nearest_cosine": float(near_cos[j])}
        lines = [f"{img_id}: cosine {data['cosine']:.4f}",
                 f"true: {data['prompt'] if data['prompt'] is not None else '(prompt unknown)'}",
                 f"nearest training prompt (cos {data['nearest_cosine']:.3f}): "
                 f"{data['nearest_prompt'] if data['nearest_prompt'] is not None else near_id}"]
        png = failures.thumbnail(failures.find_image(inputs.images_dir, img_id))
        cards.append(Card(png, lines, alt=f"image {img_id}", data=data))
    note = (f"model: {ref}. Nearest training prompt: the training prompt whose embedding is closest to the predicted "
            f"embedding, searched over all {len(inputs.bank_ids):,} training prompts (faiss, exact inner product); "
            "it can be the image's own prompt.")
    if inputs.images_dir is None:
        note += " No image folder found (metrics.json train_images.path or --images): no thumbnails."
    return [Gallery("best", f"the {len(best)} best images", cards[:len(best)], note),
            Gallery("worst", f"the {len(worst)} worst images", cards[len(best):], note)]


def failures_section(an, by_column="source"):
    names = list(an.scores)
    ref = an.reference
    items = breakdown_items(an, names, by_column, sort_by=ref) + extremes_items(an, ref)
    return Section("Where models fail", "failures",
                   [f"Every breakdown on all {an.inputs.n:,} images; columns: mean per-image cosine of each model."],
                   items)
