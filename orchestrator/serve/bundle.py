"""The ensemble as a folder of files: what the served model loads, and nothing it has to ask MLflow for.

    ensemble.json                   classes, method, members (config_id, weight, their models' trial keys and
                                    shares), macro-F1 offsets, the competition's submission format (csv source),
                                    a multilabel task's tag thresholds
    <trial_key>/model.pt            a fold's best-epoch weights, or a refit's last (a state_dict, loaded weights-only)
    <trial_key>/trial_config.json   its resolved TrialConfig: model name, image size, framing, TTA

Only members with a weight above zero are kept: the others would cost inference and
change nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.layout import RunFiles
from orchestrator.train.checkpoint import MODEL_FILE

SPEC = "ensemble.json"


@dataclass(frozen=True)
class MemberSpec:
    config_id: str
    weight: float
    folds: list[str]  # trial keys (fold models, and a refit model): one folder each
    shares: list[float] | None = None  # each model's share of the member's probabilities (None: equal, their mean)

    def model_shares(self) -> list[float]:
        return self.shares if self.shares is not None else [1 / len(self.folds)] * len(self.folds)


@dataclass(frozen=True)
class EnsembleSpec:
    classes: list[str]
    method: str  # how members combine (blend.blend); rank's weights were fitted on ranks, served they blend probabilities
    members: list[MemberSpec]
    offsets: list[float] | None = None  # per-class logit offsets of macro-F1 tuning (blend.shift), when kept
    submission: dict | None = None  # the csv source's submission format (data/submission.py), as JSON
    thresholds: list[float] | None = None  # a multilabel task's per-tag thresholds (ensemble/thresholds.py)
    at_least_one: bool = True  # multilabel: a row with no tag over its threshold gets its most probable one

    @property
    def multilabel(self) -> bool:
        return self.thresholds is not None

    def save(self, folder: Path) -> None:
        (folder / SPEC).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> EnsembleSpec:
        raw = json.loads((folder / SPEC).read_text())
        return cls(raw["classes"], raw["method"], [MemberSpec(**m) for m in raw["members"]], raw.get("offsets"),
                   raw.get("submission"), raw.get("thresholds"), raw.get("at_least_one", True))


def write_bundle(tracker, members, weights, classes: list[str], method: str, folder: Path, offsets=None,
                 submission=None, thresholds=None) -> EnsembleSpec:
    """Download every weighted member's models' checkpoints and configs (its folds', and its refit's where it has a
    share) from their MLflow runs into `folder`."""
    kept = []
    for member, weight in zip(members, weights):
        if weight <= 0:
            continue
        keys, models = [], member.models()
        for run_id, _ in models:
            key = tracker.client.get_run(run_id).data.tags["trial_key"]
            target = folder / key
            target.mkdir(parents=True)
            for name in (f"{RunFiles.CHECKPOINT}/{MODEL_FILE}", RunFiles.TRIAL_CONFIG):
                local = Path(tracker.client.download_artifacts(run_id, name, str(target)))
                if local.parent != target:  # checkpoint/model.pt -> model.pt
                    local.replace(target / local.name)
                    local.parent.rmdir()
            keys.append(key)
        kept.append(MemberSpec(member.config_id, float(weight), keys, [float(share) for _, share in models]))
    spec = EnsembleSpec(list(classes), method, kept, None if offsets is None else [float(o) for o in offsets],
                        None if submission is None else submission.to_json(),
                        None if thresholds is None else [float(t) for t in thresholds.values],
                        True if thresholds is None else thresholds.at_least_one)
    spec.save(folder)
    return spec
