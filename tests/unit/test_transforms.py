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


def test_curriculum_raises_the_share_of_augmented_images_in_the_loader_workers():
    """The level lives in shared memory: persistent loader workers see each epoch's value."""
    from orchestrator.data.dataset import ImageDataset

    level = torch.zeros(1).share_memory_()
    train, _ = build_transforms([TransformSpec(name="InvertImg", p=1.0)], 8, level=level)
    black = np.zeros((8, 8, 3), np.uint8)
    data = ImageDataset(list(range(400)), None, train, read=lambda item: black)
    loader = torch.utils.data.DataLoader(data, batch_size=100, num_workers=2, persistent_workers=True)
    shares = []
    for value in (0.0, 0.5, 1.0):  # what the loop sets from train.curriculum before each epoch
        level.fill_(value)
        images = torch.cat([batch for batch, _ in loader])
        shares.append((images[:, 0, 0, 0] == 255).float().mean().item())
    assert shares[0] == 0.0 and 0.4 < shares[1] < 0.6 and shares[2] == 1.0


def test_curriculum_level_rises_linearly_to_full():
    from orchestrator.config import CurriculumConfig

    ramp = CurriculumConfig(start=0.2, full_at_epoch=4)
    assert [ramp.level(e) for e in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


@pytest.mark.parametrize("policy", ["randaugment_sketch", "autoaugment_sketch"])
def test_sketch_policies_vary_the_drawing_and_fill_with_paper_white(policy):
    train, evaluate = build_transforms(policy, 24)
    drawing = np.full((24, 24, 3), 255, np.uint8)
    drawing[6:18, 10:14] = 0  # one dark stroke...
    drawing[6:18, 9] = drawing[6:18, 14] = 100  # ...with grey edges, as a JPEG's
    plain = evaluate(image=drawing)["image"]
    train.set_random_seed(0)
    outs = [train(image=drawing)["image"] for _ in range(60)]
    assert sum(not torch.equal(o, plain) for o in outs) >= 30  # most images are changed...
    assert len({o.numpy().tobytes() for o in outs}) >= 25  # ...in many different ways
    corners = torch.stack([o[:, [0, 0, -1, -1], [0, -1, 0, -1]] for o in outs])
    # moved or scaled content leaves paper at the corners: white, or light grey after posterize; dark only
    # where the image was inverted (a sketch case)
    assert (corners >= 224).float().mean() > 0.6


def test_the_sketch_policy_includes_invert_posterize_and_equalize():
    from orchestrator.data.transforms import SKETCH_SUBPOLICIES, _policy_ops

    ops = _policy_ops({"fill": 255}, sketch=True)
    named = {name for pair in SKETCH_SUBPOLICIES for name, _ in pair}
    assert {"invert", "posterize", "equalize"} <= named <= set(ops)
    drawing = np.full((8, 8, 3), 255, np.uint8)
    drawing[2:6, 3] = 0
    assert (ops["invert"](image=drawing)["image"] == 255 - drawing).all()
    assert set(np.unique(ops["posterize"](image=np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2))["image"]))\
        < set(range(256))  # fewer grey levels


def test_every_preset_says_what_it_does_and_light_noflip_never_mirrors():
    import albumentations as A

    from orchestrator.catalog import AUGMENT as PRESET_NOTES
    from orchestrator.data.transforms import PRESETS, check_augment

    assert list(PRESET_NOTES) == list(PRESETS)
    flips = {name for name, (_, train) in PRESETS.items() if any(isinstance(t, A.HorizontalFlip) for t in train(32))}
    assert "light_noflip" not in flips and "none" not in flips and "sketch_light" in flips
    assert all(("flip" in PRESET_NOTES[name]) for name in flips)  # the table says which presets mirror
    with pytest.raises(ValueError, match=r"(?s)valid presets:\n.*light_noflip +sketch_light without the flip"):
        check_augment("light")
