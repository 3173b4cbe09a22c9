"""The generation loop: plan this shard, skip finished images, render the rest, merge.

An image file that exists is complete (atomic writes), so a killed run resumes by rendering
only the missing ids; `verify` also decodes the existing files and re-renders broken ones.
Encoding and writing run in a thread pool while the GPU renders the next batch: PNG encoding
of a 512-px image costs 0.14-0.26 s of CPU (bench/bench_image_formats.py), which done in line would
leave the GPU idle for that long per image.
"""
import collections
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.io import read_json, write_bytes, write_json
from datagen.generate import layout
from datagen.generate.encode import FORMATS, check_image_file, encode_image, resize, to_pil
from datagen.generate.plan import (
    PROMPT_ID,
    SPLIT,
    check_unique,
    expand,
    image_seed,
    read_prompt_table,
    same_file,
    select_shard,
)

log = logging.getLogger(__name__)

MAX_FAILURES_IN_A_ROW = 20  # a broken setup fails every image: stop instead of burning the shard


@dataclass
class Settings:
    """Everything an image's pixels depend on (stored in DIR/generate.json; a resume must match)."""
    model: str
    scheduler: str = "dpm++"
    steps: int = 20
    guidance: float = 7.5
    negative_prompt: str | None = None
    gen_size: int | None = None  # None: the model's native size
    save_size: int = 512  # 0: as generated
    format: str = "png"
    quality: int | None = None
    per_prompt: int = 1
    seed: int = 0
    holdout: float = 0.0
    holdout_seed: int = 0
    holdout_threshold: float = 0.9


@dataclass
class Summary:
    shard: tuple
    planned: dict = field(default_factory=dict)  # split -> images of this shard
    skipped: int = 0  # already there
    rendered: int = 0
    reverified: dict = field(default_factory=dict)  # imgId -> why it was re-rendered (--verify)
    failed: dict = field(default_factory=dict)  # imgId -> reason
    temps_removed: int = 0
    merged: dict | None = None

    def failure_reasons(self):
        return collections.Counter(self.failed.values()).most_common()


def check_settings(out, settings, allow_change=False):
    """Record the settings in out/generate.json, or refuse a resume that would mix settings."""
    path = Path(out) / layout.SETTINGS_FILE
    new = asdict(settings)
    if path.is_file():
        old = read_json(path).get("settings", {})
        diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
        if not diff:
            return
        text = ", ".join(f"{k} {o!r} -> {v!r}" for k, (o, v) in diff.items())
        if not allow_change:
            raise DataError(path, f"the images here were rendered with other settings ({text}); use another --out, "
                            "or --allow-settings-change to mix them")
        log.warning("%s: settings changed (%s); the set now mixes them", path, text)
    write_json(path, {"settings": new})


def _save(pixels, path, settings):
    if not np.isfinite(pixels).all():
        raise FloatingPointError("non-finite pixels (half-precision overflow? try --dtype bf16 or fp32)")
    data = encode_image(resize(to_pil(pixels), settings.save_size), settings.format, settings.quality)
    write_bytes(path, data)
    return len(data)


def _short(e):
    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def plan_run(prompts_path, out, settings, allow_settings_change=False, embedder=None, progress=True, cache_dir=None):
    """Check the inputs and settings, choose the held-out prompts; return (plan, extra column names).

    plan: one row per image (imgId, prompt, extras, _prompt_id, _split) in prompts.csv order."""
    out = Path(out)
    prompts_path = Path(prompts_path)
    for _, name in layout.SPLITS.values():
        if same_file(prompts_path, out / name):
            raise DataError(prompts_path, "is the generated set's own output (the merge rewrites it); "
                            "keep the prompt corpus outside --out")
    frame = read_prompt_table(prompts_path)
    plan = expand(frame, settings.per_prompt)
    check_unique(plan, prompts_path)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, settings, allow_settings_change)
    plan[SPLIT] = "train"
    if settings.holdout > 0:
        from datagen.generate.holdout import load_or_choose_holdout

        held = load_or_choose_holdout(out, frame["imgId"].tolist(), frame["prompt"].tolist(), settings.holdout,
                                      settings.holdout_seed, settings.holdout_threshold, embedder, progress, cache_dir)
        plan.loc[plan[PROMPT_ID].isin(held), SPLIT] = "test"
    return plan, [c for c in frame.columns if c not in ("imgId", "prompt")]


def _finished(folder, names, verify, check_size, writers, progress, summary):
    """The file names in `names` already in `folder` (decoded first with `verify`)."""
    from tqdm import tqdm

    have = sorted(layout.existing_names(folder) & names)
    if verify and have:
        with ThreadPoolExecutor(writers) as pool:
            reasons = list(tqdm(pool.map(lambda n: check_image_file(folder / n, check_size), have), total=len(have),
                                desc="verify", unit="img", disable=not progress))
        for name, reason in zip(have, reasons):
            if reason:
                summary.reverified[Path(name).stem] = reason
        have = [n for n, r in zip(have, reasons) if not r]
    return set(have)


def generate(prompts_path, out, settings, shard=(0, 1), batch_size=4, device=None, dtype=None, variant=None,
             verify=False, writers=4, progress=True, allow_settings_change=False, embedder=None, cache_dir=None,
             pipe=None):
    """Render shard `shard` = (i, n) of `prompts_path` into `out`; return a Summary.

    `device` / `dtype` are torch objects (render.resolve_device / resolve_dtype); `pipe` an
    already loaded pipeline (tests), else one is loaded only if something is left to render.
    `embedder` / `cache_dir`: MiniLM folder and text-keyed embedding cache for the held-out split."""
    out = Path(out)
    plan, extras = plan_run(prompts_path, out, settings, allow_settings_change, embedder, progress, cache_dir)
    mine = select_shard(plan, *shard)
    summary = Summary(shard=tuple(shard))
    ext = FORMATS[settings.format].ext
    todo = []
    for split in (["train", "test"] if settings.holdout > 0 else ["train"]):
        rows = mine[mine[SPLIT] == split]
        summary.planned[split] = len(rows)
        layout.write_shard_plan(out, split, *shard, rows[["imgId", "prompt", *extras]])
        folder = layout.images_dir(out, split)
        folder.mkdir(parents=True, exist_ok=True)
        names = {f"{i}{ext}" for i in rows["imgId"]}
        summary.temps_removed += layout.remove_stale_temps(folder, names)
        have = _finished(folder, names, verify, settings.save_size or settings.gen_size, writers, progress, summary)
        summary.skipped += len(have)
        todo += [(i, p, folder / f"{i}{ext}") for i, p in zip(rows["imgId"], rows["prompt"]) if f"{i}{ext}" not in have]
    if todo:
        if pipe is None:
            from datagen.generate.render import load_pipeline

            pipe = load_pipeline(settings.model, device, dtype, settings.scheduler, variant)
        _render_all(pipe, todo, settings, summary, batch_size, writers, progress)
    summary.merged = layout.merge(out)
    return summary


def _render_all(pipe, todo, settings, summary, batch_size, writers, progress):
    import torch
    from tqdm import tqdm

    from datagen.generate.render import native_size, render_batch

    size = settings.gen_size or native_size(pipe)
    desc = "generate" if summary.shard[1] == 1 else f"generate {summary.shard[0]}/{summary.shard[1]}"
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    pending = collections.deque()
    in_a_row = 0

    def render(items):
        return render_batch(pipe, [p for _, p, _ in items], [image_seed(i, settings.seed) for i, _, _ in items], size,
                            settings.steps, settings.guidance, settings.negative_prompt)

    def finish(future, img_id, path):
        try:
            future.result()
            summary.rendered += 1
        except FloatingPointError as e:
            summary.failed[img_id] = str(e)
        except OSError as e:  # disk full, permissions: every later write would fail too
            raise DataError(path, f"cannot write the image ({e.strerror or e})") from e
        bar.update(1)

    pool = ThreadPoolExecutor(max(1, writers))
    try:
        for start in range(0, len(todo), batch_size):
            items = todo[start:start + batch_size]
            try:
                batches = [(items, render(items))]
                in_a_row = 0
            except Exception as e:  # noqa: BLE001  (OOM and friends: retry one by one, then record)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                batches = []
                for item in items:
                    try:
                        if len(items) == 1:
                            raise e
                        batches.append(([item], render([item])))
                        in_a_row = 0
                    except Exception as e1:  # noqa: BLE001
                        summary.failed[item[0]] = _short(e1)
                        bar.update(1)
                        in_a_row += 1
                        if in_a_row >= MAX_FAILURES_IN_A_ROW:
                            raise DataError(settings.model, f"{in_a_row} images in a row failed to render; "
                                            f"last: {summary.failed[item[0]]}") from e1
            for group, pixels in batches:
                for (img_id, _, path), px in zip(group, pixels):
                    pending.append((pool.submit(_save, px, path, settings), img_id, path))
            while len(pending) > 2 * batch_size + writers:  # bound the pixels held in memory
                finish(*pending.popleft())
            bar.set_postfix(failed=len(summary.failed), refresh=False)
        while pending:
            finish(*pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
