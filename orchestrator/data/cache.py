"""Decode-once image cache: a grid's images decoded, framed and resized once, in one memory-mapped file.

Every trial, fold, epoch, DDP worker, loader process and prediction task on a node
reads the same `.npy` file (one copy in the page cache) instead of decoding every
JPEG again; random augmentations still run per sample and per epoch on the cached
uint8 HWC arrays. A cache holds one table's rows (train or test) in table order.

Its name is its content: the files' fingerprint (paths, sizes, modification times),
the side and the framing (pad to a square on white or stretch, invert). A second
invocation reuses it, a changed image gives another name. The folder is node-local
(`ORCHESTRATOR_CACHE`, default ~/.cache/orchestrator/images): the driver builds its
node's copy before the first trial; a trial on another node that finds none builds
that node's copy itself (under a file lock, so one build per node), never waiting on
another node.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # a type only: config imports the data package (its source registry)
    from orchestrator.config import DataConfig

VERSION = 1  # bump when the framing code changes what a cached pixel is
WHITE = 255  # pad colour: sketches are dark strokes on white paper


@dataclass(frozen=True)
class Framing:
    """The deterministic part of every pipeline: what the cache applies once."""

    side: int
    pad_square: bool  # pad to a square on white (sketch presets) or stretch to it (plain, none, custom lists)
    invert: bool  # white-on-black drawings to dark-on-white, before padding with white

    @property
    def slug(self) -> str:
        return f"v{VERSION}-{self.side}px-{'pad' if self.pad_square else 'stretch'}{'-inv' if self.invert else ''}"


def framing_for(data: DataConfig, augment: Any) -> Framing | None:
    """The framing a trial's images are cached with; None when `data.cache` is off."""
    from orchestrator.data.transforms import pads_to_square

    if data.cache == "off":
        return None
    return Framing(data.image_size if data.cache == "auto" else data.cache, pads_to_square(augment), data.invert)


def cache_dir() -> Path:
    from orchestrator.layout import cache_home

    return cache_home() / "images"


def files_fingerprint(paths: list[str]) -> str:
    """Paths, sizes and modification times: a replaced image under the same name changes it."""
    digest = hashlib.sha1()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cache_path(fingerprint: str, framing: Framing) -> Path:
    return cache_dir() / f"{fingerprint}-{framing.slug}.npy"


def read_framed(path: str, framing: Framing) -> np.ndarray:
    """One image as side x side x 3 uint8, framed the way the uncached pipeline frames it."""
    import cv2

    with Image.open(path) as image:
        image.draft("RGB", (framing.side, framing.side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when that still covers the side
        array = np.asarray(image.convert("RGB"))
    if framing.invert:
        array = 255 - array
    height, width = array.shape[:2]
    if not framing.pad_square:
        return cv2.resize(array, (framing.side, framing.side), interpolation=cv2.INTER_AREA)
    scale = framing.side / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    array = cv2.resize(array, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = (framing.side - new_h) // 2, (framing.side - new_w) // 2
    out = np.full((framing.side, framing.side, 3), WHITE, dtype=np.uint8)
    out[top:top + new_h, left:left + new_w] = array
    return out


def _fill(target: str, paths: list[str], start: int, framing: Framing) -> int:
    """Worker: decode paths[...] into rows start.. of the cache file being written."""
    array = np.load(target, mmap_mode="r+")
    for offset, path in enumerate(paths):
        array[start + offset] = read_framed(path, framing)
    array.flush()
    return len(paths)


def build(paths: list[str], framing: Framing, target: Path, processes: int | None = None, progress: bool = True) -> None:
    """Write the cache file for `paths` (every core by default), atomically: a partial file is never seen."""
    from orchestrator.console import progress as bar_of

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}.npy")
    np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(paths), framing.side, framing.side, 3)).flush()
    chunk = 256
    starts = range(0, len(paths), chunk)
    with ProcessPoolExecutor(processes or os.cpu_count() or 1) as pool, \
            bar_of(len(paths), f"decoding {len(paths)} images once ({framing.slug})", "img", sys.stdout,
                   disable=not progress, mininterval=2.0) as bar:
        jobs = [pool.submit(_fill, str(partial), paths[s:s + chunk], s, framing) for s in starts]
        for job in jobs:
            bar.update(job.result())
    os.replace(partial, target)


def ensure(paths: list[str], fingerprint: str, framing: Framing, processes: int | None = None,
           progress: bool = True) -> Path | None:
    """This node's cache file for `paths`, built if missing; None (decode instead) when the disk cannot hold it.

    A file lock makes concurrent callers on one node wait for one build; callers on
    other nodes build their own node's copy.
    """
    target = cache_path(fingerprint, framing)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    needed = len(paths) * framing.side * framing.side * 3
    free = shutil.disk_usage(target.parent).free
    if needed > free * 0.9:
        print(f"image cache: {needed / 2**30:.1f} GiB needed for {len(paths)} images at {framing.side}px, "
              f"{free / 2**30:.1f} GiB free in {target.parent}: decoding every epoch instead "
              f"(free space, or set ORCHESTRATOR_CACHE to a larger disk)", file=sys.stderr, flush=True)
        return None
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per node; the others find the file afterwards
        if not target.is_file():
            if progress:
                print(f"image cache: {len(paths)} images at {framing.side}px = {needed / 2**20:.0f} MiB in {target}",
                      flush=True)
            build(paths, framing, target, processes, progress)
    return target


def ensure_tables(train_paths: list[str], test_paths: list[str] | None, fingerprints: tuple[str, str], framing: Framing,
                  processes: int | None = None, progress: bool = True) -> tuple[Path | None, Path | None]:
    """This node's cache files of a grid's train and (if any) test images, both or neither.

    One framing serves both tables, so when either cannot be cached both decode.
    """
    train = ensure(train_paths, fingerprints[0], framing, processes, progress)
    if train is None or test_paths is None:
        return train, None
    test = ensure(test_paths, fingerprints[1], framing, processes, progress)
    return (train, test) if test is not None else (None, None)


class CachedImages:
    """Rows of one cache file, opened lazily (after a DataLoader forks its workers, each maps the same file)."""

    def __init__(self, path: str):
        self.path = path
        self._array: np.ndarray | None = None

    def __getitem__(self, index: int) -> np.ndarray:
        """A writable copy of one image (the mapping is read-only; a transform or tensor may write to its input)."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return np.array(self._array[index])

    def __getstate__(self) -> dict:
        return {"path": self.path, "_array": None}  # never pickle the mapping: each process maps the file itself
