"""Pack the wheels a GPU machine without a package registry lacks, in parts small enough to carry one per call.

    python scripts/pack_wheels.py OUT [--max-mb 60] [--python-version 3.11] [--have torch timm ...]

downloads (pip download, pinned by constraints.txt, binary wheels for manylinux x86_64) this project's
dependencies except those the machine already has (`--have`; default: what the device machine here
has: torch, torchvision, timm, pandas, pyarrow, scikit-learn and their own dependencies), packs them
into one tar, and splits it into OUT/wheels.tar.partNN files of at most --max-mb MB each, beside
OUT/unpack.sh. Carry the parts to the machine one call at a time (stash them under /tmp there), then

    bash unpack.sh /tmp/wheel-parts    # joins the parts, checks the SHA-256, pip installs with --no-index

Pure parts (split / join) are unit-tested in tests/unit/test_pack_wheels.py.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what the device machine has (its README): installing these again would replace its CUDA builds
DEVICE_HAS = ["torch", "torchvision", "timm", "pandas", "pyarrow", "scikit-learn", "numpy", "pillow", "scipy"]
# what the project needs there, beyond what it has: Ray, MLflow, albumentations and the small ones
NEEDED = ["ray[default,tune,train]", "mlflow", "albumentations", "pydantic", "pyyaml", "matplotlib", "optuna", "tqdm",
          "psutil", "nvidia-ml-py"]
# without their dependencies: grad-cam's are torch, torchvision and opencv-python, which would pull gigabytes
# of wheels the machine has (torch) or conflict with albumentations' headless OpenCV
NO_DEPS = ["grad-cam", "ttach"]

UNPACK = """#!/usr/bin/env bash
# Join the parts in the folder given (default: this script's), check them, install the wheels offline.
set -euo pipefail
dir="${1:-$(dirname "$0")}"
cat "$dir"/wheels.tar.part* > /tmp/wheels.tar
echo "%(sha)s  /tmp/wheels.tar" | sha256sum -c -
mkdir -p /tmp/wheels && tar -xf /tmp/wheels.tar -C /tmp/wheels
pip install --no-index --find-links /tmp/wheels %(requirements)s
pip install --no-index --no-deps --no-build-isolation --find-links /tmp/wheels %(no_deps)s  # sdists: no registry to fetch a build backend from
pip install --no-index --no-deps --no-build-isolation -e .
"""


def split_file(path: Path, max_bytes: int) -> list[Path]:
    """`path` cut into `<path>.partNN` files of at most `max_bytes` each, in order; the original is removed."""
    parts = []
    with path.open("rb") as source:
        while chunk := source.read(max_bytes):
            part = path.with_name(f"{path.name}.part{len(parts):02d}")
            part.write_bytes(chunk)
            parts.append(part)
    path.unlink()
    return parts


def join_parts(parts: list[Path], into: Path) -> str:
    """The parts concatenated into `into`, in name order; returns its SHA-256."""
    digest = hashlib.sha256()
    with into.open("wb") as out:
        for part in sorted(parts):
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    return digest.hexdigest()


def download(folder: Path, python_version: str) -> None:
    """The wheels of NEEDED and their dependencies, pinned by constraints.txt, for the device's platform."""
    common = [sys.executable, "-m", "pip", "download", "--dest", str(folder),
              "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
              "--python-version", python_version, "-c", str(REPO / "constraints.txt")]
    subprocess.run([*common, "--only-binary=:all:", *NEEDED], check=True)
    subprocess.run([*common, "--no-deps", *NO_DEPS], check=True)  # grad-cam is an sdist only (pure Python)


def pack(out: Path, max_mb: float, python_version: str, have: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(tmp) / "wheels"
        download(wheels, python_version)
        skip = {h.lower().replace("-", "_") for h in have}
        kept = [w for w in sorted(wheels.iterdir()) if w.name.split("-")[0].lower().replace("-", "_") not in skip]
        bundle = out / "wheels.tar"
        with tarfile.open(bundle, "w") as tar:
            for wheel in kept:
                tar.add(wheel, arcname=wheel.name)
        sha = hashlib.sha256(bundle.read_bytes()).hexdigest()
        parts = split_file(bundle, int(max_mb * 1e6))
    (out / "unpack.sh").write_text(UNPACK % {"sha": sha, "requirements": " ".join(f"'{n}'" for n in NEEDED),
                                             "no_deps": " ".join(NO_DEPS)})
    total = sum(p.stat().st_size for p in parts)
    print(f"{len(kept)} wheels and sdists, {total / 1e6:.0f} MB in {len(parts)} part(s) of at most {max_mb:g} MB in {out}; "
          f"carry each in its own call, then: bash unpack.sh <folder of the parts>")
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-mb", type=float, default=60.0, help="largest part (one call carries 64 MiB in all)")
    parser.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}")
    parser.add_argument("--have", nargs="*", default=DEVICE_HAS, help="distributions the machine has already")
    args = parser.parse_args()
    pack(args.out, args.max_mb, args.python_version, args.have)


if __name__ == "__main__":
    main()
