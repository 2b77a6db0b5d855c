"""Training of the live de-identification network (Gafni, Wolf, Taigman, ICCV 2019); the trained network as a
de-identifier is :mod:`deidkit.deidentifiers.live`.

Data: the canonical crops of every image of the ``lfw_train_pool`` manifest (labels unused). The network sees the
central ``crop_fraction`` of a canonical crop, resized to ``size`` (the canonical crop is loose, with background;
0.8 keeps forehead and chin). Each batch: a random horizontal flip (identity-preserving), then a random scale,
rotation and elastic distortion of the *input* only; the undistorted image is the reconstruction target and the
identity target (its recogniser representation conditions the decoder and anchors the perceptual terms).

The recogniser for conditioning and perceptual features is the frozen MobileFaceNet trained on MS1M
(``mobilefacenet_ms1m``): the only pretrained recogniser of the kit with a differentiable torch path. The paper
used a ResNet-50 trained on VGGFace2, which is not available offline. The kit's final identity evaluation uses
dlib and the CASIA MobileFaceNet, never this one, so the attack is not evaluated by the network it was trained
against.

Lambda: the paper raises the weight of the repelling term in four steps from 1e-7 to 2e-6 (1e-7, 5e-7, 1e-6,
2e-6). Those values weigh an unnormalised ResNet-50 representation (2048-d) and do not transfer: here the
repelling term is the Euclidean distance between L2-normalised 128-d embeddings (in [0, 2]), the attracting
terms are mean absolute differences of MobileFaceNet activations. We keep the paper's schedule *shape* (ratios
1 : 5 : 10 : 20 over four equal parts of training) and set its top value ``lambda_max`` on our scale; the log
records every term, so the balance actually reached can be read off (notebook 03).

Lambda's top value was set with :func:`lambda_break_even` (notebook 03, section 1): between photos of the same
person and photos of different people the attracting terms grow by ~0.3 and the representation distance by ~0.6,
so a change of identity pays for itself inside the perceptual group from lambda ~0.5; ``lambda_max = 1.0`` is
twice that, reached in the last stage, and the first stage (0.05) is almost pure reconstruction.

Warm-up (``warmup_epochs``, a CPU economy, 0 in the ``paper`` profile): the first epochs train without the
perceptual term, so no recogniser pass is needed (the conditioning vectors of the training images are computed
once and cached); the four lambda stages follow with the full loss. On a CPU the recogniser's forward and
backward passes cost ~5 times the generator's, so this buys the generator several times more steps to learn to
reconstruct before identity is pushed.

Profiles: ``tiny`` (tests, seconds), ``quick`` (CPU, ~20 minutes on 2 free cores), ``standard`` (the shipped
model: CPU, about 1.5 hours on one core, lambda up to 8), ``paper`` (GPU; the paper's 128 input, widths, batch 32,
no warm-up).

The training data (which images, their crops, the distortions, the batches, the warm-up's target representations)
are :mod:`deidkit.train.live_data`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from deidkit.configs import LAMBDA_SHAPE, PAPER_LAMBDA_STEPS, PROFILES, LiveConfig
from deidkit.deidentifiers.live import (
    STAGES_DIR,
    LiveDeidentifier,
    build_features,
    build_generator,
    center_grid,
    default_run_dir,
    load_live_deidentifier,
    network_to_arcface,
    network_to_canonical,
    to_tensor,
    to_uint8,
)
from deidkit.deidentifiers.live_names import live_deidentifier_by_name
from deidkit.losses.live import (
    blend,
    generator_loss,
    landmark_loss,
    lsgan_discriminator_loss,
    mixup,
    perceptual_terms,
    sample_beta,
)
from deidkit.models.live import LiveDiscriminator, LiveGenerator, RecognizerFeatures
from deidkit.train.adversary import OnlineAdversary
from deidkit.train.distributed import current as current_shard
from deidkit.train.distributed import device_for, wrap

# The training data moved to deidkit.train.live_data; their names stay importable from here.
from deidkit.train.live_data import (
    IndexBatches,
    distort_grid,
    images_to_float,
    load_training_images,
    make_batch,
    target_representations,
    training_paths,
)
from deidkit.train.loop import TrainingRun, seed_everything
from deidkit.train.speedups import autocast, prepare

_Batches = IndexBatches  # the name deidkit.train.detail draws its batches with


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_discriminator(cfg: LiveConfig) -> LiveDiscriminator:
    return LiveDiscriminator(channels=cfg.disc_channels)


def lambda_break_even(cfg: LiveConfig, features: RecognizerFeatures | None = None, n_pairs: int = 48,
                      seed: int = 0) -> dict[str, float]:
    """Calibrate lambda to the recogniser: the perceptual cost and the representation gain of a change of identity.

    On ``n_pairs`` identities of the training manifest with two or more images, compares pairs of photos of the
    *same* person with pairs of *different* people: ``d_attract`` is how much the attracting terms grow
    (attract_input + attract_target) and ``d_repel`` how much the representation distance grows. Their ratio
    ``break_even`` is the lambda at which a change of identity pays for itself inside the perceptual group; the
    paper's lambda does not transfer to another recogniser, this ratio does.
    """
    from deidkit.data.lfw import aligned_crops, assert_no_test_identities, load_manifest

    features = features or build_features(cfg)
    m = load_manifest(cfg.manifest)
    assert_no_test_identities(m["identity"], f"lambda calibration manifest {cfg.manifest}")
    counts = m.groupby("identity")["path"].transform("size")
    multi = m[counts >= 2].sort_values("path")
    idents = sorted(multi["identity"].unique())
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(idents, size=min(n_pairs, len(idents)), replace=False).tolist())
    first = [multi[multi["identity"] == i]["path"].iloc[0] for i in pick]
    second = [multi[multi["identity"] == i]["path"].iloc[1] for i in pick]

    def net_crops(paths: list[str]) -> torch.Tensor:
        c = cfg.canonical_size
        crops = np.stack([cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA) for x in aligned_crops(paths)])
        x = to_tensor(crops)
        return F.grid_sample(x, center_grid(len(x), cfg.size, cfg.crop_fraction), align_corners=False)

    with torch.no_grad():
        fa, fb = features(net_crops(first)), features(net_crops(second))
        fc = {k: v.roll(1, 0) for k, v in fb.items()}  # the second photo of another person

    def terms(f1: dict, f2: dict) -> tuple[float, float]:
        att = sum(float((f1[k] - f2[k]).abs().mean()) for k in (*cfg.input_layers, *cfg.target_layers))
        return att, float((f1["embedding"] - f2["embedding"]).norm(dim=1).mean())

    (att_same, d_same), (att_diff, d_diff) = terms(fa, fb), terms(fa, fc)
    d_attract, d_repel = att_diff - att_same, d_diff - d_same
    return {"attract_same": att_same, "attract_diff": att_diff, "repr_dist_same": d_same,
            "repr_dist_diff": d_diff, "d_attract": d_attract, "d_repel": d_repel,
            "break_even": d_attract / d_repel if d_repel > 0 else float("nan"), "pairs": float(len(pick))}


# ----------------------------------------------------------------------------------------------- training


class LiveTrainer:
    """Generator, discriminator, frozen recogniser and their optimisers; :meth:`step` trains on one batch."""

    def __init__(self, cfg: LiveConfig, features: RecognizerFeatures | None = None,
                 device: torch.device | str | None = None) -> None:
        self.cfg = cfg
        self.shard = current_shard()  # under torchrun: this process's share of each global batch
        self.shard.check_batch(cfg.batch_size)
        self.device = device_for(resolve_device(cfg.device) if device is None else torch.device(device))
        self.features = (features or build_features(cfg)).to(self.device)
        with torch.no_grad():
            dim = self.features(torch.zeros(1, 3, cfg.size, cfg.size, device=self.device))["embedding"].shape[1]
        self.G = build_generator(cfg, cond_dim=dim).to(self.device)
        self.D = build_discriminator(cfg).to(self.device)
        # DistributedDataParallel when several processes train (the plain modules are checkpointed); the paper
        # profile's speed options: channels-last, torch.compile (the generator), bf16 autocast
        self.G_ddp = prepare(wrap(prepare(self.G, cfg.channels_last)), compile=cfg.compile)
        self.D_ddp = wrap(prepare(self.D, cfg.channels_last))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.weights = cfg.loss_weights()
        # the landmark term's frozen regressor (only when that term is on: the paper has no such term)
        self.landmarks = None
        if self.weights.landmarks > 0:
            from deidkit.recognizers import load_five_landmarks

            self.landmarks = load_five_landmarks().to(self.device)
        # the online adaptive attacker (its term is on with adversary_weight > 0)
        self.adversary = OnlineAdversary(cfg.adversary_bank, cfg.adversary_ridge, cfg.adversary_margin)
        self.anchor: LiveGenerator | None = None  # the frozen initial generator of anchor_weight (set_anchor)
        self.total_steps = 1
        self.warmup_steps = 0

    def set_anchor(self, state: dict[str, torch.Tensor]) -> None:
        """Freeze a copy of the generator with ``state`` (the fine-tuning start) for the anchor term."""
        self.anchor = build_generator(self.cfg, cond_dim=self.G.cond_dim).to(self.device)
        self.anchor.load_state_dict(state)
        self.anchor.eval().requires_grad_(False)

    def step(self, x: torch.Tensor, x_in: torch.Tensor, global_step: int,
             target_repr: torch.Tensor | None = None) -> dict[str, float]:
        with autocast(self.cfg.amp, self.device):
            return self._step(x, x_in, global_step, target_repr)

    def _step(self, x: torch.Tensor, x_in: torch.Tensor, global_step: int,
              target_repr: torch.Tensor | None = None) -> dict[str, float]:
        """One discriminator and one generator update on targets ``x`` and distorted inputs ``x_in``.

        During warm-up (``global_step < warmup_steps``) the perceptual term is off and the recogniser is not run:
        the conditioning comes from ``target_repr`` (the precomputed representations of ``x``)."""
        cfg = self.cfg
        self.G.train()
        self.D.train()
        n = x.shape[0]
        stage, lam = cfg.lambda_at(global_step, self.total_steps, self.warmup_steps)
        warm = stage < 0
        if warm:
            if target_repr is None:
                raise ValueError("warm-up steps need the precomputed target representations")
            fx, t = None, target_repr.to(self.device)
        else:
            with torch.no_grad():
                fx = self.features(x)  # the undistorted image: input anchor and identity target
            t = fx["embedding"]
        raw, mask = self.G_ddp(x_in, t)
        masked = blend(raw, mask, x_in)

        # Discriminator: LSGAN with mixup; a mix's label is its share of real pixels. The coefficients are drawn
        # for the global batch, each process keeping its share (see train.distributed).
        beta_d = self.shard.take(sample_beta(n * self.shard.world, device=self.device))
        self.D.requires_grad_(True)
        d_loss = lsgan_discriminator_loss(self.D_ddp(mixup(x, masked.detach(), beta_d)), beta_d)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        # Generator.
        self.D.requires_grad_(False)
        beta_g = self.shard.take(sample_beta(n * self.shard.world, device=self.device))
        d_mixed = self.D(mixup(x, masked, beta_g))  # the frozen discriminator: no gradient synchronisation
        if warm:
            g_loss, terms = generator_loss(x, x_in, raw, mask, d_mixed, None, lam, self.weights)
            # same log columns in every phase (the loop refuses changing keys); 0 = not computed
            terms.update({"p_attract_input": 0.0, "p_attract_target": 0.0, "p_repel": 0.0})
            cos = torch.zeros(())
        else:
            fo = self.features(masked)
            pterms = perceptual_terms(fo, fx, fx, cfg.input_layers, cfg.target_layers, repel=cfg.repel)
            g_loss, terms = generator_loss(x, x_in, raw, mask, d_mixed, pterms, lam, self.weights)
            with torch.no_grad():
                cos = (fo["embedding"] * t).sum(1).mean()
        terms["landmarks"] = 0.0  # same log columns with the term off
        extra_terms = {}
        if cfg.adversary_weight > 0 and not warm:
            adv, read_back = self.adversary(fo["embedding"], fx["embedding"])
            g_loss = g_loss + cfg.adversary_weight * adv
            extra_terms = {"adversary_cos": float(read_back.mean())}
        if self.anchor is not None and cfg.anchor_weight:
            with torch.no_grad():
                anchored = blend(*self.anchor(x_in, t), x_in)
            drift = (masked - anchored).abs().mean()
            g_loss = g_loss + cfg.anchor_weight * drift
            extra_terms["anchor_l1"] = float(drift.detach())
        if self.landmarks is not None:
            with torch.no_grad():
                target_points = self.landmarks(x)
            lmk = landmark_loss(self.landmarks(masked), target_points)
            g_loss = g_loss + self.weights.landmarks * lmk
            terms["landmarks"] = float(lmk.detach())
        terms["g_total"] = float(g_loss.detach())
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        terms = {k: terms[k] for k in ("recon", "edge", "mask_l1", "mask_tv", "g_adv", "p_attract_input",
                                       "p_attract_target", "p_repel", "landmarks", "g_total")}
        if cfg.adversary_weight > 0:  # its column in every phase (0 = not computed during warm-up)
            terms["adversary_cos"] = extra_terms.get("adversary_cos", 0.0)
        if cfg.anchor_weight:
            terms["anchor_l1"] = extra_terms.get("anchor_l1", 0.0)
        return {**terms, "d_loss": float(d_loss.detach()), "lambda": lam, "stage": float(stage),
                "cos_to_target": float(cos), "mask_mean": float(mask.detach().mean())}


def train_live(cfg: LiveConfig, run_dir: str | os.PathLike | None = None, images: np.ndarray | None = None,
               features: RecognizerFeatures | None = None, show_progress: bool = True,
               until_epoch: int | None = None, restart: bool = False) -> tuple[LiveTrainer, Any]:
    """Train (or resume, or just load when finished) the live network; returns (trainer, per-step log).

    The first ``cfg.warmup_epochs`` epochs train without the perceptual term (reconstruction, edges, mask and GAN
    only, conditioned on precomputed target representations, cached in ``run_dir/targets.pt``); the remaining
    epochs run the full loss with lambda raised in four equal stages. At the end of each stage the generator is
    saved to ``run_dir/stages/stage<k>.pt`` (for the lambda figure).

    ``until_epoch`` stops after that many epochs (the run resumes from there on the next call): long runs can be
    done in short sessions without changing the configuration or the lambda schedule. ``restart`` deletes the run
    folder first (for throw-away runs such as the ``tiny`` profile's). ``images``: canonical crops (N, C, C, 3)
    uint8 replacing the training manifest (e.g. in tests)."""
    cfg.validate()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg.profile_name)
    if restart and (run_dir / "config.json").is_file():
        import shutil

        shutil.rmtree(run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)  # identical initial generator and discriminator weights for a given seed
    trainer = LiveTrainer(cfg, features)
    if cfg.init_from:
        # a resumed run's checkpoint overwrites this in fit(); the anchor stays the start
        start = init_state(cfg.init_from, run_dir)
        trainer.G.load_state_dict(start)
        if cfg.anchor_weight:
            trainer.set_anchor(start)
    shard = trainer.shard
    imgs = load_training_images(cfg) if images is None else np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or imgs.dtype != np.uint8:
        raise ValueError(f"training images must be uint8 (N, C, C, 3), got {imgs.dtype} {imgs.shape}")
    if imgs.shape[1] != cfg.canonical_size:
        imgs = np.stack([cv2.resize(x, (cfg.canonical_size,) * 2, interpolation=cv2.INTER_AREA) for x in imgs])
    data = torch.from_numpy(np.ascontiguousarray(imgs))  # uint8 on the CPU; batches are converted and moved
    steps_per_epoch = len(IndexBatches(len(data), cfg.batch_size, cfg.seed, 0, cfg.epoch_steps))
    trainer.total_steps = steps_per_epoch * cfg.epochs
    trainer.warmup_steps = steps_per_epoch * cfg.warmup_epochs
    run_dir.mkdir(parents=True, exist_ok=True)
    targets = None
    if cfg.warmup_epochs > 0:
        tpath = run_dir / "targets.pt"
        if tpath.is_file():
            targets = torch.load(tpath, map_location="cpu", weights_only=True)
        if targets is None or targets.shape[0] != len(data):
            targets = target_representations(trainer.features, data, cfg, show_progress=show_progress)
            if shard.is_main:
                _save_atomic(targets, tpath)
    # the last step of each lambda stage (a very short run may end several stages on one step)
    boundaries: dict[int, list[int]] = {}
    full = trainer.total_steps - trainer.warmup_steps
    for k in range(4):
        boundaries.setdefault(trainer.warmup_steps + math.ceil((k + 1) * full / 4) - 1, []).append(k)
    (run_dir / STAGES_DIR).mkdir(parents=True, exist_ok=True)

    run = TrainingRun(run_dir, {"generator": trainer.G, "discriminator": trainer.D},
                      {"generator": trainer.opt_g, "discriminator": trainer.opt_d}, seed=cfg.seed,
                      config=dataclasses.asdict(cfg), show_progress=show_progress)

    def step(idx: np.ndarray, epoch: int, global_step: int) -> dict[str, float]:
        index = torch.from_numpy(idx)
        # the global batch is made as in one process; each process trains on its share
        x, x_in, flip = make_batch(images_to_float(data[index]).to(trainer.device), cfg)
        t = None if targets is None else shard.take(targets[index, flip.long()])
        terms = trainer.step(shard.take(x), shard.take(x_in), global_step, t)
        for k in boundaries.get(global_step, []) if shard.is_main else []:
            _save_atomic({"state_dict": trainer.G.state_dict(), "stage": k,
                          "lambda": cfg.lambda_max * cfg.lambda_shape[k], "global_step": global_step},
                         run_dir / STAGES_DIR / f"stage{k}.pt")
        return terms

    epochs = cfg.epochs if until_epoch is None else min(cfg.epochs, until_epoch)
    log = run.fit(lambda epoch: IndexBatches(len(data), cfg.batch_size, cfg.seed, epoch, cfg.epoch_steps), step,
                  epochs, desc=f"live-{cfg.profile_name}")
    return trainer, log


def init_state(init_from: str, run_dir: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The generator state ``init_from`` names (see :func:`deidkit.checkpoints.init_state`): ``pretrained:<name>``
    or a file holding ``{"state_dict": ...}`` (e.g. another run's ``stages/stage1.pt``)."""
    from deidkit.checkpoints import init_state as checkpoint_init_state

    return checkpoint_init_state(init_from, "state_dict", run_dir)


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# Inference and configuration live in deidkit.deidentifiers.live(_names) and deidkit.configs; their names stay importable
# from here for notebooks and scripts written against earlier versions.
__all__ = ["LAMBDA_SHAPE", "PAPER_LAMBDA_STEPS", "PROFILES", "STAGES_DIR", "IndexBatches", "LiveConfig",
           "LiveDeidentifier", "LiveTrainer", "build_discriminator", "build_features", "build_generator",
           "center_grid", "default_run_dir", "distort_grid", "images_to_float", "init_state",
           "lambda_break_even", "live_deidentifier_by_name", "load_live_deidentifier", "load_training_images",
           "make_batch", "network_to_arcface", "network_to_canonical", "resolve_device",
           "target_representations", "to_tensor", "to_uint8", "train_live", "training_paths"]
