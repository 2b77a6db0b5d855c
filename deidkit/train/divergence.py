"""When training has gone wrong: a loss term that is no longer finite, or a network that collapsed to the
identity map. The loop raises :class:`TrainingDiverged`; a recipe that can undo a collapse (FaDeNet's) detects it
with :func:`collapsed_in_last_epoch` and raises :class:`TrainingCollapsed` when undoing it does not help."""

from __future__ import annotations

import pandas as pd


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite; training stopped without writing a checkpoint."""


class TrainingCollapsed(TrainingDiverged):
    """The network fell back to an identity map (its change to the input vanished) and halving the learning rate
    did not keep it from doing so again: its outputs would be the input, every face unchanged."""


def collapsed_in_last_epoch(log: pd.DataFrame, term: str = "l1", window: int = 20, floor: float = 5e-3,
                            ratio: float = 0.02) -> tuple[bool, float, float]:
    """Whether the change term ``term`` (e.g. FaDeNet's distance of output to input) ended the log's last epoch
    below ``ratio`` x its peak (a ``window``-step mean, peak above ``floor``): a collapse to the identity map,
    which dead ReLUs after one large step make permanent. Returns (collapsed, last-window mean, peak)."""
    if term not in log or len(log) < 2 * window:
        return False, float("nan"), float("nan")
    values = log[term].astype(float)
    peak = float(values.rolling(window, min_periods=window).mean().max())
    last = float(values[log["epoch"] == log["epoch"].max()].tail(window).mean())
    return bool(peak > floor and last < ratio * peak), last, peak
