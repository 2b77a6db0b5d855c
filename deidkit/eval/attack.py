"""Privacy against an adaptive attacker: a recogniser that has learnt the de-identifier.

The kit is public, so an attacker can de-identify photos of people they know and learn to see through the change.
Three attackers, each trained per de-identifier on the attacker split (``lfw_attack_split``, below):

- ``adapted_linear``: an off-the-shelf recogniser kept frozen, with a linear head on its embedding (least squares
  regularised towards the identity map, closed form) from the embedding of a de-identified face to the embedding of
  the same face's original; its regularisation chosen on the split's held-out identities
  (:mod:`deidkit.eval.attack_linear`). A de-identifier whose change is a fixed, learnable distortion of the
  embedding (blur is the textbook case) gives identity back to it.
- ``adapted_finetune``: the recogniser's last blocks fine-tuned so that a de-identified face lands on its original's
  embedding (:mod:`deidkit.eval.attack_finetune`; torch recognisers only: dlib's network cannot be fine-tuned).
- ``reversal``: a small residual U-Net (the kit's FaDeNet network) trained with an L1 loss to map de-identified faces
  back to their originals at the judges' input size (112 pixels), applied to the de-identified probes before an
  off-the-shelf recogniser (:mod:`deidkit.eval.attack_reversal`).

At test time each attacker searches the protocol's gallery of originals with the de-identified probes, as the plain
(``none``) attacker does without any learning. Trained attackers are cached and resumable like every training run of
the kit (``cache_dir()/runs/reversal-...``, ``cache_dir()/runs/attack-finetune-...``).

**The attacker split.** Every LFW identity is either in a test protocol (``lfw_217x8``, which holds ``lfw_57x8`` and
the selection set ``lfw_select_160x8``) or in the training pool (``lfw_train_pool``), so no identity is unseen by
every de-identifier. ``lfw_attack_split`` (:func:`deidkit.data.protocols.attack_split_manifest`) is a seeded third
of the pool's identities with fewer than 4 images: outside the critic's split, hence never seen by the FaDeNet
models or their critics, but seen by the live model, which trained on every pool image. Its ``role`` column holds
out a fifth of its identities for the attacker's own model selection. The shipped ``live`` was trained against an
online linear head on MobileFaceNet-MS1M fitted to its own training batches; none of these attackers is that one.

Records: ``{"kind": "attack", "attack": "none" | "adapted_linear" | "adapted_finetune" | "reversal",
"deidentifier", "recognizer", "rank1", "rank1_std", "median_true_rank", "gallery", "protocol", "train_split",
"train_images", "heldout_images", "weights_sha256", "weights_source", "commit"}`` plus each attacker's own fields
(ranks within the protocol's gallery of originals; the de-identifier's weights and the kit's commit:
:mod:`deidkit.eval.provenance`). Older records name the linear attacker ``"adapted"``; :func:`attack_name` reads
them as ``adapted_linear``.

The attacker's training images never show an identity of the test protocols: :class:`AttackSplit` refuses them
(:func:`deidkit.data.lfw.assert_no_test_identities`), whoever chose them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from deidkit.data.lfw import assert_no_test_identities

# the linear head and the reversal network live in their own modules; their names stay importable from here, where
# the training code, the command line, notebooks and tests import them
from deidkit.eval.attack_linear import AdaptedHead, choose_ridge, choose_ridge_heldout, fit_adapted_head
from deidkit.eval.attack_reversal import ReversalConfig, reverse, train_reversal
from deidkit.eval.embeddings import DeidentifiedBatch, embed_cached, embed_deidentified
from deidkit.eval.identification import evaluate_identification, heldout_gallery, heldout_rank1
from deidkit.eval.provenance import provenance

#: The trained attackers, in the order ``deidkit attack`` runs them.
ATTACKS = ("adapted_linear", "adapted_finetune", "reversal")
#: What ``deidkit attack`` runs unless told otherwise (the reversal U-Net is the slowest to train).
DEFAULT_ATTACKS = ("adapted_linear", "adapted_finetune")
#: Record names of earlier versions of the kit.
ATTACK_ALIASES = {"adapted": "adapted_linear"}
#: The manifest the attackers learn from.
ATTACK_SPLIT = "lfw_attack_split"


def attack_name(name: str) -> str:
    """An attack record's ``attack`` under its current name (``"adapted"`` of older records -> ``"adapted_linear"``)."""
    return ATTACK_ALIASES.get(name, name)


@dataclass(frozen=True)
class AttackSplit:
    """Training images of the attacker (paths, identities), its held-out images (its own model selection) and the
    test protocol. No training or held-out identity is in the protocol or in any test protocol (``lfw_57x8``,
    ``lfw_217x8``), and no held-out identity is a training one. ``train_split`` names where the images come from
    (the manifest, written into every record)."""

    train_paths: list[str]
    train_identities: list[str]
    protocol: pd.DataFrame
    protocol_name: str = ""
    heldout_paths: list[str] = field(default_factory=list)
    heldout_identities: list[str] = field(default_factory=list)
    train_split: str = "custom"

    def __post_init__(self) -> None:
        if len(self.train_paths) != len(self.train_identities) or len(self.heldout_paths) != len(
                self.heldout_identities):
            raise ValueError("every attacker image needs its identity (paths and identities differ in length)")
        learnt = set(self.train_identities) | set(self.heldout_identities)
        shared = learnt & set(self.protocol["identity"])
        if shared:
            raise ValueError(f"the attacker's training identities overlap the test protocol: {sorted(shared)[:5]}")
        # the attacker learns on these images: any test identity, not only the evaluated protocol's, is a leak
        assert_no_test_identities(learnt, "the attacker's training images (deidkit.eval.attack)")
        both = set(self.train_identities) & set(self.heldout_identities)
        if both:  # a held-out identity seen in training would flatter the attacker's own model selection
            raise ValueError(f"the attacker's held-out identities are also training ones: {sorted(both)[:5]}")


def attack_split(protocol: str = "lfw_57x8", train_manifest: str = ATTACK_SPLIT, max_images: int = 2000,
                 seed: int = 0, n_identities: int | None = None, max_heldout: int | None = None) -> AttackSplit:
    """The attacker's images from ``train_manifest`` (its ``train`` role, up to ``max_images`` of them drawn with
    ``seed``; whole identities of its ``heldout`` role, drawn with ``seed``, up to ``max_heldout`` images: by default
    a quarter of ``max_images``, at least 32, which is the whole role for the default 2,000) and the test protocol
    (its first ``n_identities`` identities only, for quick checks). A manifest without a ``role`` column gives
    training images only."""
    from deidkit.data.lfw import load_manifest
    from deidkit.data.protocols import first_identities

    test = first_identities(load_manifest(protocol), n_identities)
    pool = load_manifest(train_manifest)
    pool = pool[~pool["identity"].isin(set(test["identity"]))]
    roles = pool["role"] if "role" in pool.columns else pd.Series("train", index=pool.index)
    train, held = pool[roles == "train"], pool[roles == "heldout"]
    if max_images < len(train):
        train = train.sample(n=max_images, random_state=seed).sort_values("path")
    cap = max(32, max_images // 4) if max_heldout is None else max_heldout
    if cap < len(held):  # a small attacker (a quick check) gets a proportionate held-out part, whole identities
        sizes = held.groupby("identity").size()
        order = np.random.default_rng(seed).permutation(sorted(sizes.index))
        keep = order[:max(1, int(np.searchsorted(sizes[order].cumsum().to_numpy(), cap, side="right")))]
        held = held[held["identity"].isin(set(keep))]
    return AttackSplit(train["path"].tolist(), train["identity"].tolist(), test, protocol,
                       held["path"].tolist(), held["identity"].tolist(), train_manifest)


def _summary(protocol: pd.DataFrame, gallery: np.ndarray, probes: np.ndarray) -> dict[str, float]:
    res = evaluate_identification(protocol, gallery, probes)
    s = res.summary()
    return {"rank1": s["rank1_mean"], "rank1_std": s["rank1_std"],
            "median_true_rank": float(np.median(np.concatenate(res.ranks)))}


# ------------------------------------------------------------------------------------------- every attacker


@dataclass
class AttackData:
    """Canonical crops of a split, loaded once for every de-identifier: the attacker's training and held-out
    images and the protocol's."""

    train: np.ndarray
    heldout: np.ndarray
    test: np.ndarray

    @classmethod
    def load(cls, split: AttackSplit, crop_size: int = 224) -> AttackData:
        from deidkit.data import lfw  # looked up at call time: tests stand in for the aligner

        def crops(paths: list[str]) -> np.ndarray:
            if not paths:
                return np.zeros((0, crop_size, crop_size, 3), np.uint8)
            return lfw.aligned_crops(paths, size=crop_size)

        return cls(crops(split.train_paths), crops(split.heldout_paths), crops(split.protocol["path"].tolist()))


@dataclass
class _Outputs:
    """One de-identifier's outputs on the split (computed once, when an attacker first needs the pixels)."""

    train: DeidentifiedBatch
    heldout: DeidentifiedBatch | None
    test: DeidentifiedBatch

    @classmethod
    def of(cls, deidentifier, data: AttackData) -> _Outputs:
        held = DeidentifiedBatch(deidentifier, data.heldout) if len(data.heldout) else None
        return cls(DeidentifiedBatch(deidentifier, data.train), held, DeidentifiedBatch(deidentifier, data.test))


def _row(attack: str, deidentifier: str, recognizer: str, split: AttackSplit, data: AttackData,
         summary: dict[str, float], weights: dict, **extra: object) -> dict:
    learnt = attack != "none"
    return {"kind": "attack", "attack": attack, "deidentifier": deidentifier, "recognizer": recognizer, **summary,
            "gallery": "protocol", "protocol": split.protocol_name,
            "train_split": split.train_split if learnt else None, "train_images": len(data.train) if learnt else 0,
            "heldout_images": len(data.heldout) if learnt else 0, **extra, **weights}


def _linear_rows(d, outputs: _Outputs, recognizers: Sequence, split: AttackSplit, data: AttackData, weights: dict,
                 plain: bool, linear: bool, ridge: float | None) -> list[dict]:
    rows = []
    for r in recognizers:
        gallery = embed_cached(r, data.test)
        probes = embed_deidentified(r, outputs.test)
        if plain:
            rows.append(_row("none", d.name, r.name, split, data, _summary(split.protocol, gallery, probes), weights))
        if not linear:
            continue
        e_out, e_orig = embed_deidentified(r, outputs.train), embed_cached(r, data.train)
        lam = ridge
        if lam is None and outputs.heldout is not None:
            lam = choose_ridge_heldout(e_out, e_orig, embed_deidentified(r, outputs.heldout),
                                       embed_cached(r, data.heldout), split.heldout_identities)
        elif lam is None:
            lam = choose_ridge(e_out, e_orig, split.train_identities)
        head = fit_adapted_head(e_out, e_orig, lam)
        rows.append(_row("adapted_linear", d.name, r.name, split, data,
                         _summary(split.protocol, gallery, head(probes)), weights, ridge=lam))
    return rows


def _finetune_rows(d, outputs: _Outputs, recognizers: Sequence, split: AttackSplit, data: AttackData,
                   weights: dict, config, progress: bool) -> list[dict]:
    from deidkit.eval.attack_finetune import train_finetune, tuned_recognizer

    rows = []
    for r in recognizers:
        result = train_finetune(r, d, data.train, data.heldout, split.heldout_identities, config,
                                progress=progress, train_batch=outputs.train, heldout_batch=outputs.heldout)
        tuned = tuned_recognizer(r, result)
        probes = embed_deidentified(tuned, outputs.test)
        by_judge = {"original": _summary(split.protocol, embed_cached(r, data.test), probes),
                    "finetuned": _summary(split.protocol, embed_cached(tuned, data.test), probes)}
        rows.append(_row("adapted_finetune", d.name, r.name, split, data, by_judge[result.gallery_judge], weights,
                         gallery_judge=result.gallery_judge,
                         rank1_gallery_original=by_judge["original"]["rank1"],
                         rank1_gallery_finetuned=by_judge["finetuned"]["rank1"],
                         finetune_epochs=result.best_epoch, finetune_first_block=result.config.first_block,
                         attacker_weights_sha256=result.weights_sha256, attacker_run=result.run_dir.name))
    return rows


def _reversal_rows(d, outputs: _Outputs, recognizers: Sequence, split: AttackSplit, data: AttackData,
                   weights: dict, config: ReversalConfig, progress: bool) -> list[dict]:
    unet = train_reversal(d, data.train, config, progress=progress, outputs=outputs.train.outputs)
    reversed_probes = reverse(unet, outputs.test.outputs, config.image_size)
    return [_row("reversal", d.name, r.name, split, data,
                 _summary(split.protocol, embed_cached(r, data.test), embed_cached(r, reversed_probes)), weights,
                 reversal_size=config.image_size, reversal_epochs=config.epochs) for r in recognizers]


def attack_records(deidentifiers: Sequence, recognizers: Sequence, split: AttackSplit | None = None,
                   attacks: Sequence[str] = DEFAULT_ATTACKS, plain: bool = True, ridge: float | None = None,
                   finetune=None, reversal: ReversalConfig | None = None, crop_size: int = 224,
                   progress: bool = True) -> list[dict]:
    """``attack`` records of every de-identifier against every recogniser: the plain attacker (unless ``plain`` is
    False) and each of ``attacks`` (:data:`ATTACKS`), on the split's test protocol (gallery: originals).
    ``ridge`` None: the linear attacker picks it on its held-out identities; ``finetune``
    (:class:`deidkit.eval.attack_finetune.FinetuneConfig`) and ``reversal`` (:class:`ReversalConfig`): the
    recipes, their ``quick`` profiles by default. Embeddings go through the kit's content-addressed cache; each
    de-identifier runs once on the split."""
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack {unknown[0]!r}; choose from {', '.join(ATTACKS)}")
    split = split or attack_split()
    data = AttackData.load(split, crop_size)
    tunable = []
    if "adapted_finetune" in attacks:
        from deidkit.eval.attack_finetune import FinetuneConfig, finetunable

        finetune = finetune or FinetuneConfig()
        tunable = [r for r in recognizers if finetunable(r)]
        for r in recognizers:
            if r not in tunable:  # dlib's ResNet runs outside torch: nothing to fine-tune
                print(f"adapted_finetune: {r.name} is not a torch network that can be fine-tuned; skipped")
    reversal = reversal or ReversalConfig()
    rows = []
    for d in deidentifiers:
        # the outputs' embeddings come from the cache when this de-identifier has seen these crops before
        outputs, weights = _Outputs.of(d, data), provenance(d)
        if plain or "adapted_linear" in attacks:
            rows += _linear_rows(d, outputs, recognizers, split, data, weights, plain, "adapted_linear" in attacks,
                                 ridge)
        if "adapted_finetune" in attacks:
            rows += _finetune_rows(d, outputs, tunable, split, data, weights, finetune, progress)
        if "reversal" in attacks:
            rows += _reversal_rows(d, outputs, recognizers, split, data, weights, reversal, progress)
    return rows


def adapted_attack_records(deidentifiers: Sequence, recognizers: Sequence, split: AttackSplit | None = None,
                           ridge: float | None = None, crop_size: int = 224) -> list[dict]:
    """The plain and the ``adapted_linear`` attacker's records (:func:`attack_records`)."""
    return attack_records(deidentifiers, recognizers, split, ("adapted_linear",), ridge=ridge, crop_size=crop_size)


def reversal_attack_records(deidentifiers: Sequence, recognizers: Sequence, split: AttackSplit | None = None,
                            config: ReversalConfig | None = None, crop_size: int = 224,
                            progress: bool = True) -> list[dict]:
    """The ``reversal`` attacker's records only (:func:`attack_records`): probes de-identified, then reversed,
    against a gallery of originals."""
    return attack_records(deidentifiers, recognizers, split, ("reversal",), plain=False, reversal=config,
                          crop_size=crop_size, progress=progress)


def attack_table(records: list[dict]) -> pd.DataFrame:
    """Every attacker side by side: one row per de-identifier and recogniser, columns ``rank1_<attack>`` and
    ``median_true_rank_<attack>`` (older records' ``adapted`` read as ``adapted_linear``)."""
    df = pd.DataFrame([{**r, "attack": attack_name(r["attack"])} for r in records if r.get("kind") == "attack"])
    wide = df.pivot_table(index=["deidentifier", "recognizer"], columns="attack",
                          values=["rank1", "median_true_rank"], aggfunc="first")
    order = {a: i for i, a in enumerate(("none", *ATTACKS))}
    wide = wide[sorted(wide.columns, key=lambda c: (c[0] != "rank1", order.get(c[1], len(order))))]
    wide.columns = [f"{v}_{a}" for v, a in wide.columns]
    return wide.reset_index()


def adapted_frontier(records: list[dict], table: pd.DataFrame, families: dict | None = None) -> pd.DataFrame:
    """The naive families under attack, for the frontier figure: for every attack record of a naive family's
    member, its SSIM (from ``table``, a frontier table with ``deidentifier``, ``recognizer``, ``ssim``) and its
    Rank-1 under that attacker. Columns: family, deidentifier, recognizer, attack, ssim, rank1; sorted by SSIM
    within each (family, recognizer, attack), so that each group draws as one line (the *adapted frontier*: what
    blur or pixelation leaves to an attacker who has learnt it)."""
    from deidkit.eval.naive import family_of

    ssim = {(d, r): s for d, r, s in zip(table["deidentifier"], table["recognizer"], table["ssim"])}
    rows = []
    for rec in records:
        if rec.get("kind") != "attack":
            continue
        fam = family_of(rec["deidentifier"], families)
        key = (rec["deidentifier"], rec["recognizer"])
        if fam is None or key not in ssim:
            continue
        rows.append({"family": fam, "deidentifier": key[0], "recognizer": key[1],
                     "attack": attack_name(rec["attack"]), "ssim": float(ssim[key]), "rank1": float(rec["rank1"])})
    cols = ["family", "deidentifier", "recognizer", "attack", "ssim", "rank1"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["family", "recognizer", "attack", "ssim"], ascending=[True, True, True, False],
                           ignore_index=True)


__all__ = ["ATTACKS", "ATTACK_ALIASES", "ATTACK_SPLIT", "DEFAULT_ATTACKS", "AdaptedHead", "AttackData", "AttackSplit",
           "ReversalConfig", "adapted_attack_records", "adapted_frontier", "attack_name", "attack_records",
           "attack_split", "attack_table", "choose_ridge", "choose_ridge_heldout", "fit_adapted_head",
           "heldout_gallery", "heldout_rank1", "reversal_attack_records", "reverse", "train_reversal"]
