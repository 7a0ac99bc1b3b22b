"""Multi-head models: heads compose the classes, each head has its loss and scores, downstream sees 18 classes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from orchestrator.config import LossConfig
from orchestrator.train.heads import HEADS, ComposedHeads, head_scores
from orchestrator.train.losses import create_loss
from orchestrator.train.models import create_model

MASK = HEADS["mask"]


def test_the_class_index_is_mask_times_6_plus_gender_times_3_plus_age():
    classes = torch.arange(18)
    mask, gender, age = MASK.targets(classes)
    assert torch.equal(mask * 6 + gender * 3 + age, classes)
    assert (mask[13], gender[13], age[13]) == (2, 0, 1)


def test_composed_log_probabilities_marginalise_back_to_each_heads_softmax():
    torch.manual_seed(0)
    backbone = torch.nn.Linear(5, 8)  # 3 + 2 + 3 outputs
    model = ComposedHeads(backbone, MASK)
    x = torch.randn(4, 5)
    composed = model(x)
    assert composed.shape == (4, 18) and torch.allclose(composed.exp().sum(1), torch.ones(4))
    raw = backbone(x).split([3, 2, 3], dim=1)
    for head, own in zip(MASK.split(composed), raw):
        assert torch.allclose(head, F.log_softmax(own, 1), atol=1e-5)
    # p(class) = p(mask) p(gender) p(age)
    assert torch.allclose(composed[:, 13], sum(F.log_softmax(r, 1)[:, i] for r, i in zip(raw, (2, 0, 1))), atol=1e-5)


def test_a_timm_model_with_heads_is_an_18_class_model_that_delegates_timm_attributes():
    model = create_model("test_resnet", 18, heads="mask")
    out = model(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 18) and torch.allclose(out.exp().sum(1), torch.ones(2), atol=1e-5)
    assert model.get_classifier().out_features == 8 and "mean" in model.pretrained_cfg
    with pytest.raises(ValueError, match=r"heads .mask. compose 18 classes .* but the data has 10"):
        create_model("test_resnet", 10, heads="mask")


def test_the_heads_loss_is_the_weighted_sum_of_each_heads_own_loss():
    torch.manual_seed(1)
    composed = ComposedHeads(torch.nn.Linear(5, 8), MASK)(torch.randn(6, 5))
    targets = torch.randint(0, 18, (6,))
    cfg = LossConfig(label_smoothing=0.0, heads={"age": {"name": "focal", "gamma": 2.0, "weight": 2.0, "label_smoothing": 0.0},
                                                 "gender": {"weight": 0.5, "label_smoothing": 0.0}})
    loss = create_loss(cfg, [10] * 18, heads="mask")(composed, targets)
    heads, truth = MASK.split(composed), MASK.targets(targets)
    focal = create_loss(LossConfig(name="focal", gamma=2.0, label_smoothing=0.0), [1, 1, 1])(heads[2], truth[2])
    expected = F.cross_entropy(heads[0], truth[0]) + 0.5 * F.cross_entropy(heads[1], truth[1]) + 2.0 * focal
    assert torch.isclose(loss, expected, atol=1e-5)
    soft = F.one_hot(targets, 18).float()  # MixUp's soft targets give the same loss as their hard labels
    assert torch.isclose(create_loss(cfg, [10] * 18, heads="mask")(composed, soft), expected, atol=1e-5)
    with pytest.raises(ValueError, match="no head glasses in 'mask'; its heads: mask, gender, age"):
        create_loss(LossConfig(heads={"glasses": {}}), [1] * 18, heads="mask")


def test_balanced_class_weights_are_per_head():
    counts = torch.zeros(18, dtype=torch.long)
    counts[[0, 6, 12]] = torch.tensor([100, 10, 10])  # mask class 0 is ten times as frequent
    loss = create_loss(LossConfig(class_weights="balanced"), counts.tolist(), heads="mask")
    mask_weight = loss.losses[0].weight
    assert mask_weight[1] == pytest.approx(10 * mask_weight[0])


def test_a_multi_head_model_learns_a_factorised_label_and_scores_each_head():
    torch.manual_seed(0)
    x = torch.randn(360, 8)
    mask, gender, age = (x[:, 0] > 0.4).long() + (x[:, 0] > -0.4).long(), (x[:, 1] > 0).long(), (x[:, 2] > 0).long() * 2
    y = mask * 6 + gender * 3 + age
    model = ComposedHeads(torch.nn.Linear(8, 8), MASK)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = create_loss(LossConfig(), torch.bincount(y, minlength=18).tolist(), heads="mask")
    for _ in range(150):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    scores = head_scores(MASK, model(x).detach(), y)
    assert scores["val_acc_gender"] > 0.95 and scores["val_acc_mask"] > 0.85 and set(scores) == {
        f"val_{s}_{h}" for s in ("acc", "f1") for h in ("mask", "gender", "age")}
    assert (model(x).argmax(1) == y).float().mean() > 0.8  # the composed class follows


def test_the_plan_refuses_heads_that_do_not_compose_the_datas_classes():
    from orchestrator.config import TrialTables, parse_grid
    from orchestrator.errors import InputError
    from orchestrator.search.plan import plan_trials

    grid = parse_grid({"name": "g", "data": {"source": "sketch_csv"}, "models": [{"name": "test_resnet", "heads": "mask"}]})
    tables = TrialTables(folds_path="f", test_path=None, num_classes=10, fingerprint="abc")
    with pytest.raises(InputError, match=r"models\[0\].heads: 'mask' composes 18 classes \(mask 3 x gender 2 x age 3\)"):
        plan_trials(grid, tables)
    with pytest.raises(InputError, match="unknown heads 'glasses'; valid: mask"):
        parse_grid({"name": "g", "data": {}, "models": [{"name": "test_resnet", "heads": "glasses"}]})


def test_grad_cam_explains_a_composed_class_of_a_multi_head_model():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from orchestrator.train.explain import cam_layer

    torch.manual_seed(0)
    model = create_model("resnet10t", 18, heads="mask").eval()
    layer, reshape = cam_layer(model, 32)
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=torch.randn(2, 3, 32, 32), targets=[ClassifierOutputTarget(13)] * 2)
    assert maps.shape == (2, 32, 32) and maps.std() > 0
