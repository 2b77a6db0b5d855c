"""The naive families the privacy-utility frontier is built from (blur, pixelation) and which family a de-identifier
belongs to. Kept apart from :mod:`deidkit.eval.frontier` so that the evaluation's configuration
(:class:`deidkit.eval.benchmark.RecognitionEvalConfig`) can name them without importing the frontier, which runs
the benchmark: the evaluation modules import one way."""

from __future__ import annotations

from collections.abc import Sequence

#: The naive families and the strengths the frontier is built from (224-pixel canonical crop scale). Dense at
#: the light end, where learned de-identifiers aim to sit.
NAIVE_FAMILIES: dict[str, tuple[str, ...]] = {
    "blur": tuple(f"blur_sigma{s:g}" for s in (1, 2, 3, 4, 6, 8, 12, 16)),
    "pixelate": tuple(f"pixelate_{b}px" for b in (2, 3, 4, 6, 8, 12, 16, 24)),
}

#: Name prefixes of the kit's naive baselines (members of a family or not).
NAIVE_PREFIXES = {"blur_sigma": "blur", "pixelate_": "pixelate", "noise_sigma": "noise", "blackbox": "blackbox"}


def family_of(name: str, families: dict[str, Sequence[str]] | None = None) -> str | None:
    """The naive family a de-identifier belongs to: one of ``families`` (``"blur"``, ``"pixelate"``) by
    membership, else a naive baseline's kind by name (``"noise"``, ``"blackbox"``, a blur outside the family's
    strengths), else None (a learned de-identifier)."""
    for fam, names in (families or NAIVE_FAMILIES).items():
        if name in names:
            return fam
    return next((fam for prefix, fam in NAIVE_PREFIXES.items() if name.startswith(prefix)), None)


def naive_deidentifiers(families: dict[str, Sequence[str]] | None = None) -> list:
    """Every member of the naive families as kit de-identifiers."""
    from deidkit.baselines import get_deidentifier

    return [get_deidentifier(n) for names in (families or NAIVE_FAMILIES).values() for n in names]
