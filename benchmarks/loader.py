"""Loader throughput: decoding every epoch vs the decode-once cache, at several image sizes.

Two kinds of files: small JPEGs (quickdraw10's 28 px doodles, as the tests use them) and
~800 px JPEGs of mixed modes (L, RGB, CMYK) and aspect ratios, like the Sketch
competition's. For each size it times one pass of a training DataLoader (the
sketch_light pipeline, batch 64, --workers loader processes) over the same rows, both
ways, and the one-off cache build. Prints medians of --repeats passes.

    python benchmarks/loader.py [--images 2000] [--sizes 32 64 224] [--workers 0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
QUICKDRAW = REPO.parent / "shared" / "data" / "quickdraw10"


def small_jpegs(folder: Path, count: int) -> list[str]:
    from orchestrator.data.export import quickdraw_images

    images, _, _ = quickdraw_images(QUICKDRAW, per_class=max(1, count // 10))
    paths = []
    for i, image in enumerate(images[:count]):
        path = folder / f"small_{i}.jpg"
        Image.fromarray(255 - image).save(path, quality=90)
        paths.append(str(path))
    return paths


def large_jpegs(folder: Path, count: int, seed: int = 0) -> list[str]:
    """Doodles blown up to ~800 px on the long side, aspect 0.6-1.6, in L, RGB or CMYK, with JPEG noise."""
    from orchestrator.data.export import quickdraw_images

    rng = np.random.default_rng(seed)
    images, _, _ = quickdraw_images(QUICKDRAW, per_class=max(1, count // 10))
    paths = []
    for i, image in enumerate(images[:count]):
        aspect = rng.uniform(0.6, 1.6)
        long_side = int(rng.integers(700, 900))
        size = (long_side, int(long_side / aspect)) if aspect >= 1 else (int(long_side * aspect), long_side)
        big = Image.fromarray(255 - image).resize(size, Image.BILINEAR)
        big = big.convert(["L", "RGB", "CMYK"][i % 3])
        path = folder / f"large_{i}.jpg"
        big.save(path, quality=90)
        paths.append(str(path))
    return paths


def images_per_second(dataset, workers: int, repeats: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    rates = []
    for _ in range(repeats):
        start, seen = time.perf_counter(), 0
        for images, _ in loader:
            seen += len(images)
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(paths: list[str], size: int, workers: int, repeats: int) -> tuple[float, float, float]:
    """(decoding img/s, cached img/s, cache build s) for the sketch_light pipeline at `size`."""
    from orchestrator.data import cache
    from orchestrator.data.dataset import ImageDataset
    from orchestrator.data.transforms import build_transforms

    targets = [0] * len(paths)
    decode_tf, _ = build_transforms("sketch_light", size)
    decoding = images_per_second(ImageDataset(paths, targets, decode_tf), workers, repeats)
    framing = cache.Framing(size, pad_square=True, invert=False)
    fingerprint = cache.files_fingerprint(paths)
    target = cache.cache_path(fingerprint, framing)
    target.unlink(missing_ok=True)
    start = time.perf_counter()
    cache.ensure(paths, fingerprint, framing, progress=False)
    build_s = time.perf_counter() - start
    cached_tf, _ = build_transforms("sketch_light", size, cached_side=size)
    rows = ImageDataset(range(len(paths)), targets, cached_tf, read=cache.CachedImages(str(target)).__getitem__)
    cached = images_per_second(rows, workers, repeats)
    return decoding, cached, build_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 224])
    parser.add_argument("--workers", type=int, default=0, help="DataLoader processes (0: in the main process)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ORCHESTRATOR_CACHE"] = str(Path(folder) / "cache")
        files = {"quickdraw 28 px JPEGs": small_jpegs(Path(folder), args.images),
                 "~800 px JPEGs, mixed modes": large_jpegs(Path(folder), args.images)}
        print(f"{args.images} images per kind, sketch_light, batch 64, {args.workers} loader workers, "
              f"median of {args.repeats} passes; {os.cpu_count()} cores")
        print(f"{'files':<28} {'size':>5} {'decode img/s':>13} {'cache img/s':>12} {'x':>6} {'cache build':>12}")
        for kind, paths in files.items():
            for size in args.sizes:
                decoding, cached, build_s = measure(paths, size, args.workers, args.repeats)
                print(f"{kind:<28} {size:>5} {decoding:>13.0f} {cached:>12.0f} {cached / decoding:>5.1f}x {build_s:>10.1f} s",
                      flush=True)


if __name__ == "__main__":
    main()
