"""Every de-identifier of the kit by name: the naive baselines, the shipped pretrained models (``live``,
``fadenet``: :mod:`deidkit.pretrained`) and models trained in the cache by notebooks 02 and 03
(``live_quick``, ``fadenet_quick``, ...)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from deidkit.baselines import Deidentifier, baseline_deidentifiers, get_deidentifier

#: Trained de-identifiers: name prefix -> loader(name, profile). Filled by the model packages on import.
TRAINED: dict[str, Callable[[str, str], Deidentifier]] = {}

#: Modules that register the kit's own trained models; imported on first use because they pull in torch, which
#: baseline-only users never need.
TRAINED_MODULES: dict[str, str] = {"fadenet": "deidkit.deidentifiers.fadenet", "live": "deidkit.deidentifiers.live"}


def register_trained(prefix: str, loader: Callable[[str, str], Deidentifier]) -> None:
    TRAINED[prefix] = loader


def load_deidentifier(name: str, profile: str | None = None) -> Deidentifier:
    """A de-identifier by name: ``live`` / ``fadenet`` are the shipped pretrained models (when ``profile`` is
    None); other ``fadenet...`` / ``live...`` names are runs trained in the cache (bare names then mean the run
    of ``profile``, default ``quick``); anything else is a baseline (``blur_sigma8``, ``pixelate_16px``, ...)."""
    if profile is None:
        from deidkit.pretrained import load_pretrained, shipped_models

        if name in shipped_models():
            return load_pretrained(name)
        profile = "quick"
    for prefix, module in TRAINED_MODULES.items():
        if name.startswith(prefix) and prefix not in TRAINED:
            importlib.import_module(module)
    for prefix, loader in TRAINED.items():
        if name.startswith(prefix):
            return loader(name, profile)
    return get_deidentifier(name)


def load_deidentifiers(baselines: tuple[str, ...] | list[str] | None, extra: list[str] | tuple[str, ...] = (),
                       profile: str = "quick") -> list[Deidentifier]:
    """The baselines named (all when None) followed by the extra (trained) de-identifiers."""
    base = baseline_deidentifiers() if baselines is None else [get_deidentifier(n) for n in baselines]
    return [*base, *(load_deidentifier(n, profile) for n in extra)]
