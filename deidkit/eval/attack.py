"""Privacy against an adaptive attacker: a recogniser that has learnt the de-identifier.

The kit is public, so an attacker can de-identify photos of people they know and learn to see through the change.
Three attackers, each trained per de-identifier on the attacker split (``lfw_attack_split``, below):

- ``adapted_linear``: an off-the-shelf recogniser kept frozen, with a linear head on its embedding (least squares
  regularised towards the identity map, closed form) from the embedding of a de-identified face to the embedding of
  the same face's original; its regularisation chosen on the split's held-out identities. A de-identifier whose
  change is a fixed, learnable distortion of the embedding (blur is the textbook case) gives identity back to it.
- ``adapted_finetune``: the recogniser's last blocks fine-tuned so that a de-identified face lands on its original's
  embedding (:mod:`deidkit.eval.attack_finetune`; torch recognisers only: dlib's network cannot be fine-tuned).
- ``reversal``: a small residual U-Net (the kit's FaDeNet network) trained with an L1 loss to map de-identified faces
  back to their originals at the judges' input size (112 pixels), applied to the de-identified probes before an
  off-the-shelf recogniser.

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
from deidkit.eval.embeddings import DeidentifiedBatch, embed_cached, embed_deidentified
from deidkit.eval.identification import evaluate_identification, heldout_gallery, heldout_rank1, l2_normalize
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


# ------------------------------------------------------------------------------------------- the linear head


@dataclass(frozen=True)
class AdaptedHead:
    """``x -> normalise(x @ weight + bias)``: de-identified embeddings mapped towards the originals'."""

    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        return l2_normalize(l2_normalize(emb) @ self.weight + self.bias)


def fit_adapted_head(deidentified: np.ndarray, original: np.ndarray, ridge: float = 0.1) -> AdaptedHead:
    """Least squares from (normalised) de-identified to original embeddings, rows paired by image, regularised
    towards the identity map (``ridge`` times the number of pairs): with little data the head stays the plain
    recogniser and only corrects what the pairs show consistently (a ridge towards zero would shrink every
    embedding to the mean face and lose the identity it tries to recover)."""
    x, y = l2_normalize(deidentified, np.float64), l2_normalize(original, np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{len(x)} de-identified but {len(y)} original embeddings")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"embedding sizes differ: {x.shape[1]} and {y.shape[1]}")
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    reg = ridge * len(x) * np.eye(x.shape[1])
    w = np.linalg.solve(xc.T @ xc + reg, xc.T @ yc + reg)
    return AdaptedHead(w.astype(np.float32), (ym - xm @ w).astype(np.float32))


def choose_ridge(deidentified: np.ndarray, original: np.ndarray, identities: Sequence[str],
                 ridges: Sequence[float] = (0.01, 0.1, 1.0, 10.0), holdout: float = 0.25, seed: int = 0) -> float:
    """The attacker's own model selection, on its training identities only: fit on ``1 - holdout`` of them and
    keep the ridge whose head best identifies the held-out ones (de-identified probes against one original per
    identity). For a split without held-out identities of its own (:func:`choose_ridge_heldout` otherwise)."""
    ids = np.asarray(identities)
    uniq = np.unique(ids)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(uniq, size=max(2, int(len(uniq) * holdout)), replace=False))
    test = np.array([i in held for i in ids])
    gal, probes = heldout_gallery(ids[test].tolist())
    if len(probes) == 0:
        return float(ridges[len(ridges) // 2])
    return choose_ridge_heldout(deidentified[~test], original[~test], deidentified[test], original[test],
                                ids[test].tolist(), ridges)


def choose_ridge_heldout(train_deidentified: np.ndarray, train_original: np.ndarray,
                         heldout_deidentified: np.ndarray, heldout_original: np.ndarray,
                         heldout_identities: Sequence[str],
                         ridges: Sequence[float] = (0.01, 0.1, 1.0, 10.0)) -> float:
    """The ridge whose head, fitted on the training pairs, best identifies the held-out identities (their
    de-identified later images against their first original; :func:`heldout_gallery`); the middle ridge when no
    held-out identity has two images."""
    ids = np.asarray(heldout_identities)
    gal, probes = heldout_gallery(ids.tolist())
    if len(probes) == 0:
        return float(ridges[len(ridges) // 2])
    best, best_acc = float(ridges[0]), -1.0
    for r in ridges:
        head = fit_adapted_head(train_deidentified, train_original, r)
        acc = heldout_rank1(head(heldout_deidentified[probes]), heldout_original[gal], ids[probes], ids[gal])
        if acc > best_acc:
            best, best_acc = float(r), acc
    return best


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


# ------------------------------------------------------------------------------------------- the reversal U-Net


@dataclass(frozen=True)
class ReversalConfig:
    """The reversal network and its training: ``image_size`` is the side of the canonical crops it works on (112:
    the judges' input size); ``quick`` is a CPU recipe; ``paper`` trains the full-size U-Net at 224 pixels (a GPU
    job); ``tiny`` is for tests."""

    image_size: int = 112
    unet_width: int = 16
    unet_depth: int = 3
    epochs: int = 4
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 0

    @classmethod
    def profile(cls, name: str = "quick", **overrides: object) -> ReversalConfig:
        presets = {"tiny": dict(image_size=64, unet_width=4, unet_depth=2, epochs=1, batch_size=8),
                   "quick": {},
                   "paper": dict(image_size=224, unet_width=64, unet_depth=4, epochs=20, batch_size=32, lr=1e-4)}
        if name not in presets:
            raise ValueError(f"unknown reversal profile {name!r}; choose from {sorted(presets)}")
        return cls(**{**presets[name], **overrides})


def train_reversal(deidentifier, train_crops: np.ndarray, config: ReversalConfig | None = None,
                   run_dir=None, progress: bool = True, outputs: np.ndarray | None = None):
    """Train (or resume, or load when finished) the U-Net that maps ``deidentifier``'s outputs back to the
    originals (``train_crops``, canonical crops of the attacker's training identities; ``outputs``: the
    de-identifier's outputs on them when already computed). Returns the U-Net in eval mode."""
    import hashlib
    import json
    from pathlib import Path

    import torch

    from deidkit.checkpoints import runs_dir
    from deidkit.data.images import resize_crops
    from deidkit.models.unet import UNet
    from deidkit.train.loop import TrainingRun

    config = config or ReversalConfig()
    size = config.image_size
    originals = resize_crops(train_crops, size)
    outputs = resize_crops(deidentifier.deidentify(train_crops) if outputs is None else outputs, size)
    if run_dir is None:  # one run per de-identifier, configuration and training data
        digest = hashlib.sha256(json.dumps(config.__dict__, sort_keys=True).encode() + originals.tobytes()
                                + outputs.tobytes()).hexdigest()[:12]
        run_dir = runs_dir() / f"reversal-{deidentifier.name}-{digest}"
    torch.manual_seed(config.seed)
    unet = UNet(width=config.unet_width, depth=config.unet_depth, residual=True, out_activation="tanh")
    opt = torch.optim.Adam(unet.parameters(), lr=config.lr)
    run = TrainingRun(Path(run_dir), {"unet": unet}, {"adam": opt}, seed=config.seed, config=config.__dict__,
                      show_progress=progress)
    # the pair (de-identified input, original target) travels as one 6-channel image through the batcher
    pairs = np.concatenate([outputs, originals], axis=3)

    def make_loader(epoch: int):
        return _PairBatches(pairs, config.batch_size, config.seed, epoch)

    def step(batch, epoch: int, global_step: int) -> dict[str, float]:
        x, y = batch
        unet.train()
        loss = (unet(x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"l1": float(loss.detach())}

    run.fit(make_loader, step, config.epochs, desc=f"reversal of {deidentifier.name}")
    return unet.eval()


class _PairBatches:
    """Shuffled (input, target) batches in [-1, 1] from (N, S, S, 6) uint8 pairs; the order depends on (seed, epoch)
    and each pair is mirrored at random (the same way on both halves)."""

    def __init__(self, pairs: np.ndarray, batch_size: int, seed: int, epoch: int) -> None:
        import torch

        self.pairs = torch.from_numpy(np.ascontiguousarray(pairs)).permute(0, 3, 1, 2)
        self.batch_size = batch_size
        self.order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))

    def __len__(self) -> int:
        return max(1, len(self.pairs) // self.batch_size)

    def __iter__(self):
        import torch

        from deidkit.data.images import to_model_range

        for b in range(len(self)):
            x = self.pairs[self.order[b * self.batch_size:(b + 1) * self.batch_size]]
            flip = torch.rand(len(x)) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            x = to_model_range(x)
            yield x[:, :3], x[:, 3:]


def reverse(unet, deidentified: np.ndarray, size: int, batch_size: int = 64) -> np.ndarray:
    """The reversal network applied to de-identified canonical crops at its training ``size``, resized back."""
    import torch

    from deidkit.data.images import from_model_range, resize_crops, to_model_range

    full = deidentified.shape[1]
    first = next(unet.parameters())
    out = []
    with torch.no_grad():
        for s in range(0, len(deidentified), batch_size):
            small = resize_crops(deidentified[s:s + batch_size], size)
            x = to_model_range(torch.from_numpy(small).permute(0, 3, 1, 2)).to(first.device)
            y = from_model_range(unet(x)).permute(0, 2, 3, 1).cpu().numpy()
            out.append(resize_crops(y, full))
    return np.concatenate(out)


__all__ = ["ATTACKS", "ATTACK_ALIASES", "ATTACK_SPLIT", "DEFAULT_ATTACKS", "AdaptedHead", "AttackData", "AttackSplit",
           "ReversalConfig", "adapted_attack_records", "adapted_frontier", "attack_name", "attack_records",
           "attack_split", "attack_table", "choose_ridge", "choose_ridge_heldout", "fit_adapted_head",
           "heldout_gallery", "heldout_rank1", "reversal_attack_records", "reverse", "train_reversal"]
