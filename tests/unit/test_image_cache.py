"""The decode-once image cache: what it stores, when it is built again, and that trials read it."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from orchestrator.data import cache
from orchestrator.data.transforms import build_transforms, pads_to_square


@pytest.fixture(autouse=True)
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_CACHE", str(tmp_path / "cache"))


def drawings(folder, count=6):
    """Dark strokes on white, of mixed size, aspect and mode (L, RGB, CMYK), as JPEG and PNG."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        array = np.full((30 + 11 * i, 50 - 3 * i), 255, np.uint8)
        array[rng.integers(0, array.shape[0], 40), rng.integers(0, array.shape[1], 40)] = 0
        path = folder / f"d{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(array).convert(["L", "RGB", "CMYK"][i % 3] if i % 2 else "L").save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("augment,invert", [("sketch_light", False), ("plain", False), ("sketch_light", True)])
def test_cached_images_look_like_what_the_decoding_pipeline_frames(tmp_path, augment, invert):
    from orchestrator.data.images import read_image

    paths = drawings(tmp_path)
    framing = cache.Framing(24, pads_to_square(augment), invert)
    _, decode_eval = build_transforms(augment, 24, invert=invert)
    _, cached_eval = build_transforms(augment, 24, invert=invert, cached_side=24)
    for path in paths:
        decoded = decode_eval(image=read_image(path))["image"]
        cached = cached_eval(image=cache.read_framed(path, framing))["image"]
        assert decoded.shape == cached.shape == (3, 24, 24)
        assert (decoded.float() - cached.float()).abs().mean() < 13  # the same framing (of 255); resampling differs a little


def test_built_once_reused_and_rebuilt_when_an_image_changes(tmp_path):
    paths = drawings(tmp_path)
    framing = cache.Framing(16, pad_square=True, invert=False)
    fingerprint = cache.files_fingerprint(paths)
    built = cache.ensure(paths, fingerprint, framing, processes=1, progress=False)
    array = np.load(built, mmap_mode="r")
    assert array.shape == (6, 16, 16, 3) and array.dtype == np.uint8
    assert np.array_equal(array[3], cache.read_framed(paths[3], framing))
    stamp = built.stat().st_mtime_ns
    assert cache.ensure(paths, fingerprint, framing, processes=1, progress=False) == built
    assert built.stat().st_mtime_ns == stamp  # a second invocation reuses it
    Image.new("L", (9, 9), 0).save(paths[0])
    os.utime(paths[0], ns=(1, 1))
    assert cache.files_fingerprint(paths) != fingerprint  # a replaced image names another cache
    assert not list(built.parent.glob("*.partial-*"))


def test_no_room_on_disk_means_decoding_with_a_message(tmp_path, monkeypatch, capsys):
    import shutil

    paths = drawings(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**6, 10**6, 100))
    assert cache.ensure(paths, cache.files_fingerprint(paths), cache.Framing(16, True, False), progress=False) is None
    assert "decoding every epoch instead" in capsys.readouterr().err


def test_cached_rows_travel_to_loader_processes_without_their_mapping(tmp_path):
    paths = drawings(tmp_path)
    framing = cache.Framing(16, pad_square=True, invert=False)
    built = cache.ensure(paths, cache.files_fingerprint(paths), framing, processes=1, progress=False)
    images = cache.CachedImages(str(built))
    first = images[2]
    copy = pickle.loads(pickle.dumps(images))
    assert copy._array is None and np.array_equal(copy[2], first)


def test_a_trial_reads_the_cache_and_cache_off_decodes(tmp_path, tiny_sketch):
    from orchestrator.config import parse_grid
    from orchestrator.data.prepare import prepare_data, warm_caches
    from orchestrator.search.plan import plan_trials
    from orchestrator.train.setup import build_trial

    for setting, cached in (("auto", True), ("off", False)):
        grid = parse_grid({"name": f"c-{setting}", "data": {"source": "sketch_csv", "root": str(tiny_sketch), "image_size": 16,
                                                           "cache": setting, "folds": {"n_splits": 3}},
                           "models": [{"name": "test_resnet"}], "train": {"augment": "sketch_light"},
                           "tracking": {"storage": str(tmp_path / "storage")}})
        prepared = prepare_data(grid)
        trial = plan_trials(grid, prepared.trial_tables)[0].config
        warm_caches(prepared, {cache.framing_for(trial.data, trial.train.augment)} - {None})
        setup = build_trial(trial)
        items = setup.train_set().items
        assert all(isinstance(i, int) for i in items) is cached and len(items) == 12
        image, target = setup.val_set()[0]
        assert tuple(image.shape) == (3, 16, 16) and target == setup.val_rows["target"].iloc[0]
