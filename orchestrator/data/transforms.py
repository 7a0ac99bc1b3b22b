"""albumentations pipelines: presets by name, or a YAML list of transforms with args.

Every pipeline is geometry (to `image_size`) -> train-only augmentation -> a
uint8 CHW tensor; evaluation uses the same geometry without augmentation, so
train and eval see images framed the same way. `Normalize` turns batches into the
model's float input on the model's device.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2

from orchestrator.catalog import check_preset

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


def _light_noflip_train(size: int) -> list[Any]:
    import albumentations as A

    return [A.Affine(rotate=(-10, 10), scale=(0.9, 1.1), border_mode=cv2.BORDER_CONSTANT, fill=WHITE, p=0.7)]


def _sketch_light_train(size: int) -> list[Any]:
    import albumentations as A

    return [*_light_noflip_train(size), A.HorizontalFlip(p=0.5)]


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


def _policy_ops(white: dict[str, Any], sketch: bool) -> dict[str, Any]:
    """RandAugment's operations at magnitude 9 of 10 (timm's `rand-m9`), as albumentations transforms that always apply.

    Geometry fills with `white` (paper, for sketches); sketch policies add stroke thickness
    and white cut-outs, and leave out colour operations that sketches do not have.
    """
    import albumentations as A

    ops = {
        "rotate": A.Affine(rotate=(-27, 27), p=1.0, **white),
        "shear_x": A.Affine(shear={"x": (-16, 16), "y": (0, 0)}, p=1.0, **white),
        "shear_y": A.Affine(shear={"x": (0, 0), "y": (-16, 16)}, p=1.0, **white),
        "translate": A.Affine(translate_percent=(-0.14, 0.14), p=1.0, **white),
        "scale": A.Affine(scale=(0.75, 1.25), p=1.0, **white),
        "posterize": A.Posterize(num_bits=(4, 6), p=1.0),
        "equalize": A.Equalize(p=1.0),
        "autocontrast": A.AutoContrast(p=1.0),
        "invert": A.InvertImg(p=1.0),
        "sharpen": A.Sharpen(alpha=(0.2, 0.6), p=1.0),
    }
    if sketch:
        ops["thicker"] = A.Morphological(scale=(2, 3), operation="erosion", p=1.0)  # dark strokes on white paper
        ops["cutout"] = A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.1, 0.2),
                                        hole_width_range=(0.1, 0.2), fill=WHITE, p=1.0)
    else:
        ops["solarize"] = A.Solarize(threshold_range=(0.5, 0.5), p=1.0)
        ops["brightness_contrast"] = A.RandomBrightnessContrast(brightness_limit=0.35, contrast_limit=0.35, p=1.0)
    return ops


def _randaugment(sketch: bool) -> Callable[[int], list[Any]]:
    """RandAugment (Cubuk et al. 2020): two operations drawn at random per image, at a fixed magnitude."""

    def train(size: int) -> list[Any]:
        import albumentations as A

        white = {"border_mode": cv2.BORDER_CONSTANT, "fill": WHITE} if sketch else {"border_mode": cv2.BORDER_REFLECT_101}
        return [A.SomeOf(list(_policy_ops(white, sketch).values()), n=2, p=1.0), A.HorizontalFlip(p=0.5)]

    return train


# AutoAugment-style sub-policies for sketches: one pair is drawn per image, each op with its own probability
SKETCH_SUBPOLICIES = [(("posterize", 0.4), ("rotate", 0.6)), (("equalize", 0.6), ("shear_x", 0.5)),
                      (("invert", 0.2), ("equalize", 0.6)), (("rotate", 0.8), ("thicker", 0.4)),
                      (("translate", 0.6), ("cutout", 0.4)), (("autocontrast", 0.6), ("shear_y", 0.5)),
                      (("scale", 0.6), ("sharpen", 0.4)), (("posterize", 0.6), ("translate", 0.4))]


def _autoaugment_sketch_train(size: int) -> list[Any]:
    import albumentations as A

    ops = _policy_ops({"border_mode": cv2.BORDER_CONSTANT, "fill": WHITE}, sketch=True)

    def op(name: str, p: float):
        clone = copy.deepcopy(ops[name])
        clone.p = p
        return clone

    return [A.OneOf([A.Sequential([op(*first), op(*second)]) for first, second in SKETCH_SUBPOLICIES], p=1.0),
            A.HorizontalFlip(p=0.5)]


# catalog.AUGMENT's preset names -> (geometry factory, train-only augmentation factory)
PRESETS: dict[str, tuple[Callable[[int], list[Any]], Callable[[int], list[Any]]]] = {
    "none": (_resize, lambda size: []),
    "plain": (_resize, _plain_train),
    "sketch_light": (_pad_square_white, _sketch_light_train),
    "light_noflip": (_pad_square_white, _light_noflip_train),  # a mirror changes characters, digits and text
    "sketch_heavy": (_pad_square_white, _sketch_heavy_train),
    # automatic augmentation policies (the teams' RandAugment / AutoAugment runs)
    "randaugment": (_resize, _randaugment(sketch=False)),
    "randaugment_sketch": (_pad_square_white, _randaugment(sketch=True)),
    "autoaugment_sketch": (_pad_square_white, _autoaugment_sketch_train),
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
        check_preset(augment)
        return
    for index, spec in enumerate(augment):
        try:
            _transform_from_spec(spec)
        except ValueError as err:
            raise ValueError(f"item {index}: {err}") from None


def pads_to_square(augment: str | Sequence[Any]) -> bool:
    """Whether the pipeline frames images by padding them to a square on white (else it stretches them)."""
    return isinstance(augment, str) and PRESETS[augment][0] is _pad_square_white


class Rising:
    """A train pipeline whose augmentation applies to a share of the images: the value of `level` (0..1).

    `level` is a one-element tensor in shared memory: the loop raises it between epochs
    (train.curriculum) and the loader's worker processes, which hold this object, see it.
    """

    def __init__(self, augmented: Any, plain: Any, level: torch.Tensor):
        self.augmented, self.plain, self.level = augmented, plain, level

    def __call__(self, image):
        import random

        return (self.augmented if random.random() < float(self.level[0]) else self.plain)(image=image)


def build_transforms(augment: str | Sequence[Any], image_size: int, invert: bool = False, cached_side: int | None = None,
                     level: torch.Tensor | None = None):
    """Return (train, eval) albumentations Compose objects producing CHW uint8 tensors (`Normalize` follows on the device).

    `invert` (data.invert) turns white-on-black drawings into dark-on-white ones, in
    train and eval alike, before anything pads or fills with white. `cached_side`: the
    images come from the decode-once cache, already inverted and framed to a square of
    that side, so only a resize to image_size (if it differs) is left of the framing. `level`: the
    train pipeline is `Rising` (curriculum augmentation).
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
    train, plain = A.Compose(frame + extra + tail), A.Compose(frame + tail)
    return (train if level is None else Rising(train, plain, level)), plain


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
