"""Every registry's names, and the little that validating a grid needs of each entry: no heavy imports.

config.py checks a grid's values against these, so loading a grid imports neither torch, timm nor
albumentations. The registries that implement the names are keyed by the same ones:

    SOURCES        data/sources.py      SOURCES (the loaders and submission writers)
    OPTIMIZERS     train/optim.py       create_optimizer (timm's create_optimizer_v2)
    LR_SCHEDULERS  train/optim.py       LR_SCHEDULERS
    LOSSES         train/losses.py      LOSSES
    HEADS          train/heads.py       HEADS
    AUGMENT        data/transforms.py   PRESETS

tests/unit/test_config.py fails when a registry and its names here disagree. A new entry is a name
here and a factory there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceRules:
    """What a data source fixes in a grid that does not set it."""

    fold_kind: str | None = None  # the only fold kind that keeps this source's groups apart (default and required)
    metric: str | None = None  # the competition's metric: scheduler.metric when the grid does not set one


SOURCES: dict[str, SourceRules] = {
    # seven photos of one person in two folds would leak; the competition is scored by macro F1
    "mask": SourceRules(fold_kind="stratified_group", metric="val_f1"),
    "csv": SourceRules(),
    "sketch_csv": SourceRules(),
    "image_folder": SourceRules(),
    "demo": SourceRules(),
}


@dataclass(frozen=True)
class OptimizerDefaults:
    timm_name: str  # what create_optimizer_v2 is asked for
    lr: float  # what a grid that sets no train.optimizer.lr gets
    weight_decay: float


# name -> timm optimizer and the lr / weight decay a grid gets when it sets none (adaptive optimizers take
# 2e-3 and decoupled decay 0.05; SGD with momentum needs ~50x the step and L2-sized decay)
OPTIMIZERS: dict[str, OptimizerDefaults] = {
    "adamw": OptimizerDefaults("adamw", 2e-3, 0.05),  # measured: 1e-3 / 2e-3 / 4e-3 (docs/techniques.md)
    "adam": OptimizerDefaults("adam", 2e-3, 0.0),
    "radam": OptimizerDefaults("radam", 2e-3, 0.0),
    "lamb": OptimizerDefaults("lamb", 4e-3, 0.05),
    "sgd": OptimizerDefaults("sgd", 0.1, 5e-4),  # measured: 0.03 / 0.1
}

LR_SCHEDULERS = ("cosine", "step", "plateau", "one_cycle", "constant")

LOSSES = ("cross_entropy", "focal", "soft_target", "f1", "bce", "asl", "focal_bce")
TAG_LOSSES = ("bce", "asl", "focal_bce")  # a sigmoid per tag: the multilabel task's (and only its)

HEADS = ("mask",)  # mask 3 x gender 2 x age 3

# augmentation preset -> what it does, for people: the error that lists valid names, and the docs' table
AUGMENT: dict[str, str] = {
    "none": "resize to image_size; no augmentation",
    "plain": "resize to image_size; horizontal flip",
    "sketch_light": "pad to a white square; rotate +-10 deg, scale 0.9-1.1 (white fill); horizontal flip",
    "light_noflip": "sketch_light without the flip: for characters, digits and text, which a mirror changes",
    "sketch_heavy": "sketch_light plus shear, shift, thicker/thinner strokes, elastic or grid distortion, white "
                    "cut-outs; horizontal flip",
    "randaugment": "RandAugment: 2 of 12 operations per image at magnitude 9 (reflected borders); horizontal flip",
    "randaugment_sketch": "RandAugment on a white square: white fill, no colour operations, plus thicker strokes "
                          "and white cut-outs; horizontal flip",
    "autoaugment_sketch": "AutoAugment-style: one of 8 sub-policy pairs per image (white square); horizontal flip",
}


def preset_table() -> str:
    """One line per augmentation preset: its name and what it does."""
    width = max(map(len, AUGMENT))
    return "\n".join(f"    {name:<{width}}  {note}" for name, note in AUGMENT.items())


def check_preset(name: str) -> str:
    """`name` if it is an augmentation preset; else ValueError with the table of presets."""
    if name not in AUGMENT:
        raise ValueError(f"unknown augment preset {name!r}; valid presets:\n{preset_table()}\n"
                         f"  or a list of albumentations transforms")
    return name


def check_name(value: str, names, what: str) -> str:
    """`value` if it is one of `names`; else ValueError listing the valid ones."""
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(sorted(names))}")
    return value
