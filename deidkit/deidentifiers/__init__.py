"""Every de-identifier of the kit by name: the naive baselines, the shipped pretrained models (``live``,
``fadenet``: :mod:`deidkit.pretrained`) and models trained in the cache by notebooks 02 and 03
(``live_quick``, ``fadenet_quick``, ...).

This registry sits on top of the de-identifiers: it imports the model modules, none of them imports it."""

from __future__ import annotations

from collections.abc import Callable

from deidkit.baselines import (
    BASELINE_PATTERNS,
    TRAINED_NAMES,
    Deidentifier,
    baseline_deidentifiers,
    get_deidentifier,
    unknown_message,
    valid_choices,
)
from deidkit.shipped import check_not_renamed, shipped_models

#: Trained de-identifiers: name prefix -> loader(name, profile). The kit's own (:data:`KIT_FAMILIES`) are added on
#: first use; other code may add its own with :func:`register_trained`.
TRAINED: dict[str, Callable[[str, str], Deidentifier]] = {}

#: Name prefixes of the kit's own trained models (their modules: ``deidkit.deidentifiers.<prefix>``).
KIT_FAMILIES = ("fadenet", "live")


def register_trained(prefix: str, loader: Callable[[str, str], Deidentifier]) -> None:
    TRAINED[prefix] = loader


def _kit_loader(prefix: str) -> Callable[[str, str], Deidentifier]:
    # imported on first use: these modules pull in torch, which baseline-only users never need
    if prefix == "fadenet":
        from deidkit.deidentifiers.fadenet import load_fadenet_deidentifier

        return load_fadenet_deidentifier
    from deidkit.deidentifiers.live_names import live_deidentifier_by_name

    return live_deidentifier_by_name


def load_deidentifier(name: str, profile: str | None = None) -> Deidentifier:
    """A de-identifier by name: ``live`` / ``fadenet`` are the shipped pretrained models (when ``profile`` is
    None); other ``fadenet...`` / ``live...`` names are runs trained in the cache (bare names then mean the run
    of ``profile``, default ``quick``); anything else is a baseline (``blur_sigma8``, ``pixelate_16px``, ...)."""
    if profile is None:
        if name in shipped_models():
            from deidkit.pretrained import load_pretrained

            return load_pretrained(name)
        check_not_renamed(name)  # an old shipped name is refused, never read as something else
        profile = "quick"
    for prefix in KIT_FAMILIES:
        if name.startswith(prefix) and prefix not in TRAINED:
            register_trained(prefix, _kit_loader(prefix))
    for prefix, loader in TRAINED.items():
        if name.startswith(prefix):
            try:
                return loader(name, profile)
            except ValueError as exc:
                # A loader's own "unknown ..." error lists only its family (live_nosuch would not name the shipped
                # fadenet): kept, with every valid choice after it (one line, the same exception type).
                if str(exc).startswith("unknown"):
                    raise ValueError(f"{exc}; valid choices: {valid_choices()}") from None
                raise
    return get_deidentifier(name)


def load_deidentifiers(baselines: tuple[str, ...] | list[str] | None, extra: list[str] | tuple[str, ...] = (),
                       profile: str = "quick") -> list[Deidentifier]:
    """The baselines named (all when None) followed by the extra (trained) de-identifiers."""
    base = baseline_deidentifiers() if baselines is None else [get_deidentifier(n) for n in baselines]
    return [*base, *(load_deidentifier(n, profile) for n in extra)]


__all__ = ["BASELINE_PATTERNS", "KIT_FAMILIES", "TRAINED", "TRAINED_NAMES", "Deidentifier", "baseline_deidentifiers",
           "get_deidentifier", "load_deidentifier", "load_deidentifiers", "register_trained", "unknown_message",
           "valid_choices"]
