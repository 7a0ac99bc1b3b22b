"""Every path a grid writes, formatted here and nowhere else.

Storage (a local folder, an NFS mount every node sees, or a URI: s3://, gs://, file://; a URI's
query, e.g. `?endpoint_override=...`, stays at the end of every path built here):

    <tracking.storage>/<grid name>/
      data/folds.parquet            train rows with their fold (written once per grid; trials read it)
      data/folds-pseudo-<id>.parquet  a pseudo-labelling round's: the same rows plus its pseudo-labelled test rows
      data/test.parquet             test rows
      trials/<config_id>-f<fold>/   one trial identity's checkpoints (its Ray Train run), the same in every invocation;
                                    removed once it ended and MLflow holds its best weights (unless tracking.keep_weights)
        epoch_NNNN/                 a checkpoint: model.pt (weights) + train_state.pt, MANIFEST.json last (the commit)
        predictions/                OOF + test predictions of the best epoch, by a trial that ended by itself
      tune/<time>/                  Ray Tune's experiment state of one invocation
      tracking-journal/             the driver's MLflow writes not yet taken     } a bucket grid's are in this
      ray-driver.log                Ray's log lines on the driver (--verbose: the console) } machine's cache instead

MLflow artifacts of the runs (`RunFiles`) are named here too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.storage import is_uri, join, resolve


def cache_home() -> Path:
    """This machine's cache (`ORCHESTRATOR_CACHE`, default ~/.cache/orchestrator): decoded images, bucket grids' journals."""
    return Path(os.environ.get("ORCHESTRATOR_CACHE", "~/.cache/orchestrator")).expanduser()


def checkpoint_dir_name(epoch: int) -> str:
    """Checkpoint folders are named by epoch, so the best one can be found again after a resume."""
    return f"epoch_{epoch:04d}"


@dataclass(frozen=True)
class GridLayout:
    root: str  # `<tracking.storage>/<grid name>`, absolute (Ray moves workers' working dirs) or a URI
    round: str | None = None  # a pseudo-labelling round's name: its own folds table

    @classmethod
    def of(cls, storage: str, grid_name: str, round: str | None = None) -> GridLayout:
        return cls(join(resolve(storage), grid_name), round)

    @property
    def folds_table(self) -> str:
        return join(self.root, "data", f"folds{f'-{self.round}' if self.round else ''}.parquet")

    @property
    def test_table(self) -> str:
        return join(self.root, "data", "test.parquet")

    @property
    def trials(self) -> str:
        """Ray Train's storage_path: its run name is the trial key."""
        return join(self.root, "trials")

    def trial_dir(self, trial_key: str) -> str:
        """One trial's folder: its checkpoints (and, out of local mode, Ray Train's checkpoint manager snapshot)."""
        return join(self.trials, trial_key)

    def checkpoint(self, trial_key: str, epoch: int) -> str:
        return join(self.trial_dir(trial_key), checkpoint_dir_name(epoch))

    def predictions(self, trial_key: str) -> str:
        """Where a trial that ended by itself leaves its best epoch's OOF + test frames (no prediction task then)."""
        return join(self.trial_dir(trial_key), "predictions")

    @property
    def driver(self) -> Path:
        """The driver's own local files (appended to often, so never in a bucket): the grid's folder when the
        storage is a path; for a bucket, this machine's cache, under a hash of the grid's URI."""
        if not is_uri(self.root) or self.root.startswith("file://"):
            return Path(self.root.removeprefix("file://"))
        return cache_home() / "grids" / hashlib.sha1(self.root.encode()).hexdigest()[:16]

    @property
    def journal(self) -> Path:
        """The driver's MLflow writes not yet taken (tracking/writer.py)."""
        return self.driver / "tracking-journal"

    @property
    def ray_log(self) -> Path:
        """Ray's own log lines of the driver (Tune's, Train's), out of the console unless --verbose."""
        return self.driver / "ray-driver.log"

    @property
    def tune(self) -> str:
        """Ray Tune's storage_path: one experiment folder per invocation, named by its start time."""
        return join(self.root, "tune")


class RunFiles:
    """Artifact names in MLflow runs (what the ensemble and people look for)."""

    GRID = "grid.yaml"  # parent: the resolved grid
    DATA = "data"  # parent: folds.parquet, test.parquet, classes.json
    CLASSES = "data/classes.json"
    SUMMARY = "summary.csv"  # parent: one row per trial
    LEADERBOARD = "leaderboard.csv"  # parent: one row per config (the ensemble job adds the weights)
    TIME = "time.txt"  # parent: where the grid's time went
    TIMELINE = "timeline.png"  # parent: each trial's start-up, epochs and predictions on the grid's clock
    TRIAL_CONFIG = "trial_config.json"  # child: the resolved TrialConfig
    CHECKPOINT = "checkpoint"  # child: the best epoch's model.pt
    OOF = "oof.parquet"
    TEST = "test.parquet"
    CONFUSION = "confusion_matrix.png"  # child: its fold's OOF, named (or the top confused pairs)
    PER_CLASS = "insight/per_class.json"  # child: its config's OOF over all folds (every fold's run holds the same)
    MISTAKES = "insight/mistakes.txt"  # worst classes, most confused pairs
    CONFIG_CONFUSION = "insight/confusion.png"
    GALLERY = "insight/gallery.png"  # the config's most confident OOF mistakes
    GRADCAM = "insight/gradcam.png"  # the best configs: Grad-CAM of their best fold's mistakes
    ERROR = "error.txt"
    ENSEMBLE_TEST = "ensemble_test.parquet"  # ensemble: the blended test probabilities (pseudo-labels start from them)
    F1_OFFSETS = "f1_offsets.json"  # ensemble: per-class logit offsets, when macro-F1 tuning kept them
    THRESHOLDS = "thresholds.json"  # ensemble, multilabel: each tag's threshold
