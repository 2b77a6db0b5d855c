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


#: Names of models trained in the cache (the loaders of :data:`TRAINED_MODULES` read them).
TRAINED_NAMES = ("live_<profile>[_stage<0-3>][_s<strength>]", "live-<run>[@stage<0-3>]", "fadenet_<profile>",
                 "fadenet-<run>[@epoch<NNN>]")
#: Baseline names beyond the listed strengths (:func:`~deidkit.baselines.get_deidentifier` parses them).
BASELINE_PATTERNS = ("blur_sigma<S>", "pixelate_<B>px", "noise_sigma<S>")


def valid_choices() -> str:
    """Every de-identifier name the kit accepts, on one line: the shipped models (from the manifest, so a newly
    shipped one is listed without touching this), the names of models trained in the cache, the baselines."""
    from deidkit.baselines import Identity

    try:
        from deidkit.pretrained import shipped_models

        shipped = ", ".join(shipped_models()) or "none"
    except Exception as exc:  # the message must still come out when the manifest cannot be read
        shipped = f"unreadable ({type(exc).__name__}: {exc})".replace("\n", " ")
    baselines = ", ".join(d.name for d in [Identity(), *baseline_deidentifiers()])
    return (f"shipped models: {shipped}; trained in the cache: {', '.join(TRAINED_NAMES)}; baselines: {baselines} "
            f"(or {', '.join(BASELINE_PATTERNS)})")


def unknown_message(name: str) -> str:
    """The one-line error for a name that is no de-identifier, listing every valid choice."""
    return f"unknown de-identifier {name!r}; valid choices: {valid_choices()}"


def load_deidentifier(name: str, profile: str | None = None) -> Deidentifier:
    """A de-identifier by name: ``live`` / ``fadenet`` are the shipped pretrained models (when ``profile`` is
    None); other ``fadenet...`` / ``live...`` names are runs trained in the cache (bare names then mean the run
    of ``profile``, default ``quick``); anything else is a baseline (``blur_sigma8``, ``pixelate_16px``, ...)."""
    if profile is None:
        from deidkit.pretrained import RENAMED, load_pretrained, shipped_models

        if name in shipped_models():
            return load_pretrained(name)
        if name in RENAMED:  # an old shipped name is refused, never read as something else
            raise ValueError(f"{name!r} is no longer a shipped name: its weights ship as {RENAMED[name]!r} "
                             f"(docs/models/{RENAMED[name]}.md)")
        profile = "quick"
    for prefix, module in TRAINED_MODULES.items():
        if name.startswith(prefix) and prefix not in TRAINED:
            importlib.import_module(module)
    for prefix, loader in TRAINED.items():
        if name.startswith(prefix):
            try:
                return loader(name, profile)
            except ValueError as exc:
                # A loader's own "unknown ..." error lists only its family (live_nosuch would not name the shipped
                # fadenet_refine): kept, with every valid choice after it (one line, the same exception type).
                if str(exc).startswith("unknown"):
                    raise ValueError(f"{exc}; valid choices: {valid_choices()}") from None
                raise
    return get_deidentifier(name)


def load_deidentifiers(baselines: tuple[str, ...] | list[str] | None, extra: list[str] | tuple[str, ...] = (),
                       profile: str = "quick") -> list[Deidentifier]:
    """The baselines named (all when None) followed by the extra (trained) de-identifiers."""
    base = baseline_deidentifiers() if baselines is None else [get_deidentifier(n) for n in baselines]
    return [*base, *(load_deidentifier(n, profile) for n in extra)]
