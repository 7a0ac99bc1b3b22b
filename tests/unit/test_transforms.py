"""Augmentation pipelines produce model-ready tensors; sketch presets pad with white."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orchestrator.config import TransformSpec
from orchestrator.data.transforms import PRESETS, Normalize, build_transforms, check_augment


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_make_square_uint8_tensors(preset):
    train, evaluate = build_transforms(preset, 24)
    image = np.full((40, 17, 3), 128, np.uint8)
    for pipeline in (train, evaluate):
        out = pipeline(image=image)["image"]
        assert tuple(out.shape) == (3, 24, 24) and out.dtype == torch.uint8  # the loaders move bytes, not floats


def test_normalize_on_the_device_matches_albumentations_normalize():
    import albumentations as A

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    expected = A.Normalize(mean=mean, std=std, max_pixel_value=255.0)(image=image)["image"].transpose(2, 0, 1)
    got = Normalize(mean, std)(torch.from_numpy(image).permute(2, 0, 1)[None])[0]
    assert got.dtype == torch.float32 and np.allclose(got.numpy(), expected, atol=1e-5)


def test_sketch_preset_pads_with_white():
    _, evaluate = build_transforms("sketch_light", 20)
    out = evaluate(image=np.zeros((40, 10, 3), np.uint8))["image"]  # tall black image
    assert out[:, :, 0].min() == 255 and out[:, :, 10].max() == 0  # white pad, black body


def test_custom_list_is_built():
    specs = [TransformSpec(name="HorizontalFlip", p=1.0)]
    train, _ = build_transforms(specs, 8)
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, 0] = 255
    assert train(image=image)["image"][0, 0, -1] == 255  # the white column moved right


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="item 0: Affine: bad arguments"):
        check_augment([TransformSpec(name="Affine", rotate="lots")])


def test_invert_frames_train_and_eval_alike():
    image = np.zeros((16, 16, 3), np.uint8)  # black paper
    for pipeline in build_transforms("sketch_light", 16, invert=True):
        assert pipeline(image=image)["image"].min() == 255  # became white


def test_sketch_heavy_fills_with_white():
    train, _ = build_transforms("sketch_heavy", 24)
    white = np.full((30, 30, 3), 255, np.uint8)
    for _ in range(20):  # whatever the random draw (rotation, dropout, distortion), paper stays white
        assert train(image=white)["image"].min() == 255
