"""Augmentation pipelines produce model-ready tensors; sketch presets pad with white."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.config import TransformSpec
from orchestrator.data.transforms import PRESETS, build_transforms, check_augment

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_make_square_tensors(preset):
    train, evaluate = build_transforms(preset, 24, MEAN, STD)
    image = np.full((40, 17, 3), 128, np.uint8)
    for pipeline in (train, evaluate):
        assert tuple(pipeline(image=image)["image"].shape) == (3, 24, 24)


def test_sketch_preset_pads_with_white():
    _, evaluate = build_transforms("sketch_light", 20, MEAN, STD)
    out = evaluate(image=np.zeros((40, 10, 3), np.uint8))["image"]  # tall black image
    assert out[:, :, 0].min() == pytest.approx(1.0) and out[:, :, 10].max() == pytest.approx(-1.0)  # white pad, black body


def test_custom_list_is_built():
    specs = [TransformSpec(name="HorizontalFlip", p=1.0)]
    train, _ = build_transforms(specs, 8, MEAN, STD)
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, 0] = 255
    assert train(image=image)["image"][0, 0, -1] == pytest.approx(1.0)  # the white column moved right


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="item 0: Affine: bad arguments"):
        check_augment([TransformSpec(name="Affine", rotate="lots")])


def test_invert_frames_train_and_eval_alike():
    image = np.zeros((16, 16, 3), np.uint8)  # black paper
    for pipeline in build_transforms("sketch_light", 16, MEAN, STD, invert=True):
        assert pipeline(image=image)["image"].min() == pytest.approx(1.0)  # became white


def test_sketch_heavy_fills_with_white():
    train, _ = build_transforms("sketch_heavy", 24, MEAN, STD)
    white = np.full((30, 30, 3), 255, np.uint8)
    for _ in range(20):  # whatever the random draw (rotation, dropout, distortion), paper stays white
        assert train(image=white)["image"].min() == pytest.approx(1.0)
