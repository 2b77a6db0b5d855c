"""How long a training run may go on in one call: a wall-clock and a step budget, and checkpoints inside an epoch.

The ``deidkit train`` options ``--max-minutes`` and ``--checkpoint-every`` set them for every
:class:`deidkit.train.loop.TrainingRun` created inside :func:`run_limits`, so the recipes need no extra
parameters. A run that reaches its limit checkpoints and returns; the same call later continues where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator


class TimeLimitReached(RuntimeError):
    """A stage a recipe depends on (e.g. FaDeNet's critic) stopped at the time limit before it finished."""


@dataclasses.dataclass(frozen=True)
class RunLimits:
    """How long a run may train in this call and how often it checkpoints inside an epoch.

    ``max_minutes``: stop cleanly (with a checkpoint) at the first step that ends after this much wall time; the
    same call later continues where it stopped and ends with the same weights as an uninterrupted run.
    ``checkpoint_every``: also checkpoint every this many steps inside an epoch (a crash loses at most that many).
    ``max_steps``: stop the same way after this many steps (smoke runs, the training-speed benchmark)."""

    max_minutes: float | None = None
    checkpoint_every: int | None = None
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")


_LIMITS = RunLimits()
_DEADLINE: float | None = None
_STEPS_LEFT: int | None = None


@contextlib.contextmanager
def run_limits(max_minutes: float | None = None, checkpoint_every: int | None = None,
               max_steps: int | None = None) -> Iterator[RunLimits]:
    """Limits for every :class:`TrainingRun` created inside the block (the ``deidkit train`` options
    ``--max-minutes`` and ``--checkpoint-every``), so the training recipes need no extra parameters. The clock
    starts when the block is entered."""
    global _LIMITS, _DEADLINE, _STEPS_LEFT
    limits = RunLimits(max_minutes, checkpoint_every, max_steps)
    previous = _LIMITS, _DEADLINE, _STEPS_LEFT
    _LIMITS, _STEPS_LEFT = limits, max_steps
    _DEADLINE = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    try:
        yield limits
    finally:
        _LIMITS, _DEADLINE, _STEPS_LEFT = previous


def current_limits() -> RunLimits:
    """The limits of the innermost :func:`run_limits` block (none outside one)."""
    return _LIMITS


def time_is_up() -> bool:
    """Whether the current :func:`run_limits` block's time (or its step budget) is spent."""
    return (_DEADLINE is not None and time.monotonic() >= _DEADLINE) or _STEPS_LEFT == 0


def count_step() -> None:
    """Spend one step of the current block's step budget (the loop calls it after every step)."""
    global _STEPS_LEFT
    if _STEPS_LEFT is not None:
        _STEPS_LEFT -= 1
