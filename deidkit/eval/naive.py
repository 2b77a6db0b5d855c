"""The naive families the privacy-utility frontier is built from (blur, pixelation, each boxed and blended) and
which family a de-identifier belongs to. Kept apart from :mod:`deidkit.eval.frontier` so that the evaluation's
configuration (:class:`deidkit.eval.benchmark.RecognitionEvalConfig`) can name them without importing the frontier,
which runs the benchmark: the evaluation modules import one way."""

from __future__ import annotations

from collections.abc import Sequence

from deidkit.baselines import BLEND_NAME


def _blended(names: Sequence[str], suffix: str) -> tuple[str, ...]:
    return tuple(f"{n}{suffix}" for n in names)


#: The naive families and the strengths the frontier is built from (224-pixel canonical crop scale).
#:
#: *Boxed* (``blur``, ``pixelate``): the face box changed with a hard edge. Dense where the learned models sit
#: (canonical-crop SSIM 0.85-0.89, whole-photo SSIM 0.90-0.94): on 114 ``lfw_57x8`` crops blur sigma 3 / 4 / 5 / 6
#: give crop SSIM 0.906 / 0.870 / 0.842 / 0.822, pixelation 4 / 5 / 6 / 7 px 0.910 / 0.881 / 0.853 / 0.830.
#:
#: *Blended* (``blur_blend``, ...): the same changes pasted as the learned models paste theirs
#: (:class:`deidkit.baselines.Blended`: feathered face box, colour match), at two feathers: 0.26, the shipped
#: ``fadenet``'s (:data:`deidkit.baselines.BLEND_FEATHER`), and 0.13, a narrower blend that reaches lower SSIM. The
#: frontier takes whichever does better at each SSIM, as a feather chosen for the naive paste would. A feather
#: leaves the box's edges partly unchanged, so the same strength costs less SSIM and a blended family needs
#: far stronger members to reach the learned points: at feather 0.26 even a face box of flat colour keeps crop SSIM
#: 0.857 (blur sigma 8 / 16 / 32 / 64: 0.908 / 0.886 / 0.871 / 0.861), at 0.13 blur sigma 4 / 8 / 16 / 24 give
#: 0.910 / 0.856 / 0.820 / 0.805. On whole photos (30 of them) feather 0.26 reaches photo SSIM 0.910 (blur sigma
#: 64; sigma 16: 0.923), feather 0.13 0.893 (sigma 16; sigma 8: 0.913): learned points at photo SSIM 0.90-0.94
#: need the strongest members, and below 0.910 only the narrower feather covers them.
NAIVE_FAMILIES: dict[str, tuple[str, ...]] = {
    "blur": tuple(f"blur_sigma{s:g}" for s in (1, 2, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 12, 16)),
    "pixelate": tuple(f"pixelate_{b}px" for b in (2, 3, 4, 5, 6, 7, 8, 12, 16, 24)),
    "blur_blend": _blended([f"blur_sigma{s:g}" for s in (2, 4, 6, 8, 12, 16, 24, 32, 64)], "_blend"),
    "pixelate_blend": _blended([f"pixelate_{b}px" for b in (4, 6, 8, 12, 16, 24, 48)], "_blend"),
    "blur_blend_f0.13": _blended([f"blur_sigma{s:g}" for s in (2, 4, 5, 6, 8, 10, 12, 16, 24)],
                                 "_blend_f0.13"),
    "pixelate_blend_f0.13": _blended([f"pixelate_{b}px" for b in (4, 5, 6, 8, 10, 12, 16, 24)],
                                     "_blend_f0.13"),
}

#: Name prefixes of the kit's naive baselines (members of a family or not).
NAIVE_PREFIXES = {"blur_sigma": "blur", "pixelate_": "pixelate", "noise_sigma": "noise", "blackbox": "blackbox"}


def _kind(name: str) -> str | None:
    return next((fam for prefix, fam in NAIVE_PREFIXES.items() if name.startswith(prefix)), None)


def family_of(name: str, families: dict[str, Sequence[str]] | None = None) -> str | None:
    """The naive family a de-identifier belongs to: one of ``families`` (``"blur"``, ``"pixelate_blend"``, ...) by
    membership, else a naive baseline's kind by name (``"noise"``, ``"blackbox"``, a blur outside the family's
    strengths), with a blended baseline's suffix after it (``blur_sigma7_blend_f0.1`` -> ``"blur_blend_f0.1"``),
    else None (a learned de-identifier)."""
    for fam, names in (families or NAIVE_FAMILIES).items():
        if name in names:
            return fam
    blend = BLEND_NAME.fullmatch(name)
    if blend is not None:
        kind = _kind(blend.group(1))
        return None if kind is None else kind + name[len(blend.group(1)):]
    return _kind(name)


def variant_of(family: str | None) -> str | None:
    """``"blended"`` for a blended family (``blur_blend``, ``pixelate_blend_f0.13``), ``"boxed"`` for another naive
    family, None for None (no family)."""
    if family is None:
        return None
    return "blended" if "_blend" in family else "boxed"


def naive_deidentifiers(families: dict[str, Sequence[str]] | None = None) -> list:
    """Every member of the naive families as kit de-identifiers."""
    from deidkit.baselines import get_deidentifier

    return [get_deidentifier(n) for names in (families or NAIVE_FAMILIES).values() for n in names]
