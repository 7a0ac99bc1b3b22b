"""Reading images, and checking up front that every row's image exists and opens."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from orchestrator.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_image(path: str) -> np.ndarray:
    """HxWx3 uint8 RGB, whatever the file's mode (L, RGBA, P, CMYK...)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def safe_join(base: Path, relative: str, where: str) -> str:
    """`base/relative` as an absolute path; refuse absolute paths and `..` escapes from `base`."""
    if not isinstance(relative, str) or not relative.strip():
        raise InputError(f"{where}: empty image_path")
    if os.path.isabs(relative) or relative.startswith("~"):
        raise InputError(f"{where}: image_path {relative!r} must be relative to {base}")
    base_abs = os.path.abspath(base)
    joined = os.path.normpath(os.path.join(base_abs, relative))
    if os.path.commonpath([base_abs, joined]) != base_abs:
        raise InputError(f"{where}: image_path {relative!r} escapes the data root {base}")
    return joined


def _problem(path: str) -> str | None:
    if not os.path.isfile(path):
        return "missing"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as err:  # noqa: BLE001 - any decoder error means unreadable
        return f"unreadable ({type(err).__name__})"
    return None


def check_images(paths: Sequence[str], describe: Callable[[int], str], threads: int = 8) -> None:
    """Raise one InputError listing rows whose image is missing or does not open.

    `describe(i)` names row i for the message, e.g. "train.csv line 17".
    """
    with ThreadPoolExecutor(threads) as pool:
        problems = list(pool.map(_problem, paths, chunksize=256))
    bad = [(i, p) for i, p in enumerate(problems) if p]
    if bad:
        shown = "\n  ".join(f"{describe(i)}: {paths[i]} is {p}" for i, p in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise InputError(f"{len(bad)} of {len(paths)} images cannot be used (fix or remove these rows):\n  {shown}{more}")
