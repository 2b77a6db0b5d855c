"""Configuration as data: one dataclass per trained model, each with named profiles (``tiny``, ``quick``,
``standard``, ``paper``, the shipped models' recipes) that the CLI and the notebooks build with
``Config.profile(name, **overrides)``.

One module per model: :mod:`.critic`, :mod:`.fadenet`, :mod:`.live` and :mod:`.detail` (the live model's detail
stage). The recipes that were tried, and the fine-tuning chains the shipped FaDeNets come from, are data in
:mod:`.experiments`; ``profile`` resolves those names too. The training recipes (``deidkit.train``) and the trained
models' inference (``deidkit.deidentifiers``) both read them.
"""

from __future__ import annotations

from deidkit.configs._base import SpeedOptions
from deidkit.configs.critic import CRITIC_KINDS, CRITIC_PROFILES, CriticConfig
from deidkit.configs.detail import DETAIL_PROFILES, DetailConfig
from deidkit.configs.fadenet import (
    DEFAULT_FEATURE_LAYERS,
    DEFAULT_PUSH_LAYERS,
    FADENET_PROFILES,
    FaDeNetConfig,
)
from deidkit.configs.live import (
    LAMBDA_SHAPE,
    LIVE_PROFILES,
    PAPER_LAMBDA_STEPS,
    PROFILES,
    LiveConfig,
    LiveLossWeights,
)

__all__ = ["CRITIC_KINDS", "CRITIC_PROFILES", "DEFAULT_FEATURE_LAYERS", "DEFAULT_PUSH_LAYERS", "DETAIL_PROFILES",
           "FADENET_PROFILES", "LAMBDA_SHAPE", "LIVE_PROFILES", "PAPER_LAMBDA_STEPS", "PROFILES", "CriticConfig",
           "DetailConfig", "FaDeNetConfig", "LiveConfig", "LiveLossWeights", "SpeedOptions", "training_profiles"]

# The classes keep their public path, deidkit.configs.X, as their module (as before the split): the output cache's
# fingerprints (deidkit.cache) record a configuration by its class's module, and pickles and reprs show it.
for _cls in (SpeedOptions, CriticConfig, FaDeNetConfig, LiveLossWeights, LiveConfig, DetailConfig):
    _cls.__module__ = __name__
del _cls


def training_profiles() -> list[str]:
    """Every profile name of any trained model, in first-seen order (the CLI's ``--profile`` choices)."""
    return list(dict.fromkeys(CRITIC_PROFILES + FADENET_PROFILES + LIVE_PROFILES + DETAIL_PROFILES))
