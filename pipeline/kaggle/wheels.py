"""Wheels for a Kaggle pack: `pip download --only-binary=:all: --no-deps` at the versions pinned in
requirements.txt (else the installed ones), or taken from a wheel folder."""
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

from core.errors import DataError
from core.io import sha256_file

REPO = Path(__file__).resolve().parents[2]
# Not on Kaggle's images (or there at other versions): open_clip and its pure-Python requirements.
DEFAULT_WHEELS = ("timm", "open_clip_torch", "ftfy", "wcwidth")
TORCH_WHEELS = ("torch", "torchvision")
FAISS_WHEEL = "faiss-cpu"  # added when a packed run is a kNN (its neighbour search)


def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(requirements=REPO / "requirements.txt"):
    pins = {}
    if Path(requirements).is_file():
        for line in Path(requirements).read_text().splitlines():
            m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
            if m:
                pins[_canon(m.group(1))] = m.group(2)
    return pins


def wheel_specs(packages, pins=None):
    """['name==version'] : an explicit pin, else requirements.txt's, else the installed version."""
    pins = read_pins() if pins is None else pins
    specs = []
    for p in packages:
        if "==" in p:
            specs.append(p.replace(" ", ""))
            continue
        version = pins.get(_canon(p))
        if version is None:
            try:
                version = importlib.metadata.version(p)
            except importlib.metadata.PackageNotFoundError:
                raise DataError("requirements.txt", f"{p} is neither pinned there nor installed here; "
                                                    f"give it as {p}==VERSION") from None
        specs.append(f"{p}=={version}")
    return list(dict.fromkeys(specs))


def _parse_wheel(filename):
    parts = filename[:-len(".whl")].split("-")
    return (_canon(parts[0]), parts[1]) if len(parts) >= 5 else (None, None)


def matching_wheels(folder, spec):
    name, version = spec.split("==")
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.whl") if _parse_wheel(p.name) == (_canon(name), version))


def collect_wheels(specs, dest, wheel_dir=None, python_version=None, platform=None):
    """Wheels for `specs` into dest: taken from wheel_dir where they are there, else `pip download`ed."""
    dest.mkdir(parents=True, exist_ok=True)
    source = Path(wheel_dir) if wheel_dir else dest
    missing = [s for s in specs if not matching_wheels(source, s)]
    if missing:
        source.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--dest", str(source)]
        cmd += ["--python-version", python_version] if python_version else []
        cmd += ["--platform", platform] if platform else []
        print("$ " + " ".join(cmd + missing), flush=True)
        res = subprocess.run(cmd + missing)
        if res.returncode != 0:
            raise DataError(source, f"pip download of {missing} failed (exit {res.returncode}); "
                                    "--wheel-dir with the wheels, or --no-wheels")
    entries = []
    for spec in specs:
        found = matching_wheels(source, spec)
        if not found:
            raise DataError(source, f"no wheel for {spec} after pip download")
        for w in found:
            if w.parent.resolve() != dest.resolve():
                shutil.copyfile(w, dest / w.name)
            entries.append({"spec": spec, "file": w.name, "bytes": w.stat().st_size, "sha256": sha256_file(w)})
    return entries
