"""What every experiment's configuration shares: the speed options and how a named profile is looked up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class SpeedOptions:
    """Speed on a GPU, shared by every experiment: bf16 autocast where the device supports it, the channels-last
    memory format, torch.compile. Off (the exact float32 computation) in the CPU profiles; the paper profiles turn
    them on (see :mod:`deidkit.train.speed`)."""

    amp: bool = False
    channels_last: bool = False
    compile: bool = False


#: A recipe written as (the profile it starts from, the fields it changes), as :mod:`deidkit.configs.experiments`
#: holds them.
Recipe = tuple[str, dict[str, Any]]


def resolve(name: str, presets: Mapping[str, dict[str, Any]], recipes: Mapping[str, Recipe]) -> dict[str, Any]:
    """The field values of profile ``name``: a preset as written, or a recipe's changes over its base profile
    (itself a preset or a recipe, resolved the same way)."""
    if name in presets:
        return dict(presets[name])
    base, changes = recipes[name]
    return {**resolve(base, presets, recipes), **changes}
