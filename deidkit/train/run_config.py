"""A run's configuration as saved in its folder (``config.json``), and when a saved one is the same experiment as
the current one: :class:`deidkit.train.loop.TrainingRun` refuses to resume a folder whose run differs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


def jsonable(config: Any) -> Any:
    """``config`` (a dict or a dataclass) as plain JSON values, the form it is saved and compared in."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    # A JSON round trip normalises tuples to lists so that a saved config compares equal to a fresh one.
    return json.loads(json.dumps(config, default=str, sort_keys=True))


def same_setting(key: str, saved: Any, current: Any) -> bool:
    """Whether a configuration value saved with a run equals the current one. Folders (keys ending in ``_dir``)
    compare by their last component: a run copied to another cache (``DEIDKIT_CACHE``) records the folder of its
    critic under the old root, and is the same experiment."""
    if saved == current:
        return True
    if key.endswith("_dir") and isinstance(saved, str) and isinstance(current, str) and saved and current:
        return Path(saved).name == Path(current).name
    return False


def option_is_off(value: Any) -> bool:
    """Whether a configuration value means "this option is not used" (None, False, 0, "", [] or {})."""
    return value is None or value is False or (isinstance(value, (int, float, str, list, dict)) and not value)
