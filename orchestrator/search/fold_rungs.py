"""Fold-aware successive halving, as pure bookkeeping (no Ray types: unit-tested alone).

Plain ASHA judges every (config, fold) trial alone, so a good config can lose one
fold to noise and leave a hole in its out-of-fold predictions. Here a config is
judged once per rung, on the mean of its folds' scores at that rung, against the
means other configs had at the same rung (ASHA's rule: continue when in the top
1/reduction_factor so far). Every fold of a config gets the same verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class Verdict(str, Enum):
    CONTINUE = "continue"  # not a rung, or the config passed it
    STOP = "stop"  # the config was judged out: every fold stops
    WAIT = "wait"  # this fold is at a rung its sibling folds have not reached yet


@dataclass(frozen=True)
class FoldSeed:
    """What an earlier run of one (config, fold) left: its per-epoch scores, and whether it ended."""

    history: dict[int, float]
    ended: bool


@dataclass
class ConfigState:
    folds: set[int] = field(default_factory=set)  # folds that still count (can still report)
    left: set[int] = field(default_factory=set)  # folds that ended (a rerun's reused folds too): never expected again
    budget: int | None = None  # the config's own train.epochs: rungs at or past it are not rungs for it
    scores: dict[int, dict[int, float]] = field(default_factory=dict)  # rung -> fold -> score
    passed: set[int] = field(default_factory=set)
    stopped: bool = False


class FoldRungs:
    """Rung tables over configs; `record` one fold's result, get the verdict for it."""

    def __init__(self, rungs: list[int], reduction_factor: float, mode: str):
        self.rungs, self.rf, self.sign = sorted(rungs), reduction_factor, 1.0 if mode == "max" else -1.0
        self.configs: dict[str, ConfigState] = {}
        self.means: dict[int, list[float]] = {r: [] for r in self.rungs}  # signed: higher is better

    def expect(self, config_id: str, fold: int, budget: int | None = None) -> None:
        """A fold that will report; `budget`: its config's epochs (a config may search train.epochs)."""
        state = self.configs.setdefault(config_id, ConfigState())
        if fold not in state.left:
            state.folds.add(fold)
        state.budget = budget if budget is not None else state.budget

    def record(self, config_id: str, fold: int, epoch: int, score: float) -> Verdict:
        state = self.configs[config_id]
        if state.stopped:
            return Verdict.STOP
        if epoch not in self.means or (state.budget is not None and epoch >= state.budget):
            return Verdict.CONTINUE  # not a rung, or the config's last epoch: nothing left to save
        state.scores.setdefault(epoch, {})[fold] = score
        return self._settle(state, epoch) or (Verdict.CONTINUE if epoch in state.passed else Verdict.WAIT)

    def drop(self, config_id: str, fold: int, last_epoch: int) -> list[int]:
        """A fold ended (or failed) at `last_epoch`: later rungs stop waiting for it.

        Returns the rungs this completes and so decides now (their waiting folds act on it).
        """
        state = self.configs[config_id]
        if all(r <= last_epoch for r in self.rungs) or fold not in state.folds:
            return []
        state.folds.discard(fold)
        state.left.add(fold)
        return [r for r in self.rungs if r > last_epoch and r in state.scores and self._settle(state, r)]

    def seed(self, config_id: str, fold: int, history: dict[int, float]) -> None:
        """Scores a fold reported in an earlier run (resume, or a grid grown since)."""
        state = self.configs.setdefault(config_id, ConfigState())
        state.folds.add(fold)
        for epoch, score in history.items():
            if epoch in self.means:
                state.scores.setdefault(epoch, {})[fold] = score

    def settle_seeds(self) -> None:
        """Complete rungs among the seeds become history: their means count for every later config.

        They are not judged again: what happened to those configs then already happened.
        """
        for state in self.configs.values():
            for rung in self.rungs:
                if rung not in state.passed and self._complete(state, rung):
                    self.means[rung].append(self._mean(state, rung))
                    state.passed.add(rung)

    def is_stopped(self, config_id: str) -> bool:
        return self.configs[config_id].stopped

    def has_passed(self, config_id: str, rung: int) -> bool:
        return rung in self.configs[config_id].passed

    def reached(self, config_id: str, rung: int) -> set[int]:
        """Folds that reported rung `rung`."""
        return set(self.configs[config_id].scores.get(rung, {}))

    # ---------------------------------------------------------------- private

    def _complete(self, state: ConfigState, rung: int) -> bool:
        return bool(state.folds) and state.folds <= set(state.scores.get(rung, {}))

    def _mean(self, state: ConfigState, rung: int) -> float:
        return self.sign * float(np.mean([state.scores[rung][f] for f in state.folds]))

    def _settle(self, state: ConfigState, rung: int) -> Verdict | None:
        """Judge the config at `rung` if every fold that counts has reported it (once)."""
        if rung in state.passed or state.stopped or not self._complete(state, rung):
            return None
        mean, recorded = self._mean(state, rung), self.means[rung]
        cutoff = np.nanpercentile(recorded, (1 - 1 / self.rf) * 100) if recorded else None
        recorded.append(mean)
        if cutoff is not None and (math.isnan(mean) or mean < cutoff):
            state.stopped = True
            return Verdict.STOP
        state.passed.add(rung)
        return Verdict.CONTINUE
