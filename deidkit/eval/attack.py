"""Privacy against an adaptive attacker: a recogniser that has learnt the de-identifier.

The kit is public, so an attacker can de-identify photos of people they know and learn to see through the change.
The *adapted* attacker here keeps an off-the-shelf recogniser frozen and learns a small head on its embedding: a
linear map (least squares regularised towards the identity map, closed form) from the embedding of a de-identified
face to the embedding of the same face's original, fitted on training-pool identities (never the test protocol's),
its regularisation chosen on a held-out part of those identities. At test time the attacker maps
each de-identified probe with that head and searches a gallery of originals, as the plain (``none``) attacker does
without it. A de-identifier whose change is a fixed, learnable distortion of the embedding (blur is the textbook
case) gives identity back to such an attacker; one that replaces the identity does not.

The *reversal* attacker learns to undo the de-identifier in the image: a small residual U-Net (the kit's FaDeNet
network) trained with an L1 loss to map de-identified training-pool faces back to their originals, then applied to
the de-identified probes before an off-the-shelf recogniser. Its run is cached and resumable like every training run
of the kit (``cache_dir()/runs/reversal-<de-identifier>-<hash>``).

Records: ``{"kind": "attack", "attack": "none" | "adapted" | "reversal", "deidentifier", "recognizer", "rank1",
"rank1_std", "median_true_rank", "gallery", "weights_sha256", "commit"}`` (ranks within the protocol's gallery of
originals; the de-identifier's weights and the kit's commit: :mod:`deidkit.eval.provenance`).

The attacker's training images never show an identity of the test protocols: :class:`AttackSplit` refuses them
(:func:`deidkit.data.lfw.assert_no_test_identities`), whoever chose them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deidkit.data.lfw import assert_no_test_identities
from deidkit.eval.embeddings import DeidentifiedBatch, embed_cached, embed_deidentified
from deidkit.eval.identification import evaluate_identification, l2_normalize
from deidkit.eval.provenance import provenance


@dataclass(frozen=True)
class AttackSplit:
    """Training images of the attacker (paths, identities) and the test protocol; the identities never overlap, and
    no training identity belongs to any test protocol (``lfw_57x8``, ``lfw_217x8``)."""

    train_paths: list[str]
    train_identities: list[str]
    protocol: pd.DataFrame
    protocol_name: str = ""

    def __post_init__(self) -> None:
        shared = set(self.train_identities) & set(self.protocol["identity"])
        if shared:
            raise ValueError(f"the attacker's training identities overlap the test protocol: {sorted(shared)[:5]}")
        # the attacker learns on these images: any test identity, not only the evaluated protocol's, is a leak
        assert_no_test_identities(self.train_identities, "the attacker's training images (deidkit.eval.attack)")


def attack_split(protocol: str = "lfw_57x8", train_manifest: str = "lfw_train_pool", max_images: int = 2000,
                 seed: int = 0, n_identities: int | None = None) -> AttackSplit:
    """Up to ``max_images`` training-pool images (a seeded sample) for the attacker, and the test protocol (its
    first ``n_identities`` identities only, for quick checks)."""
    from deidkit.data.lfw import load_manifest

    test = load_manifest(protocol)
    if n_identities is not None:
        keep = sorted(test["identity"].unique())[:n_identities]
        test = test[test["identity"].isin(keep)].reset_index(drop=True)
    pool = load_manifest(train_manifest)
    pool = pool[~pool["identity"].isin(set(test["identity"]))]
    if max_images < len(pool):
        pool = pool.sample(n=max_images, random_state=seed).sort_values("path")
    return AttackSplit(pool["path"].tolist(), pool["identity"].tolist(), test, protocol)


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
    identity)."""
    ids = np.asarray(identities)
    uniq = np.unique(ids)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(uniq, size=max(2, int(len(uniq) * holdout)), replace=False))
    test = np.array([i in held for i in ids])
    # gallery: the first original of each held-out identity; probes: the other images of those identities
    first = {}
    for k in np.flatnonzero(test):
        first.setdefault(ids[k], k)
    gal = np.array(sorted(first.values()))
    probes = np.array([k for k in np.flatnonzero(test) if k not in set(gal)])
    if len(probes) == 0:
        return float(ridges[len(ridges) // 2])
    g = l2_normalize(original[gal])
    best, best_acc = float(ridges[0]), -1.0
    for r in ridges:
        head = fit_adapted_head(deidentified[~test], original[~test], r)
        sims = head(deidentified[probes]) @ g.T
        acc = float((ids[gal][sims.argmax(1)] == ids[probes]).mean())
        if acc > best_acc:
            best, best_acc = float(r), acc
    return best


def _summary(protocol: pd.DataFrame, gallery: np.ndarray, probes: np.ndarray) -> dict[str, float]:
    res = evaluate_identification(protocol, gallery, probes)
    s = res.summary()
    return {"rank1": s["rank1_mean"], "rank1_std": s["rank1_std"],
            "median_true_rank": float(np.median(np.concatenate(res.ranks)))}


def adapted_attack_records(deidentifiers: Sequence, recognizers: Sequence, split: AttackSplit | None = None,
                           ridge: float | None = None, crop_size: int = 224) -> list[dict]:
    """``attack`` records of every de-identifier against every recogniser, plain and adapted, on the split's test
    protocol (gallery: originals). ``ridge`` None: the attacker picks it on its own training identities
    (:func:`choose_ridge`). Embeddings go through the kit's content-addressed cache."""
    from deidkit.data.lfw import aligned_crops

    split = split or attack_split()
    train = aligned_crops(split.train_paths, size=crop_size)
    test = aligned_crops(split.protocol["path"].tolist(), size=crop_size)
    rows = []
    for d in deidentifiers:
        # the outputs' embeddings come from the cache when this de-identifier has seen these crops before
        train_out, test_out = DeidentifiedBatch(d, train), DeidentifiedBatch(d, test)
        weights = provenance(d)
        for r in recognizers:
            gallery = embed_cached(r, test)
            probes = embed_deidentified(r, test_out)
            e_out, e_orig = embed_deidentified(r, train_out), embed_cached(r, train)
            lam = choose_ridge(e_out, e_orig, split.train_identities) if ridge is None else ridge
            head = fit_adapted_head(e_out, e_orig, lam)
            for attack, emb in (("none", probes), ("adapted", head(probes))):
                rows.append({"kind": "attack", "attack": attack, "deidentifier": d.name, "recognizer": r.name,
                             **_summary(split.protocol, gallery, emb), "gallery": "protocol",
                             "protocol": split.protocol_name, "train_images": len(train), "ridge": lam, **weights})
    return rows


def attack_table(records: list[dict]) -> pd.DataFrame:
    """Plain and adapted attacker side by side: one row per de-identifier and recogniser."""
    df = pd.DataFrame([r for r in records if r.get("kind") == "attack"])
    wide = df.pivot_table(index=["deidentifier", "recognizer"], columns="attack",
                          values=["rank1", "median_true_rank"], aggfunc="first")
    wide.columns = [f"{v}_{a}" for v, a in wide.columns]
    return wide.reset_index()


@dataclass(frozen=True)
class ReversalConfig:
    """The reversal network and its training: ``quick`` is a CPU recipe of minutes per de-identifier; ``paper``
    trains the full-size U-Net at 224 pixels (a GPU job)."""

    image_size: int = 64
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
                   run_dir=None, progress: bool = True):
    """Train (or resume, or load when finished) the U-Net that maps ``deidentifier``'s outputs back to the
    originals (``train_crops``, canonical crops of training-pool identities). Returns the U-Net in eval mode."""
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
    outputs = resize_crops(deidentifier.deidentify(train_crops), size)
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


def reversal_attack_records(deidentifiers: Sequence, recognizers: Sequence, split: AttackSplit | None = None,
                            config: ReversalConfig | None = None, crop_size: int = 224,
                            progress: bool = True) -> list[dict]:
    """``attack`` records of the reversal attacker (``attack: "reversal"``) for every de-identifier and
    recogniser: probes de-identified, then reversed, against a gallery of originals."""
    from deidkit.data.lfw import aligned_crops

    config = config or ReversalConfig()
    split = split or attack_split()
    train = aligned_crops(split.train_paths, size=crop_size)
    test = aligned_crops(split.protocol["path"].tolist(), size=crop_size)
    rows = []
    for d in deidentifiers:
        unet = train_reversal(d, train, config, progress=progress)
        reversed_probes = reverse(unet, d.deidentify(test), config.image_size)
        weights = provenance(d)
        for r in recognizers:
            rows.append({"kind": "attack", "attack": "reversal", "deidentifier": d.name, "recognizer": r.name,
                         **_summary(split.protocol, embed_cached(r, test), embed_cached(r, reversed_probes)),
                         "gallery": "protocol", "protocol": split.protocol_name, "train_images": len(train),
                         "reversal_size": config.image_size, "reversal_epochs": config.epochs, **weights})
    return rows


__all__ = ["AdaptedHead", "AttackSplit", "ReversalConfig", "adapted_attack_records", "attack_split",
           "attack_table", "choose_ridge", "fit_adapted_head", "reversal_attack_records", "reverse",
           "train_reversal"]
