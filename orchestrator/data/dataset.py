"""torch Dataset over (image, target) rows: images decoded from their files, or read from the decode-once cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from orchestrator.data.images import read_image


class ImageDataset(torch.utils.data.Dataset):
    """Reads and transforms one image per item; targets are class indices, or multi-hot rows (rows, tags) for a
    multilabel task, and -1 for unlabeled (test) rows.

    `items` are file paths read with `read` (default: decode the file), or row numbers
    of a cache file with `read=CachedImages(path).__getitem__`.
    """

    def __init__(self, items: Sequence[Any], targets: Sequence[int] | np.ndarray | None, transform: Any,
                 read: Callable[[Any], np.ndarray] = read_image):
        self.items, self.read = list(items), read
        targets = np.asarray(targets if targets is not None else [-1] * len(self.items))
        self.targets = targets.astype(np.float32 if targets.ndim == 2 else np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        try:
            image = self.read(self.items[index])
        except Exception as err:  # name the file: a bare decoder error mid-epoch says nothing
            raise RuntimeError(f"cannot read image {self.items[index]}: {err}") from err
        target = self.targets[index]
        return self.transform(image=image)["image"], torch.from_numpy(target) if target.ndim else int(target)
