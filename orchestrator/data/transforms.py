"""albumentations pipelines: presets by name, or a YAML list of transforms with args.

Every pipeline is geometry (to `image_size`) -> train-only augmentation -> a
uint8 CHW tensor; evaluation uses the same geometry without augmentation, so
train and eval see images framed the same way. `Normalize` turns batches into the
model's float input on the model's device.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2

if TYPE_CHECKING:
    import torch

WHITE = 255  # sketches are dark strokes on white paper: pad and fill with white


def _resize(size: int) -> list[Any]:
    import albumentations as A

    return [A.Resize(size, size)]


def _pad_square_white(size: int) -> list[Any]:
    import albumentations as A

    return [A.LongestMaxSize(max_size=size), A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=WHITE)]


def _plain_train(size: int) -> list[Any]:
    import albumentations as A

    return [A.HorizontalFlip(p=0.5)]


def _sketch_light_train(size: int) -> list[Any]:
    import albumentations as A

    return [
        A.Affine(rotate=(-10, 10), scale=(0.9, 1.1), border_mode=cv2.BORDER_CONSTANT, fill=WHITE, p=0.7),
        A.HorizontalFlip(p=0.5),
    ]


def _sketch_heavy_train(size: int) -> list[Any]:
    """Stroke-level variety: thicker/thinner lines, missing pieces, wobbly hands; every fill is paper white."""
    import albumentations as A

    white = {"border_mode": cv2.BORDER_CONSTANT, "fill": WHITE}
    return [
        A.Affine(rotate=(-15, 15), scale=(0.85, 1.15), translate_percent=(-0.06, 0.06), shear=(-8, 8), p=0.8, **white),
        A.OneOf([A.Morphological(scale=(2, 3), operation="erosion"),  # on white paper: thicker dark strokes
                 A.Morphological(scale=(2, 3), operation="dilation")], p=0.3),  # thinner strokes
        # these two remap with black despite fill=255 (albumentations 2.0.8); replicating the border
        # gives white, as a drawing's margin is paper
        A.OneOf([A.ElasticTransform(alpha=30, sigma=5, border_mode=cv2.BORDER_REPLICATE),
                 A.GridDistortion(distort_limit=(-0.2, 0.2), border_mode=cv2.BORDER_REPLICATE)], p=0.3),
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15), fill=WHITE, p=0.3),
        A.HorizontalFlip(p=0.5),
    ]


# preset name -> (geometry factory, train-only augmentation factory)
PRESETS: dict[str, tuple[Callable[[int], list[Any]], Callable[[int], list[Any]]]] = {
    "none": (_resize, lambda size: []),
    "plain": (_resize, _plain_train),
    "sketch_light": (_pad_square_white, _sketch_light_train),
    "sketch_heavy": (_pad_square_white, _sketch_heavy_train),
}


def _transform_from_spec(spec: Any) -> Any:
    """Build one albumentations transform from a TransformSpec (or its dict); ValueError names it."""
    import albumentations as A

    args = dict(spec.model_extra or {}) if hasattr(spec, "model_extra") else {k: v for k, v in spec.items() if k != "name"}
    name = spec.name if hasattr(spec, "name") else spec["name"]
    cls = getattr(A, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, A.BasicTransform)):
        import difflib

        names = [n for n in dir(A) if inspect.isclass(getattr(A, n)) and issubclass(getattr(A, n), A.BasicTransform)]
        close = difflib.get_close_matches(name, names, n=3)
        raise ValueError(f"unknown albumentations transform {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ValueError(f"{name}: unknown argument(s) {', '.join(unknown)}; valid: {', '.join(sorted(accepted))}")
    try:
        return cls(**args)
    except Exception as err:  # noqa: BLE001 - albumentations validates args with pydantic (and raises what it likes)
        raise ValueError(f"{name}: bad arguments: {str(err).splitlines()[0]} {str(err).splitlines()[1:3]}") from None


def check_augment(augment: str | Sequence[Any]) -> None:
    """Raise ValueError naming the preset / transform / argument that is wrong."""
    if isinstance(augment, str):
        if augment not in PRESETS:
            raise ValueError(f"unknown augment preset {augment!r}; valid: {', '.join(sorted(PRESETS))}, or a list of transforms")
        return
    for index, spec in enumerate(augment):
        try:
            _transform_from_spec(spec)
        except ValueError as err:
            raise ValueError(f"item {index}: {err}") from None


def pads_to_square(augment: str | Sequence[Any]) -> bool:
    """Whether the pipeline frames images by padding them to a square on white (else it stretches them)."""
    return isinstance(augment, str) and PRESETS[augment][0] is _pad_square_white


def build_transforms(augment: str | Sequence[Any], image_size: int, invert: bool = False, cached_side: int | None = None):
    """Return (train, eval) albumentations Compose objects producing CHW uint8 tensors (`Normalize` follows on the device).

    `invert` (data.invert) turns white-on-black drawings into dark-on-white ones, in
    train and eval alike, before anything pads or fills with white. `cached_side`: the
    images come from the decode-once cache, already inverted and framed to a square of
    that side, so only a resize to image_size (if it differs) is left of the framing.
    """
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    if isinstance(augment, str):
        geometry, train_aug = PRESETS[augment]
        extra = train_aug(image_size)
    else:
        geometry, extra = _resize, [_transform_from_spec(spec) for spec in augment]
    frame = ([A.InvertImg(p=1.0)] if invert else []) + geometry(image_size)
    if cached_side is not None:
        frame = [] if cached_side == image_size else _resize(image_size)
    tail = [ToTensorV2()]  # HWC uint8 -> CHW uint8: batches cross worker queues and the host-GPU bus at 1 byte a value
    return A.Compose(frame + extra + tail), A.Compose(frame + tail)


@dataclass(frozen=True)
class Normalize:
    """Image batches of 0-255 values (uint8 from the loaders) -> the model's normalised float input, where the batch is.

    Loaders hand over uint8 and the model's device converts: a quarter of float32's
    bytes to move, and the arithmetic runs on the GPU when there is one.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        import torch

        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1) * 255.0
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1) * 255.0
        return (images.float() - mean) / std
