"""Training sets as webdataset tar shards (the format open_clip training reads).

    python -m core.shards --data DIR --out SHARDS --shard-size N [--size PX] [--format png|jpg|webp] [--quality Q]
    python -m core.shards --verify SHARDS

    SHARDS/shard-000000.tar   <imgId>.<png|jpg|webp> + <imgId>.txt (the prompt) per sample, in prompts.csv order
    SHARDS/prompts.csv        imgId,prompt[,extras] of every sample, shard by shard (the competition format)
    SHARDS/manifest.json      written last: encoding, and per shard its name, sample count, bytes and sha256

The imgId is the webdataset key, so it must hold no dot (core.dataset's id rule). Without --size
the images keep their pixels (their own bytes when the format is unchanged). Tars are written
with fixed metadata, so the same input gives byte-identical shards; every file is written through
a temporary name, and the manifest last: a killed conversion leaves no valid-looking shard set.
"""
import argparse
import io
import json
import os
import sys
import tarfile
from multiprocessing import get_context
from pathlib import Path

from core.dataset import PROMPTS_FILE, load_dataset, open_image, read_prompts
from core.errors import DataError, exit_on_input_error
from core.images import square_resize
from core.io import atomic_path, read_json, save_csv, sha256_file, write_json

SHARD_MANIFEST = "manifest.json"
SHARD_NAME = "shard-{:06d}.tar"
FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}  # the sample's extension -> PIL's encoder
LOSSLESS = {"png"}
PROMPT_EXT = "txt"
MANIFEST_VERSION = 1


def encode_image(path, size, fmt, quality):
    """The bytes stored for one image: its own file when nothing changes, else re-encoded (RGB)."""
    if size is None and Path(path).suffix.lower().lstrip(".") in ({fmt, "jpeg"} if fmt == "jpg" else {fmt}):
        open_image(path)  # a file that does not decode is refused here, not found at training time
        return Path(path).read_bytes()
    im = open_image(path)
    if size is not None:
        im = square_resize(im, size)
    buf = io.BytesIO()
    opts = {"quality": quality} if fmt in ("jpg", "webp") else {"compress_level": 6}
    im.save(buf, format=FORMATS[fmt], **opts)
    return buf.getvalue()


def _encode_job(args):
    img_id, path, size, fmt, quality = args
    return img_id, encode_image(path, size, fmt, quality)


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o444, 0, 0
    tar.addfile(info, io.BytesIO(data))


def write_shards(data_dir, out_dir, shard_size, size=None, fmt="png", quality=95, workers=1, overwrite=False,
                 progress=True):
    """Convert a competition-layout training set into tar shards; returns the manifest."""
    from tqdm import tqdm

    if shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {sorted(FORMATS)}, got {fmt!r}")
    frame = load_dataset(data_dir, require_prompts=True)  # its id rule (no dot) keeps webdataset keys whole
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise DataError(out_dir, "output folder is not empty; pass --overwrite to replace its shards")
        (out_dir / SHARD_MANIFEST).unlink(missing_ok=True)  # first: a half-rewritten set is never valid
        for old in out_dir.glob("shard-*.tar"):
            old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(i, p, size, fmt, quality) for i, p in zip(frame["imgId"], frame["path"])]
    prompts = dict(zip(frame["imgId"], frame["prompt"]))
    shards, bar = [], tqdm(total=len(jobs), desc="shards", unit="img", disable=not progress)
    pool = get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        encoded = pool.imap(_encode_job, jobs, chunksize=16) if pool else map(_encode_job, jobs)
        for start in range(0, len(jobs), shard_size):
            name = SHARD_NAME.format(len(shards))
            count = min(shard_size, len(jobs) - start)
            with atomic_path(out_dir / name) as tmp:
                with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                    for _ in range(count):
                        img_id, data = next(encoded)
                        _add(tar, f"{img_id}.{fmt}", data)
                        _add(tar, f"{img_id}.{PROMPT_EXT}", prompts[img_id].encode("utf-8"))
                        bar.update()
            shards.append({"name": name, "count": count, "bytes": (out_dir / name).stat().st_size,
                           "sha256": sha256_file(out_dir / name)})
    finally:
        if pool:
            pool.terminate()
        bar.close()
    save_csv(out_dir / PROMPTS_FILE, frame.drop(columns=["path"]))
    manifest = {"format": "webdataset", "version": MANIFEST_VERSION, "image_format": fmt, "size": size,
                "quality": quality if fmt in ("jpg", "webp") else None, "source": str(Path(data_dir).resolve()),
                "n_samples": len(jobs), "shards": shards}
    write_json(out_dir / SHARD_MANIFEST, manifest)
    return manifest


def read_manifest(shard_dir):
    path = Path(shard_dir) / SHARD_MANIFEST
    if not path.is_file():
        raise DataError(path, "shard manifest not found (write the shards with `python -m core.shards`)")
    try:
        manifest = read_json(path)
        counts = [int(s["count"]) for s in manifest["shards"]]
        ok = manifest.get("format") == "webdataset" and sum(counts) == manifest["n_samples"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(path, f"not a shard manifest ({type(e).__name__}: {e})") from e
    if not ok:
        raise DataError(path, "not a shard manifest (format or sample counts do not add up)")
    return manifest


def is_shard_dir(path):
    return (Path(path) / SHARD_MANIFEST).is_file()


def load_shard_dataset(shard_dir):
    """A shard set as a dataset frame: imgId, path (its shard), prompt [+ extras], shard, pos (index in the shard)."""
    shard_dir = Path(shard_dir)
    manifest = read_manifest(shard_dir)
    frame = read_prompts(shard_dir / PROMPTS_FILE)
    if len(frame) != manifest["n_samples"]:
        raise DataError(shard_dir / PROMPTS_FILE,
                        f"{len(frame)} rows; the manifest lists {manifest['n_samples']} samples")
    shard, pos = [], []
    for k, s in enumerate(manifest["shards"]):
        shard += [k] * s["count"]
        pos += range(s["count"])
    frame.insert(1, "path", [str(shard_dir / manifest["shards"][k]["name"]) for k in shard])
    frame["shard"], frame["pos"] = shard, pos
    return frame


def pixel_identity(manifest, size):
    """None when a shard set decodes to its source files' pixels at `size` px (lossless, and kept at
    their own size or written at `size`); else what changed them (it then enters a run's hash)."""
    if manifest["image_format"] in LOSSLESS and manifest["size"] in (None, size):
        return None
    return {k: manifest[k] for k in ("image_format", "size", "quality")}


def verify_shards(shard_dir, stamp_path=None, progress=True):
    """Check every shard's sha256 against the manifest; a DataError names the first that differs.

    With `stamp_path`, shards whose (size, mtime) match a previous successful check are not hashed
    again: a multi-terabyte set is read in full once, not at every start.
    """
    from tqdm import tqdm

    shard_dir = Path(shard_dir)
    manifest = read_manifest(shard_dir)
    stamps = {}
    if stamp_path and Path(stamp_path).is_file():
        try:
            stamps = read_json(stamp_path)
        except (ValueError, OSError):
            stamps = {}
    checked = {}
    for s in tqdm(manifest["shards"], desc="verify shards", unit="shard", disable=not progress):
        path = shard_dir / s["name"]
        try:
            st = os.stat(path)
        except FileNotFoundError as e:
            raise DataError(path, "shard listed in the manifest is missing") from e
        stamp = [st.st_size, st.st_mtime_ns, s["sha256"]]
        if stamps.get(s["name"]) != stamp:
            digest = sha256_file(path)
            if digest != s["sha256"]:
                raise DataError(path, f"sha256 {digest[:16]}... differs from the manifest's {s['sha256'][:16]}... "
                                      f"(the shard changed or is corrupt; rewrite it with `python -m core.shards`)")
        checked[s["name"]] = stamp
    if stamp_path:
        write_json(stamp_path, checked)
    return manifest


@exit_on_input_error
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m core.shards", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="training set in the competition layout (images/ + prompts.csv)")
    ap.add_argument("--out", help="output folder for the shards")
    ap.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    ap.add_argument("--size", type=int, default=None, help="re-encode at PX x PX (centre square crop); default: as is")
    ap.add_argument("--format", default="png", choices=sorted(FORMATS))
    ap.add_argument("--quality", type=int, default=95, help="jpg / webp quality")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="encoding processes")
    ap.add_argument("--overwrite", action="store_true", help="replace the shards in a non-empty --out")
    ap.add_argument("--verify", metavar="SHARDS", help="only check a shard set's sha256 against its manifest")
    args = ap.parse_args(argv)
    if args.verify:
        m = verify_shards(args.verify)
        print(f"{args.verify}: {len(m['shards'])} shards, {m['n_samples']} samples, sha256 as in the manifest")
        return 0
    if not args.data or not args.out:
        ap.error("--data and --out are required (or --verify SHARDS)")
    try:
        m = write_shards(args.data, args.out, args.shard_size, args.size, args.format, args.quality, args.workers,
                         args.overwrite)
    except ValueError as e:
        if isinstance(e, DataError):
            raise
        ap.error(str(e))
    total = sum(s["bytes"] for s in m["shards"])
    print(f"wrote {args.out}: {m['n_samples']} samples in {len(m['shards'])} shards ({total / 2**20:.1f} MiB); "
          f"{SHARD_MANIFEST}: {json.dumps({k: m[k] for k in ('image_format', 'size', 'quality')})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
