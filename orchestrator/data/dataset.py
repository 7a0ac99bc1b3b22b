"""torch Dataset over (image path, target) rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from orchestrator.data.images import read_image


class ImageDataset(torch.utils.data.Dataset):
    """Reads and transforms one image per item; targets are -1 for unlabeled (test) rows."""

    def __init__(self, paths: Sequence[str], targets: Sequence[int] | None, transform: Any):
        self.paths = list(paths)
        self.targets = np.asarray(targets if targets is not None else [-1] * len(self.paths), dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            image = read_image(self.paths[index])
        except Exception as err:  # name the file: a bare decoder error mid-epoch says nothing
            raise RuntimeError(f"cannot read image {self.paths[index]}: {err}") from err
        return self.transform(image=image)["image"], int(self.targets[index])
