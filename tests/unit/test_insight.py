"""Per-class results, mistakes and Grad-CAM layers: readable at any class count, and the CAM not flat."""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest

from orchestrator.tracking.insight import confused_pairs, mistakes_text, per_class, worst_mistakes
from orchestrator.tracking.plots import READABLE_MATRIX, confusion_figure, gallery_figure

CLASSES = [f"n{i:04d}_sketch_of_thing_{i}" for i in range(300)]


@pytest.fixture
def predictions():
    """300 classes, 10 rows each, 80% right; class 7 always taken for class 8."""
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(300), 10)
    predicted = np.where(rng.random(len(targets)) < 0.8, targets, rng.integers(0, 300, len(targets)))
    predicted[targets == 7] = 8
    return targets, predicted


def test_the_per_class_table_names_every_class_and_what_it_is_taken_for(predictions):
    targets, predicted = predictions
    table = per_class(targets, predicted, CLASSES)
    assert len(table) == 300 and list(table["class_name"]) == CLASSES
    seven = table.iloc[7]
    assert (seven["recall"], seven["support"], seven["most_confused_with"]) == (0.0, 10, CLASSES[8])
    assert table["predicted"].sum() == len(targets)


def test_the_most_confused_pairs_are_named_and_counted(predictions):
    targets, predicted = predictions
    pairs = confused_pairs(targets, predicted, CLASSES, top=20)
    assert len(pairs) == 20 and (pairs.iloc[0]["true"], pairs.iloc[0]["predicted"]) == (CLASSES[7], CLASSES[8])
    assert pairs.iloc[0]["count"] == 10 and pairs.iloc[0]["share_of_true"] == 1.0
    assert pairs["count"].is_monotonic_decreasing


def test_the_mistakes_page_is_a_few_readable_lines_at_300_classes(predictions):
    targets, predicted = predictions
    table = per_class(targets, predicted, CLASSES)
    page = mistakes_text("config x", table, confused_pairs(targets, predicted, CLASSES, 20))
    lines = page.splitlines()
    assert len(lines) < 50 and max(map(len, lines)) < 160  # a page, not a 300 x 300 dump
    assert re.search(rf"{CLASSES[7]}\s+{CLASSES[8]}\s+10\s+100.0%", page)  # the worst pair, by name
    assert "300 classes, 3000 rows" in page


def test_past_a_readable_matrix_the_figure_is_the_named_top_pairs(predictions):
    targets, predicted = predictions
    pairs = confused_pairs(targets, predicted, CLASSES, 20)
    figure = confusion_figure(targets, predicted, CLASSES, pairs, "config x")
    axis = figure.axes[0]
    labels = [t.get_text() for t in axis.get_yticklabels()]
    assert len(labels) == 20 and labels[0].startswith("n0007_sketch_of_thing_7 -> n0008")
    assert figure.get_size_inches()[1] < 10  # 20 bars, whatever the class count
    few = [f"class {i}" for i in range(READABLE_MATRIX)]
    small = confusion_figure(targets % 30, predicted % 30, few, confused_pairs(targets % 30, predicted % 30, few, 20), "y")
    assert [t.get_text() for t in small.axes[0].get_xticklabels()] == few  # a matrix, labelled with names


def test_the_gallery_shows_the_most_confident_mistakes_first():
    oof = pd.DataFrame({"row_id": [10, 11, 12, 13], "fold": [0, 0, 1, 1], "target": [0, 1, 0, 1],
                        "prob_0": [0.9, 0.95, 0.2, 0.6], "prob_1": [0.1, 0.05, 0.8, 0.4]})
    worst = worst_mistakes(oof, top=5)
    assert list(worst["row_id"]) == [11, 12, 13]  # 0.95, 0.8, 0.6 confident; row 10 was right
    figure = gallery_figure([np.zeros((8, 8, 3), np.uint8)] * 3, ["a", "b", "c"], "t")
    assert [a.get_title() for a in figure.axes[:3]] == ["a", "b", "c"]


@pytest.mark.parametrize("name", ["test_resnet", "test_vit", "test_efficientnet"])
def test_grad_cam_finds_a_layer_whose_map_is_not_flat(name):
    import timm
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from orchestrator.train.explain import cam_layer

    torch.manual_seed(0)
    size = 32
    model = timm.create_model(name, pretrained=False, num_classes=3, **({"img_size": size} if "vit" in name else {})).eval()
    layer, reshape = cam_layer(model, size)
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=torch.randn(2, 3, size, size), targets=[ClassifierOutputTarget(1)] * 2)
    assert maps.shape == (2, size, size) and maps.std() > 0  # a 1x1 stage (stride 32 at 32 px) would be flat


def test_a_model_without_stages_or_blocks_is_refused_with_a_reason():
    import torch

    from orchestrator.train.explain import CamUnsupported, cam_layer

    with pytest.raises(CamUnsupported, match="neither transformer blocks nor timm feature_info"):
        cam_layer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)), 32)


def test_the_system_sampler_reports_the_nodes_cpu_and_memory_under_mlflows_names():
    from orchestrator.train.system import SystemSampler

    with SystemSampler(interval_s=0.1) as sampler:
        time.sleep(0.35)
        sample = sampler.take()
        assert {"cpu_utilization_percentage", "system_memory_usage_megabytes"} <= set(sample)
    assert not sampler.thread.is_alive()
