"""Training: the shared resumable loop, augmentation, and the critic/FaDeNet training recipes."""

from deidkit.train.loop import (
    TrainingDiverged,
    TrainingRun,
    load_checkpoint,
    load_module_state,
    seed_everything,
)

__all__ = ["TrainingDiverged", "TrainingRun", "load_checkpoint", "load_module_state", "seed_everything"]
