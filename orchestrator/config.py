"""grid.yaml as one typed config tree.

`load_grid` is the only place YAML is read: it applies `--set` overrides, validates
with pydantic (`extra="forbid"` everywhere) and turns every problem into an
`InputError` that names the file and the dotted field. Trials receive their config
from Tune as a plain dict and validate it back into `TrialConfig`.
"""

from __future__ import annotations

import difflib
import functools
import itertools
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator import catalog
from orchestrator.catalog import check_name
from orchestrator.errors import InputError
from orchestrator.layout import GridLayout
from orchestrator.metrics import DEFAULT_METRIC, METRICS
from orchestrator.protocol import EpochReport


def _in_registry(names: Collection[str], what: str):
    """A field validator: the value must be one of `names` (a catalog's); the error lists the valid ones."""

    def check(cls, value: str) -> str:
        return check_name(value, names, what)

    return check


class Strict(BaseModel):
    """Base for every config node: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", validate_default=True, use_attribute_docstrings=True)


# A key added to the schema once trials have run: give its Field `json_schema_extra=ADDED_LATER` and a default
# that keeps the old behaviour. Its value counts in a trial's config_id only when it differs from that default,
# so trials that ran before the key existed keep their ids (and are reused); see `added_later` and
# search/plan.py's config_id. tests/unit/test_plan.py pins the shipped experiments' ids.
ADDED_LATER = {"identity": "when_set"}


@functools.cache  # the schema does not change; config_id asks once per planned trial
def added_later(schema: type[BaseModel], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Path -> default (as JSON) of every ADDED_LATER key under `schema`, through nested config nodes (read-only); a
    `dict[str, node]` field's values are the path part "*" (loss.heads' per-head losses)."""
    from pydantic_core import to_jsonable_python

    found: dict[tuple[str, ...], Any] = {}
    for name, field in schema.model_fields.items():
        path = (*prefix, field.alias or name)
        if field.json_schema_extra == ADDED_LATER:
            found[path] = to_jsonable_python(field.get_default(call_default_factory=True))
        elif (child := _model_of(field.annotation)) is not None and get_origin(field.annotation) is not list:
            found |= added_later(child, (*path, "*") if get_origin(field.annotation) is dict else path)
    return found


# --------------------------------------------------------------------------- data

CSV_KEYS = {"train_csv", "train_images", "test_csv", "test_images", "id_column", "label_column", "group_column", "task",
            "submit", "label_separator"}


class FoldsConfig(Strict):
    kind: Literal["stratified", "stratified_group", "holdout"] = "stratified"
    """stratified (by class) | stratified_group (by class, a group in one fold: mask's persons) | holdout (one fold)"""
    n_splits: int = Field(5, ge=2, le=100)
    """folds (holdout: 1 / n_splits of the rows validate)"""
    use: list[int] | None = None
    """which folds train; None = all"""

    @model_validator(mode="after")
    def _check_use(self) -> FoldsConfig:
        available = [0] if self.kind == "holdout" else list(range(self.n_splits))
        for fold in self.use or []:
            if fold not in available:
                raise ValueError(f"use: fold {fold} does not exist; {self.kind} with n_splits={self.n_splits} has folds {available}")
        if self.use is not None and len(set(self.use)) != len(self.use):
            raise ValueError("use: lists a fold twice")
        return self

    def folds_to_train(self) -> list[int]:
        return self.use if self.use is not None else ([0] if self.kind == "holdout" else list(range(self.n_splits)))


class DataConfig(Strict):
    """Where the images are and how they are framed and split."""

    source: str = "sketch_csv"
    """how the data root is laid out: csv (your competition's CSV) | sketch_csv | mask | image_folder | demo
    (docs/data.md)"""
    root: Path = Path("data")
    """the data's folder (relative paths: from where the command runs); image paths may not leave it"""
    image_size: int = Field(32, ge=8, le=2048)
    """the square side the model sees"""
    folds: FoldsConfig = Field(default_factory=FoldsConfig)
    """how training rows are split into folds"""
    invert: bool = False
    """white-on-black drawings (raw QuickDraw): invert to dark-on-white, in train and eval"""
    age_bins: list[int] = Field(default_factory=lambda: [30, 60])
    """mask: age < 30 -> 0, 30..59 -> 1, >= 60 -> 2"""
    test_root: Path | None = None
    """image_folder only: a flat folder of test images"""
    train_csv: str = Field("train.csv", json_schema_extra=ADDED_LATER)
    """csv: the training rows (an image id and a label per row), relative to data.root"""
    train_images: str = Field("train_images", json_schema_extra=ADDED_LATER)
    """csv: the folder of the training images, relative to data.root ("." for data.root itself)"""
    test_csv: str | None = Field("sample_submission.csv", json_schema_extra=ADDED_LATER)
    """csv: the rows to predict, in submission order (usually the sample submission); its columns are the
    submission's. The default may be absent (then no test set); null: none"""
    test_images: str = Field("test_images", json_schema_extra=ADDED_LATER)
    """csv: the folder of the test images, relative to data.root"""
    id_column: str | None = Field(None, json_schema_extra=ADDED_LATER)
    """csv: the column naming each row's image: a file name, a stem (`<id>.png` is found when exactly one file
    matches) or a relative path; null: the column named id, image_id, image, image_name, file_name, filename or
    image_path, else the first column"""
    label_column: str | None = Field(None, json_schema_extra=ADDED_LATER)
    """csv: the column of class names (strings) or class numbers (ints); null: the column named label, labels,
    target, class or category, else the second column of a two-column CSV"""
    group_column: str | None = Field(None, json_schema_extra=ADDED_LATER)
    """csv: rows of one group (a patient, a person) stay in one fold; set data.folds.kind: stratified_group"""
    task: Literal["multiclass", "multilabel"] = Field("multiclass", json_schema_extra=ADDED_LATER)
    """csv: multiclass (one label per image) | multilabel (any number of tags per image, in the label column
    separated by label_separator)"""
    label_separator: str = Field(" ", min_length=1, json_schema_extra=ADDED_LATER)
    """csv, multilabel: what separates an image's tags in the label column (and in the submission)"""
    submit: Literal["auto", "labels", "probabilities"] = Field("auto", json_schema_extra=ADDED_LATER)
    """csv: what the submission's values are. labels: class names in the label column; probabilities: one column
    per class (when test_csv has them), or with two classes the second class's probability in the label column (a
    binary AUC competition); auto: probabilities when test_csv has a column for every class, else labels"""
    loader_workers: int | None = Field(None, ge=0)
    """DataLoader processes; None = cpus_per_worker - 1"""
    cache: Literal["auto", "off"] | Annotated[int, Field(ge=8, le=2048)] = "auto"
    """decode-once image cache: auto (at image_size) | off (decode every epoch) | a side in pixels (>= image_size)"""

    _check_source = field_validator("source")(_in_registry(catalog.SOURCES, "data source"))

    @field_validator("age_bins")
    @classmethod
    def _increasing(cls, bins: list[int]) -> list[int]:
        if len(bins) != 2 or not 0 < bins[0] < bins[1]:
            raise ValueError(f"give two increasing ages, e.g. [30, 60] (got {bins})")
        return bins

    @model_validator(mode="after")
    def _csv_keys_for_csv(self) -> DataConfig:
        """The csv source's keys, set for another source, would be silently ignored: say so."""
        defaults = {key: type(self).model_fields[key].default for key in CSV_KEYS}
        stray = sorted(k for k in CSV_KEYS if getattr(self, k) != defaults[k]) if self.source != "csv" else []
        if stray:
            raise ValueError(f"{', '.join(stray)}: only the csv source reads {'it' if len(stray) == 1 else 'them'}; "
                             f"set source: csv (your competition's CSV, docs/data.md) or remove {'it' if len(stray) == 1 else 'them'}")
        return self

    @model_validator(mode="after")
    def _cache_covers_the_image(self) -> DataConfig:
        if isinstance(self.cache, int) and self.cache < self.image_size:
            raise ValueError(f"cache: a cache side of {self.cache}px is below image_size {self.image_size}; "
                             f"give at least {self.image_size}, or auto")
        return self


# -------------------------------------------------------------------------- model


class ModelConfig(Strict):
    name: str
    """a timm model name (timm.list_models()); test_resnet and test_vit are tiny"""
    pretrained: bool = False
    """True downloads weights from the timm / Hugging Face hub"""
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)
    """dropout before the classifier"""
    checkpoint: str | None = None
    """a local weights file (.safetensors, .pth) to start from instead of the hub, for clusters without internet
    access: timm's pretrained-file override; the path must exist on every node"""
    heads: str | None = None
    """one backbone, a head per factor of the label (mask: mask 3 x gender 2 x age 3), the classes composed from them"""

    @field_validator("heads")
    @classmethod
    def _known_heads(cls, value: str | None) -> str | None:
        return value if value is None else check_name(value, catalog.HEADS, "heads")


# -------------------------------------------------------------------------- train


class OptimizerConfig(Strict):
    name: str = "adamw"
    """adamw | adam | radam | lamb | sgd (with Nesterov momentum)"""
    lr: float | None = Field(None, gt=0)
    """None: the optimizer's default (train/optim.py: adamw 1e-3, sgd 0.1, ...)"""
    weight_decay: float | None = Field(None, ge=0)
    """None: the optimizer's default (adamw 0.05, sgd 5e-4, ...)"""
    momentum: float = Field(0.9, ge=0, lt=1)
    """sgd only"""

    _check_name = field_validator("name")(_in_registry(catalog.OPTIMIZERS, "optimizer"))

    def resolved(self) -> OptimizerConfig:
        """lr and weight decay filled in from the optimizer's defaults where the grid left them out."""
        defaults = catalog.OPTIMIZERS[self.name]
        return self.model_copy(update={"lr": self.lr if self.lr is not None else defaults.lr,
                                       "weight_decay": self.weight_decay if self.weight_decay is not None
                                       else defaults.weight_decay})


class LRSchedulerConfig(Strict):
    name: str = "cosine"
    """cosine | step | plateau | one_cycle | constant"""
    warmup_epochs: int = Field(1, ge=0)
    """a linear warmup (never the trial's last epoch); with label smoothing 0.1 and AdamW 2e-3 the defaults that
    matched or beat a plain one-cycle loop on quickdraw10 (docs/techniques.md)"""
    warmup_lr: float = Field(1e-5, ge=0)
    """the lr the warmup starts from"""
    min_lr: float = Field(1e-6, ge=0)
    """the lr the schedule decays to"""
    decay_epochs: float = Field(10, gt=0)
    """step: decay every this many epochs"""
    decay_rate: float = Field(0.1, gt=0, le=1)
    """step, plateau: multiply the lr by this"""
    patience_epochs: int = Field(2, ge=0)
    """plateau: epochs without improvement before a decay"""
    restarts: int = Field(0, ge=0)
    """cosine with warm restarts (timm's cycles): the lr climbs back to its peak this many times"""
    cycle_mul: float = Field(1.0, ge=1.0)
    """each cycle this many times longer than the one before"""
    cycle_decay: float = Field(1.0, gt=0, le=1)
    """each cycle's peak lr is the previous peak times this"""

    _check_name = field_validator("name")(_in_registry(catalog.LR_SCHEDULERS, "lr scheduler"))

    @model_validator(mode="after")
    def _restarts_are_cosine(self) -> LRSchedulerConfig:
        if self.restarts and self.name != "cosine":
            raise ValueError(f"restarts: warm restarts are cycles of the cosine schedule; set name: cosine (got {self.name})")
        return self


class LossSpec(Strict):
    name: str = "cross_entropy"
    """multiclass: cross_entropy | focal | soft_target | f1; multilabel (a sigmoid per tag): bce | asl (asymmetric,
    Ridnik et al. 2021) | focal_bce (the default there: bce)"""
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    """not for f1 (its optimum is the hard labels)"""
    class_weights: list[float] | Literal["balanced"] | None = None
    """cross_entropy, focal"""
    gamma: float = Field(2.0, ge=0)
    """focal, focal_bce"""
    gamma_neg: float = Field(4.0, ge=0, json_schema_extra=ADDED_LATER)
    """asl: focusing on negative tags (the paper's 4)"""
    gamma_pos: float = Field(0.0, ge=0, json_schema_extra=ADDED_LATER)
    """asl: focusing on positive tags (the paper's 0)"""
    clip: float = Field(0.05, ge=0, lt=1, json_schema_extra=ADDED_LATER)
    """asl: probability margin shifted off easy negatives (the paper's 0.05)"""

    _check_name = field_validator("name")(_in_registry(catalog.LOSSES, "loss"))


class HeadLoss(LossSpec):
    """One head's loss in a multi-head model, and its weight in the sum."""

    weight: float = Field(1.0, ge=0)
    """this head's weight in the sum of the heads' losses"""


class LossConfig(LossSpec):
    heads: dict[str, HeadLoss] = {}
    """multi-head models (models[i].heads): a loss per head by name; a head not named takes this loss, weight 1"""


class TransformSpec(Strict):
    """One albumentations transform: `{name: Affine, rotate: [-10, 10], p: 0.5}`."""

    model_config = ConfigDict(extra="allow")
    name: str
    """an albumentations transform class; the other keys are its arguments"""


class EmaConfig(Strict):
    decay: float = Field(0.999, gt=0, lt=1)
    """weight of the average per update"""
    warmup: bool = True
    """timm's decay warmup: early updates count more, so short runs are not stuck near the init"""
    evaluate: bool = True
    """validate, checkpoint and predict with the EMA weights"""


class MixConfig(Strict):
    """timm Mixup/CutMix; targets become soft, so the loss must accept them (all losses here do)."""

    mixup_alpha: float = Field(0.2, ge=0)
    """MixUp's beta distribution parameter (0: no MixUp)"""
    cutmix_alpha: float = Field(0.0, ge=0)
    """CutMix's beta distribution parameter (0: no CutMix)"""
    prob: float = Field(1.0, ge=0, le=1)
    """chance a batch is mixed at all"""
    switch_prob: float = Field(0.5, ge=0, le=1)
    """chance of CutMix instead of MixUp when both are on"""
    off_epoch: int | None = Field(None, ge=0)
    """from this epoch (0-based) on, no mixing"""

    @model_validator(mode="after")
    def _some_mixing(self) -> MixConfig:
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("set mixup_alpha or cutmix_alpha > 0 (or remove mix:)")
        return self


class ResizeStage(Strict):
    """Progressive resizing: train at `image_size` for epochs [start, end) (0-based); other epochs at data.image_size."""

    epochs: tuple[int, int]
    """[start, end), 0-based"""
    image_size: int = Field(ge=8, le=2048)
    """the side in those epochs (at most data.image_size)"""

    @model_validator(mode="after")
    def _a_range(self) -> ResizeStage:
        if not 0 <= self.epochs[0] < self.epochs[1]:
            raise ValueError(f"epochs: give [start, end) with 0 <= start < end, e.g. [0, 3] (got {list(self.epochs)})")
        return self


class CurriculumConfig(Strict):
    """Augmentation that rises over epochs: the train-only augmentation applies to a share of the images that
    grows linearly from `start` in epoch 0 to all of them from epoch `full_at_epoch` on."""

    start: float = Field(0.0, ge=0, le=1)
    """the augmented share of images in the first epoch"""
    full_at_epoch: int = Field(ge=1)
    """from this epoch (0-based) on, every image is augmented"""

    def level(self, epoch: int) -> float:
        return min(1.0, self.start + (1.0 - self.start) * epoch / self.full_at_epoch)


class EarlyStoppingConfig(Strict):
    patience: int = Field(3, ge=1)
    """epochs without improvement of scheduler.metric"""
    min_delta: float = Field(0.0, ge=0)
    """an improvement smaller than this does not count"""


class CheckpointConfig(Strict):
    """How often a trial writes checkpoints, and whether the training waits for the writes (train/checkpointer.py)."""

    every: Literal["auto", "epoch", "sparse"] = "auto"
    """epoch: a resumable checkpoint (weights + optimizer state) every epoch, so a crash loses at most the unfinished
    epoch; sparse: resumable ones at the scheduler's rungs and at most every `minutes`, the weights alone of a new
    best epoch between them (a crash loses up to `minutes`); auto: sparse from `sparse_from_params_m` parameters"""
    minutes: float = Field(10.0, gt=0)
    """sparse: the longest stretch between two resumable checkpoints"""
    sparse_from_params_m: float = Field(50.0, gt=0)
    """auto: models with at least this many million parameters checkpoint sparsely (convnext_base: 88)"""
    timeout_minutes: float = Field(20.0, gt=0)
    """the longest one checkpoint write (an upload to a bucket) may take before the trial fails with a clear error
    and is retried from its last committed checkpoint (the storage unreachable, not slow training)"""
    background: bool = True
    """copy the state into CPU buffers kept between epochs (the only part the training waits for) and write and
    upload it in a background thread while the next epoch trains; false: write before the next epoch starts
    (no buffers: the state's size less in memory)"""


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1)
    """epochs per trial (the scheduler or early stopping may end it sooner)"""
    batch_size: int = Field(64, ge=1)
    """images per batch per worker"""
    accumulate_steps: int = Field(1, ge=1)
    """optimizer step every N batches"""
    clip_grad_norm: float | None = Field(None, gt=0)
    """clip the global gradient norm to this before each step (None: no clipping)"""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """auto: bf16 on a GPU that has it, else off"""
    channels_last: bool = False
    """NHWC memory layout (faster convolutions on recent GPUs)"""
    ema: EmaConfig | None = None
    """an exponential moving average of the weights (timm ModelEmaV3); None: off"""
    mix: MixConfig | None = None
    """MixUp / CutMix (timm Mixup); None: off"""
    early_stopping: EarlyStoppingConfig | None = None
    """end a trial whose metric stalls (it ends FINISHED, not KILLED); None: off"""
    freeze_backbone_epochs: int = Field(0, ge=0)
    """train only the classifier head for the first N epochs"""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """the optimizer (timm's create_optimizer_v2)"""
    scheduler: LRSchedulerConfig = Field(default_factory=LRSchedulerConfig)
    """the learning-rate schedule (timm's schedulers; one_cycle: torch's OneCycleLR)"""
    loss: LossConfig = Field(default_factory=LossConfig)
    """the loss (multi-head models: per head, `heads`)"""
    augment: str | list[TransformSpec] = "plain"
    """a preset by name (docs/grid.md, presets) or a list of albumentations transforms"""
    curriculum: CurriculumConfig | None = None
    """augmentation strength rising over epochs"""
    progressive_resize: list[ResizeStage] = []
    """smaller images in early epochs (resized on the device)"""
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    """how often checkpoints are written, and in the background or not (not part of a trial's identity)"""

    def image_size_at(self, epoch: int, full: int) -> int:
        """The side the model sees in `epoch` (0-based): a progressive-resize stage's, else the data's."""
        return next((s.image_size for s in self.progressive_resize if s.epochs[0] <= epoch < s.epochs[1]), full)

    @field_validator("progressive_resize")
    @classmethod
    def _stages_apart(cls, stages: list[ResizeStage]) -> list[ResizeStage]:
        ordered = sorted(stages, key=lambda s: s.epochs[0])
        for before, after in itertools.pairwise(ordered):
            if after.epochs[0] < before.epochs[1]:
                raise ValueError(f"stages overlap: epochs {list(before.epochs)} and {list(after.epochs)}")
        return stages

    @field_validator("augment")
    @classmethod
    def _known_preset(cls, value: str | list[TransformSpec]) -> str | list[TransformSpec]:
        """A preset by name (a list's transforms are checked against albumentations by the driver's preflight:
        search/preflight.check_libraries)."""
        return catalog.check_preset(value) if isinstance(value, str) else value


# ------------------------------------------------------------------ search / run


class SearchAxis(Strict):
    """One extra grid axis; exactly one key is set."""

    grid: list[Any] | None = None
    """values crossed with the other grid axes and the models"""
    choice: list[Any] | None = None
    """values drawn num_samples times (optuna: a categorical)"""
    uniform: tuple[float, float] | None = None
    """[low, high] drawn uniformly"""
    loguniform: tuple[float, float] | None = None
    """[low, high] drawn uniformly in log space (low > 0)"""
    randint: tuple[int, int] | None = None
    """[low, high), like numpy"""

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchAxis:
        set_keys = [k for k in ("grid", "choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None]
        if len(set_keys) != 1:
            raise ValueError(f"give exactly one of grid, choice, uniform, loguniform, randint (got {set_keys or 'none'})")
        values = getattr(self, set_keys[0])
        if set_keys[0] in ("grid", "choice") and not values:
            raise ValueError(f"{set_keys[0]}: needs at least one value")
        if set_keys[0] in ("uniform", "loguniform", "randint") and not values[0] < values[1]:
            raise ValueError(f"{set_keys[0]}: needs low < high, got {list(values)}")
        if set_keys[0] == "loguniform" and values[0] <= 0:
            raise ValueError("loguniform: bounds must be > 0")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("grid", "choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None)

    def extremes(self) -> list[Any]:
        """Every value a listed axis can take; a range's two ends (randint's high is exclusive) and, for a
        float range, a value between them (a whole-number key refuses it: a draw there would fail mid-run)."""
        if self.kind == "randint":
            return [self.randint[0], self.randint[1] - 1]
        if self.kind in ("uniform", "loguniform"):
            low, high = getattr(self, self.kind)
            return [low, low + (high - low) * 0.37, high]
        return list(getattr(self, self.kind))


class InsightConfig(Strict):
    """What the driver makes of a finished grid's OOF predictions, per config (logged under its trials' runs)."""

    gallery: int = Field(16, ge=0, le=64)
    """the config's most confident OOF mistakes, as one image (0: none)"""
    top_confusions: int = Field(20, ge=1, le=200)
    """named (true, predicted) pairs in the table and its figure"""
    gradcam_configs: int = Field(2, ge=0)
    """the best configs whose mistakes get Grad-CAM overlays (0: none)"""
    gradcam_images: int = Field(8, ge=1, le=32)
    """mistakes with Grad-CAM overlays per config"""


class TtaConfig(Strict):
    """Test-time augmentation for OOF and test predictions: the mean of the views' probabilities."""

    hflip: bool = True
    """add the horizontally flipped view"""
    vflip: bool = False
    """add the vertically flipped view"""
    scales: list[Annotated[float, Field(ge=1.0, le=2.0)]] = Field(default_factory=lambda: [1.0], min_length=1)
    """zoom-in factors"""


class TuneSchedulerConfig(Strict):
    kind: Literal["asha", "fold_asha", "fifo"] = "asha"
    """fold_asha: a config's folds pass or stop together"""
    metric: str = "val_acc"
    """a validation score of the epoch report: val_acc | val_f1 | val_loss"""
    mode: Literal["max", "min"] = "max"
    """max | min: must match the metric (val_loss: min)"""
    grace_period: int = Field(1, ge=1)
    """epochs every trial gets before it can be stopped"""
    reduction_factor: float = Field(3, gt=1)
    """at each rung, 1 / reduction_factor of the trials go on"""

    _check_metric = field_validator("metric")(_in_registry(EpochReport.scores(), "scheduler metric"))

    def rung_epochs(self, max_epochs: int) -> list[int]:
        """Epochs at which configs are judged: grace * rf^k, below the last epoch (nothing to save there)."""
        rungs, k = [], 0
        while (epoch := round(self.grace_period * self.reduction_factor**k)) < max_epochs:
            if epoch not in rungs:
                rungs.append(epoch)
            k += 1
        return rungs

    @model_validator(mode="after")
    def _mode_matches_metric(self) -> TuneSchedulerConfig:
        expected = EpochReport.scores()[self.metric]
        if self.mode != expected:
            raise ValueError(f"mode: {self.metric} is better when it is {expected}er; set mode: {expected}")
        return self


class ResourcesConfig(Strict):
    cpus_per_worker: float = Field(1, gt=0)
    """CPUs per worker (one runs the loop, the rest decode images)"""
    gpus_per_worker: float = Field(0, ge=0)
    """GPUs per worker; a fraction (0.5) shares a GPU between trials"""
    workers_per_trial: int = Field(1, ge=1)
    """Ray Train workers per trial (DDP when > 1)"""
    max_concurrent_trials: int | None = Field(None, ge=1)
    """None: as many as the cluster fits"""
    max_failures: int = Field(2, ge=0)
    """retries of a trial from its last checkpoint when a worker dies or raises"""
    local_mode: Literal["auto", "on", "off"] = "auto"
    """on: a one-worker trial trains in its Tune trial's own process (Ray Train V2 local mode), which skips ~7 Ray
    helper processes per trial; off: a Ray Train worker group; auto: on where this run starts Ray on this machine,
    off on a cluster (a lost node is then retried on another); `on` with --address needs the trial slots and a
    worker's CPUs/GPUs on one node (a one-machine cluster)"""

    @model_validator(mode="after")
    def _local_mode_is_one_worker(self) -> ResourcesConfig:
        if self.local_mode == "on" and self.workers_per_trial > 1:
            raise ValueError(f"local_mode: 'on' runs one worker per trial, but workers_per_trial is "
                             f"{self.workers_per_trial}; set local_mode: off (or auto) for DDP trials")
        return self

    @property
    def in_trial(self) -> bool:
        """Whether the loop runs in the Tune trial's process (settled by the driver: `auto` is off here)."""
        return self.local_mode == "on"

    def settled(self, ray_is_local: bool) -> ResourcesConfig:
        """`auto` made on or off: on for one-worker trials where Ray runs on this machine alone."""
        if self.local_mode != "auto":
            return self
        on = ray_is_local and self.workers_per_trial == 1
        return self.model_copy(update={"local_mode": "on" if on else "off"})


class TrackingConfig(Strict):
    uri: str = "sqlite:///mlflow.db"
    """MLflow's tracking URI: a sqlite file, or a server (http://127.0.0.1:5000)"""
    storage: str = "./ray_results"
    """Ray checkpoints + fold tables; shared on a cluster: NFS, or a bucket URI (s3://, gs://) whose endpoint may sit
    in its query (?endpoint_override=HOST:PORT&scheme=http); credentials never here (the environment does)"""
    artifact_root: str | None = None
    """new experiments' artifact location; default beside a sqlite db"""
    keep_weights: bool = False
    """an ended trial's best weights live in its MLflow run (checkpoint/model.pt); true keeps them in storage too
    (without optimizer state), for a team that reads weights from the bucket; false frees the trial's folder"""

    @field_validator("storage")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        """Keys in a grid file end up in git, MLflow params and logs: refuse them, say where they go."""
        import re

        if re.search(r"[?&](access_key|secret_key|session_token)=|://[^/?]*:[^/?]*@", value):
            raise ValueError("carries credentials: give them the standard way instead (AWS_ACCESS_KEY_ID / "
                             "AWS_SECRET_ACCESS_KEY or AWS_PROFILE in the environment, or the node's instance profile), "
                             "and keep only the bucket, path and endpoint here")
        return value


class EnsembleConfig(Strict):
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True, serialize_by_alias=True,
                              use_attribute_docstrings=True)

    top_k: int = Field(5, ge=1)
    """the best configs (by mean fold score) that may get weight"""
    method: Literal["mean", "hill_climb", "rank", "vote", "best", "auto"] = "hill_climb"
    """soft blends (mean | hill_climb | rank), hard majority voting (vote), the best member alone (best), or auto:
    each fitted on the OOF, the best cross-validated score over the OOF folds kept (each fold blended with weights
    fitted on the others)"""
    f1_offsets: Literal["auto", "on", "off"] = "auto"
    """per-class logit offsets fitted on the OOF to maximise macro F1, kept only if they gain under cross-validation
    over the OOF folds; auto: on when the grid's metric is val_f1"""

    @field_validator("f1_offsets", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        """YAML reads a bare on / off as true / false."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
    refit: Literal["none", "best", "members"] = "none"
    """after the grid's folds, `python -m orchestrator.run` trains again on every training row: the config the
    ensemble gives most weight (best), or every config it gives weight (members), each for the epochs its folds
    found best (their mean best epoch where a fold stopped early, else the full budget; a refit of other epochs
    trains again); tracked trials without validation rows"""
    refit_share: float = Field(0.5, ge=0, le=1)
    """a refit config's share of its member's test probabilities, the fold models' mean the rest (1: the refit
    model alone; 0.5: as much as all its fold models together); nothing can score a refit model (no row is left
    out of it), so this is a prior, checked only against the fold models (ensemble/members.py)"""
    output: str = "submission.csv"
    """the submission file written"""
    iterations: int = Field(50, ge=1)
    """hill-climbing steps"""
    thresholds: Literal["auto", "fixed", "global", "per_tag"] = "auto"
    """multilabel: which tags are called. fixed: each at 0.5; global: one threshold for every tag; per_tag: one each;
    auto: each fitted on all OOF folds but one and judged on the held fold, the best cross-validated kept"""
    at_least_one_tag: bool = True
    """multilabel: an image with no tag over its threshold gets its most probable one"""
    register_model: bool = Field(True, alias="register")
    """register the logged ensemble model under the grid's name (false: log it only); `register` in YAML (pydantic's
    BaseModel has a `register` attribute of its own)"""
    alias: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")] = "champion"
    """moved to each new version"""


class PseudoConfig(Strict):
    """A pseudo-labelling round: a finished ensemble's confident test predictions join every fold's training rows.

    Give `threshold` (rows whose top probability reaches it) or `top_fraction` (per predicted
    class, its most confident share). The rows are never validation rows, so OOF scores stay
    comparable with the teacher's round.
    """

    teacher: str = "latest"
    """an ensemble run id of this grid's MLflow experiment, or `latest` (resolved when the round starts)"""
    threshold: float | None = Field(None, gt=0, le=1)
    """test rows whose top probability reaches this join (the default rule: 0.9)"""
    top_fraction: float | None = Field(None, gt=0, le=1)
    """per predicted class, its most confident share of test rows joins"""

    @model_validator(mode="after")
    def _one_rule(self) -> PseudoConfig:
        if self.threshold is None and self.top_fraction is None:
            self.threshold = 0.9
        elif self.threshold is not None and self.top_fraction is not None:
            raise ValueError("give threshold or top_fraction, not both")
        return self

    @property
    def round_name(self) -> str:
        """Names the round's tables: one teacher and rule, one table."""
        import hashlib

        rule = f"{self.teacher}|{self.threshold}|{self.top_fraction}"
        return f"pseudo-{hashlib.sha1(rule.encode()).hexdigest()[:10]}"


Identifier = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class GridConfig(Strict):
    name: Identifier
    """the grid's name: its MLflow experiment, its storage folder and its registered model"""
    seed: int = 42
    """folds, weight init, each epoch's shuffle, random search draws, TPE's sampler"""
    data: DataConfig
    """where the images are and how they are framed and split"""
    models: list[ModelConfig] = Field(min_length=1)
    """the model axis: timm models by name, each crossed with the search axes"""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """the training recipe every trial starts from (search axes change parts of it)"""
    search: dict[str, SearchAxis] = {}
    """extra axes: a dotted path of the trial's config (model.*, data.*, train.*, seed) -> one axis"""
    num_samples: int = Field(1, ge=1)
    """draws of the random (non-grid) axes; with optuna: configs TPE proposes"""
    searcher: Literal["grid", "optuna"] = "grid"
    """optuna: TPE proposes model + search values from past results"""
    scheduler: TuneSchedulerConfig = Field(default_factory=TuneSchedulerConfig)
    """Ray Tune's trial scheduler: which trials stop early"""
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    """what each trial's workers hold, and how many trials run at once"""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """where runs are tracked (MLflow) and checkpoints kept (storage)"""
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    """what `python -m orchestrator.ensemble` blends and writes"""
    tta: TtaConfig | None = None
    """test-time augmentation of the OOF and test predictions (null: none); not part of a trial's identity"""
    insight: InsightConfig = Field(default_factory=InsightConfig)
    """what the driver makes of a finished grid's predictions, per config"""
    pseudo: PseudoConfig | None = None
    """a pseudo-labelling round (or `--pseudo ENSEMBLE_RUN`)"""

    @property
    def layout(self) -> GridLayout:
        """Where this grid's storage lives: `<tracking.storage>/<name>` (a pseudo round's tables beside the grid's)."""
        return GridLayout.of(self.tracking.storage, self.name, self.pseudo.round_name if self.pseudo else None)

    @model_validator(mode="after")
    def _checkpoints_exist(self) -> GridConfig:
        for index, model in enumerate(self.models):  # here, not in ModelConfig: a served model never reads it
            if model.checkpoint and not Path(model.checkpoint).is_file():
                raise ValueError(f"models[{index}].checkpoint: no file {model.checkpoint!r} (a local weights file "
                                 f"for {model.name}, e.g. from timm's hub, copied to every node)")
        return self

    @model_validator(mode="after")
    def _resize_fits(self) -> GridConfig:
        check_resize(self.data, self.train)
        return self

    @model_validator(mode="after")
    def _fold_asha_needs_a_plan(self) -> GridConfig:
        if self.scheduler.kind == "fold_asha" and self.searcher == "optuna":
            raise ValueError("scheduler.kind: fold_asha judges the planned configs of searcher: grid; "
                             "with searcher: optuna use scheduler.kind: asha (TPE already learns from fold means)")
        return self

    @model_validator(mode="after")
    def _resolve_dependent_defaults(self) -> GridConfig:
        """The one place where a default depends on another key; the grid's logged config holds the result.

        - data.folds.kind: the fold kind the source requires (mask: stratified_group), which the grid may
          only repeat;
        - scheduler.metric: the source's competition metric (mask: val_f1) unless the grid names one.
        (Also resolved, where their inputs are known: pseudo.threshold 0.9 when neither rule is given
        (PseudoConfig), and a trial's optimizer lr and weight decay from its optimizer's defaults
        (TrialConfig, after search values are set).)
        """
        rules = catalog.SOURCES[self.data.source]
        folds = self.data.folds
        if rules.fold_kind is not None:
            if "kind" not in folds.model_fields_set:
                self.data.folds = folds.model_copy(update={"kind": rules.fold_kind})
            elif folds.kind != rules.fold_kind:
                raise ValueError(f"data.folds.kind: the {self.data.source} source needs {rules.fold_kind} "
                                 f"(one group, one fold), got {folds.kind}")
        if rules.metric is not None and "metric" not in self.scheduler.model_fields_set:
            self.scheduler = self.scheduler.model_copy(update={"metric": rules.metric})
        if self.data.task == "multilabel":  # scheduler.metric val_f1_samples, the loss bce, unless the grid names them
            if "metric" not in self.scheduler.model_fields_set:
                self.scheduler = self.scheduler.model_copy(update={"metric": DEFAULT_METRIC["multilabel"]})
            if "name" not in self.train.loss.model_fields_set:
                self.train.loss = self.train.loss.model_copy(update={"name": "bce"})
        return self

    @model_validator(mode="after")
    def _fits_the_task(self) -> GridConfig:
        """A metric, loss, blend or round the grid's task has no use for is refused, with what to use instead."""
        task, loss, metric = self.data.task, self.train.loss.name, self.scheduler.metric
        if task not in METRICS[metric].tasks:
            fitting = ", ".join(n for n, m in METRICS.items() if task in m.tasks)
            raise ValueError(f"scheduler.metric: {metric} does not score a {task} task; give one of {fitting}")
        tags = task == "multilabel"
        if (loss in catalog.TAG_LOSSES) != tags:
            fitting = catalog.TAG_LOSSES if tags else tuple(n for n in catalog.LOSSES if n not in catalog.TAG_LOSSES)
            raise ValueError(f"train.loss.name: {loss} is not a {task} loss; give one of {', '.join(fitting)}")
        if not tags:
            return self
        if self.train.loss.class_weights is not None or self.train.loss.heads:
            raise ValueError("train.loss: class_weights and heads are for one class per image; a multilabel task "
                             "weighs tags by its loss (asl, focal_bce)")
        if any(m.heads for m in self.models):
            raise ValueError("models: heads compose one class per image; a multilabel task has a tag per output")
        if self.ensemble.method == "vote":
            raise ValueError("ensemble.method: vote counts each member's one class; a multilabel task blends tag "
                             "probabilities (mean, hill_climb, rank, best or auto)")
        if self.pseudo is not None:
            raise ValueError("pseudo: a pseudo round labels test images with one confident class; a multilabel task "
                             "has no such label yet (train on the labelled rows, or pseudo-label outside the tool)")
        return self

    @model_validator(mode="after")
    def _search_values_valid(self) -> GridConfig:
        """Every search path exists, and every value an axis can take is one its key accepts."""
        sample = trial_skeleton(self)
        for path, axis in self.search.items():
            lookup(sample, path, where=f"search.{path}")
            for value in axis.extremes():
                check_search_value(self, path, value)
        return self


# ------------------------------------------------------------------------- trial


class TrialTables(Strict):
    """Where a trial finds its rows: written once per grid by the driver."""

    folds_path: str
    """parquet: row_id, image_path, target, group, fold"""
    test_path: str | None
    """parquet: row_id, image_path"""
    num_classes: int = Field(ge=2)
    fingerprint: str = ""
    """hash of the rows (paths, labels, groups, classes): part of every trial's identity"""
    train_files: str = ""
    """hash of the train images' paths, sizes and times: names their image cache"""
    test_files: str = ""
    """the same for the test images"""


REFIT = -2  # TrialConfig.fold of a refit: no validation fold, every training row trains (ensemble.refit)


class TrialConfig(Strict):
    """Everything one (config, fold) trial needs; what Tune hands the trainable."""

    name: str
    seed: int
    fold: int
    """the fold whose rows validate; REFIT: none (a config trained once on all rows after its folds)"""
    config_id: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    scheduler: TuneSchedulerConfig
    resources: ResourcesConfig
    tables: TrialTables
    storage: str
    tta: TtaConfig | None = None
    attempt: int = Field(0, ge=0)
    """retries so far (set by the trainable; not part of the identity)"""

    @model_validator(mode="after")
    def _resolve_optimizer(self) -> TrialConfig:
        """A trial's config (trial_config.json) holds the lr and weight decay it trained with, not None."""
        self.train.optimizer = self.train.optimizer.resolved()
        return self

    @property
    def trial_key(self) -> str:
        return trial_key(self.config_id, self.fold)

    @property
    def refit(self) -> bool:
        return self.fold == REFIT

    @property
    def layout(self) -> GridLayout:
        return GridLayout(self.storage)


def trial_key(config_id: str, fold: int) -> str:
    """A trial's identity: its Train run's name, its MLflow run's name and tag, its Tune trial name."""
    return f"{config_id}-refit" if fold == REFIT else f"{config_id}-f{fold}"


def check_resize(data: DataConfig, train: TrainConfig) -> None:
    """Progressive resizing shrinks images on the device: no stage may be larger than data.image_size."""
    for index, stage in enumerate(train.progressive_resize):
        if stage.image_size > data.image_size:
            raise ValueError(f"train.progressive_resize[{index}].image_size: {stage.image_size} is above data.image_size "
                             f"{data.image_size}; stages train on smaller images, the last epochs at the full size")


class SearchableTrial(Strict):
    """The part of a trial `search:` may address; a searched value is checked against it."""

    seed: int
    model: ModelConfig
    data: DataConfig
    train: TrainConfig

    @model_validator(mode="after")
    def _resize_fits(self) -> SearchableTrial:
        check_resize(self.data, self.train)
        return self


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        tree = tree[part]
    tree[last] = value


def check_search_value(grid: GridConfig, path: str, value: Any) -> None:
    """Raise ValueError naming the axis and the value when the key it sets refuses it."""
    sample = trial_skeleton(grid)
    set_path(sample, path, value)
    try:
        SearchableTrial.model_validate(sample)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in err.errors())
        raise ValueError(f"search.{path}: the value {value!r} is refused ({problems})") from None


def trial_skeleton(grid: GridConfig, model_index: int = 0) -> dict[str, Any]:
    """The searchable part of a trial as a dict: the paths `search:` may address."""
    return {
        "seed": grid.seed,
        "model": grid.models[model_index].model_dump(mode="json"),
        "data": grid.data.model_dump(mode="json"),
        "train": grid.train.model_dump(mode="json"),
    }


# ------------------------------------------------------------------------ loading


def load_grid(path: str | Path, overrides: list[tuple[str, str]] = ()) -> GridConfig:
    """Read, override and validate a grid.yaml; every problem is an InputError naming the field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"grid file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML: {err}", source=str(path)) from None
    if not isinstance(raw, dict):
        raise InputError("top level must be a mapping of keys (name, data, models, ...)", source=str(path))
    for key, value in overrides:
        _apply_override(raw, key, value, source=str(path))
    return parse_grid(raw, source=str(path))


def parse_grid(raw: dict[str, Any], source: str = "grid.yaml") -> GridConfig:
    try:
        return GridConfig.model_validate(raw)
    except ValidationError as err:
        raise InputError(format_validation_error(err, GridConfig), source=source) from None


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: `field.path: what is wrong (how to fix)`."""
    lines = []
    for item in err.errors():
        loc = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            valid = _valid_keys(root, item["loc"][:-1])
            close = difflib.get_close_matches(str(item["loc"][-1]), valid, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            lines.append(f"{loc}: unknown key{hint} (valid keys: {', '.join(valid)})")
        elif item["type"] == "missing":
            lines.append(f"{loc}: required key is missing")
        else:  # a model-level check (empty loc) names its own field
            message, prefix = item["msg"].removeprefix("Value error, "), f"{loc}: " if loc else ""
            # a value that carries credentials is not echoed (logs and CI output keep it)
            shown = "input" in item and not isinstance(item.get("input"), dict) and "credentials" not in message
            lines.append(f"{prefix}{message} (got {item.get('input')!r})" if shown else f"{prefix}{message}")
    return "\n  ".join(["invalid config:"] + lines)


def _valid_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at `loc` (walks nested models, skips list indexes / dict keys)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        model = _model_of(field.annotation) if field else model
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _apply_override(raw: dict[str, Any], key: str, value: str, source: str) -> None:
    """Set `a.b.c=value` in the raw dict; `search.<dotted.path>` keeps its dots; list items by index."""
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise InputError(f"--set {key}: value is not valid YAML: {err}", source=source) from None
    parts = key.split(".")
    if parts[0] == "search" and len(parts) > 1:
        parts = ["search", ".".join(parts[1:])]
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, key, source)
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise InputError(f"--set {key}: {'.'.join(parts[: i + 1])} is a value, not a mapping", source=source)
    if isinstance(node, list):
        index = int(parts[-1]) if parts[-1].isdigit() else None
        _list_item(node, parts[-1], key, source)
        node[index] = parsed
    else:
        node[parts[-1]] = parsed


def _list_item(node: list[Any], part: str, key: str, source: str) -> Any:
    if not part.isdigit() or int(part) >= len(node):
        raise InputError(f"--set {key}: {part!r} is not an index of a list with {len(node)} items", source=source)
    return node[int(part)]


def lookup(tree: dict[str, Any], path: str, where: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            valid = sorted(node) if isinstance(node, dict) else []
            raise ValueError(f"{where}: no such setting {part!r} (valid here: {', '.join(valid)})")
        node = node[part]
    return node


