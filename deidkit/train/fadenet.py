"""Training FaDeNet end to end (the trained network as a de-identifier: :mod:`deidkit.deidentifiers.fadenet`).

A U-Net ``f`` is trained against a frozen identity critic with ``L1 - lambda * L2`` (see
:mod:`deidkit.losses.fadenet`): stay close to the input image while making the critic misclassify the
identity. Profiles:

* ``tiny``: seconds, for tests and notebook smoke runs.
* ``quick``: CPU minutes (about 6 including the critic, single-threaded: critic 97 s, FaDeNet 257 s for 6 epochs
  of 1,518 images at 21.6 images/s): 64-pixel crops, a narrow 3-level residual U-Net with a tanh output, the
  MobileFaceNet-head critic, Adam lr 2e-3, batch 8, 6 epochs, lambda 0.03. After 6 epochs the held-out critic
  accuracy is 0.033 (original 0.972) and the unit-norm L1 term 0.031 (0.049 after the first epoch).
  Why not the paper's lambda 0.001 and lr 1e-5: they are tuned for 40 epochs on a GPU; at CPU scale the U-Net
  stays the identity. Measured (one run each, held-out critic accuracy after 1 epoch of 1518 images unless noted;
  original 0.97 at 64 px): lambda 0.001-0.1 with lr 1e-3 and a linear output: no change (accuracy 0.99,
  SSIM > 0.98); lambda 0.3, lr 3e-3, linear output: accuracy 0.08 but intensities blown up (the L1 term is
  scale-invariant), SSIM 0.41; with the tanh output, 3 epochs, lr 2e-3: lambda 0.3 saturates everything
  (SSIM 0.01), 0.1 -> accuracy 0.11 at SSIM 0.36, 0.05 -> 0.12 at SSIM 0.78, 0.03 -> 0.008 at SSIM 0.78
  (SSIM at 64 px; 0.83 on 224-pixel crops) with a texture like the paper's Fig. 4.
* ``standard`` (the shipped model, about an hour on one CPU core): see the comment at its preset for the recipe and
  the tries that led to it (each measured on held-out training-pool faces only).
* ``paper``: 224 pixels, the full 23-layer U-Net (width 64, depth 4, no residual), Inception-v3 critic, Adam
  lr 1e-5, batch 32, 40 epochs, lambda 0.001, linear output as in the paper (a GPU job; not run in this kit's
  CI: watch the loss curves for the scale loophole described in :mod:`deidkit.models.unet`).

Runs live in ``cache_dir()/runs/<run_name>`` like the critic's (``checkpoint.pt``, ``config.json``, ``log.csv``,
``epochs.csv``, ``metrics.json``).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from deidkit.checkpoints import init_state as checkpoint_init_state
from deidkit.checkpoints import read_json, runs_dir, write_json
from deidkit.configs import DEFAULT_FEATURE_LAYERS, DEFAULT_PUSH_LAYERS, CriticConfig, FaDeNetConfig
from deidkit.data.images import from_model_range, to_model_range
from deidkit.deidentifiers.fadenet import FaDeNetDeidentifier, build_unet, load_fadenet_deidentifier
from deidkit.losses.fadenet import (
    chroma_distance,
    detection_loss,
    embedding_similarity,
    fadenet_loss,
    output_collapse,
    ssim_index,
    unit_norm_distance,
)
from deidkit.models.critic import Critic, fold_batchnorm
from deidkit.models.unet import UNet
from deidkit.train.adversary import OnlineAdversary
from deidkit.train.augment import ArrayBatches, random_views
from deidkit.train.critic import (
    CriticRecognizer,
    IdentityData,
    load_critic,
    load_train_pool,
    peak_rss_mb,
    predict,
    resolve_device,
    train_critic,
)
from deidkit.train.distributed import current as current_shard
from deidkit.train.distributed import device_for, wrap
from deidkit.train.loop import (
    CHECKPOINT_NAME,
    TimeLimitReached,
    TrainingCollapsed,
    TrainingRun,
    collapsed_in_last_epoch,
    load_checkpoint,
)
from deidkit.train.speedups import WorkerBatches, autocast, prepare


def ensure_critic(config: CriticConfig, data: IdentityData | None = None, progress: bool = True
                  ) -> tuple[Critic, list[str], Path]:
    """The critic of ``config``: loaded if its run has finished, else trained (or resumed) first."""
    run_dir = runs_dir() / config.name
    if (run_dir / CHECKPOINT_NAME).is_file() and load_checkpoint(run_dir)["epoch"] >= config.epochs:
        critic, ids, _ = load_critic(run_dir)
        return critic, ids, run_dir
    res = train_critic(config, data=data, run_dir=run_dir, progress=progress)
    if res.metrics.get("stopped"):
        raise TimeLimitReached(f"{run_dir}: the critic stopped at the time limit (epoch {res.metrics['epoch']}); "
                               f"run again to continue it, then FaDeNet")
    return res.critic, res.identities, run_dir


@dataclass
class FaDeNetResult:
    run_dir: Path
    unet: UNet
    critic: Critic
    log: pd.DataFrame
    epochs: pd.DataFrame
    metrics: dict[str, Any]


#: how often one epoch may run again at half the learning rate after a collapse to the identity map
MAX_RECOVERIES = 3
RECOVERIES_NAME = "recoveries.json"
EPOCH_START_NAME = "checkpoint.epoch_start.pt"


def _epoch_start_saved(run_dir: Path, epoch: int) -> bool:
    """Keep a copy of the checkpoint that starts ``epoch`` (the end of the one before), to roll back to; True
    when there is one (an epoch resumed mid-way has its copy from the process that started it)."""
    ckpt, start = run_dir / CHECKPOINT_NAME, run_dir / EPOCH_START_NAME
    if ckpt.is_file():
        saved = load_checkpoint(run_dir)
        if int(saved["epoch"]) == epoch - 1 and not int(saved.get("epoch_step", 0)):
            shutil.copyfile(ckpt, start)
            return True
    return start.is_file() and int(torch.load(start, map_location="cpu", weights_only=True)["epoch"]) == epoch - 1


def _roll_back_epoch(run: TrainingRun, run_dir: Path, epoch: int, initial: dict[str, dict]) -> float:
    """Make the next ``run.fit`` train ``epoch`` again from its start at half the learning rate; returns that
    rate. Epoch 1 starts afresh (the modules' initial weights, empty optimiser states, the same seed)."""
    if epoch == 1:
        (run_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
        for name, module in run.modules.items():
            module.load_state_dict(initial[name])
        for opt in run.optimizers.values():
            opt.state.clear()
            for group in opt.param_groups:
                group["lr"] *= 0.5
        return float(run.optimizers["adam"].param_groups[0]["lr"])
    start = torch.load(run_dir / EPOCH_START_NAME, map_location="cpu", weights_only=True)
    for opt in start["optimizers"].values():
        for group in opt["param_groups"]:
            group["lr"] *= 0.5
    tmp = run_dir / f".{CHECKPOINT_NAME}.tmp{os.getpid()}"
    torch.save(start, tmp)
    os.replace(tmp, run_dir / CHECKPOINT_NAME)
    return float(start["optimizers"]["adam"]["param_groups"][0]["lr"])


def train_fadenet(config: FaDeNetConfig, data: IdentityData | None = None, critic: Critic | None = None,
                  run_dir: str | os.PathLike | None = None, progress: bool = True) -> FaDeNetResult:
    """Train (or resume, or just load if finished) FaDeNet against a frozen critic.

    ``data`` are labelled crops whose labels index the critic's classes; ``critic`` a trained critic. By
    default both come from the configuration's critic profile (training the critic first when needed) and the
    ``lfw_train_pool`` manifest. The U-Net trains on the critic's ``train`` split; the held-out images are used
    to report, after each epoch, the critic's accuracy on original and de-identified images.
    """
    config.validate()
    shard = current_shard()  # under torchrun: this process's share of every batch (see train.distributed)
    shard.check_batch(config.batch_size)
    device = device_for(resolve_device(config.device))
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / config.name
    critic_dir = ""
    t_start = time.perf_counter()
    if critic is None:
        ccfg = config.critic_config()
        if data is None:
            data = load_train_pool(ccfg.image_size, ccfg.max_identities, ccfg.seed, crop_pack=config.crop_pack)
        critic, ids, cdir = ensure_critic(ccfg, data, progress)
        if ids != data.identities:
            raise ValueError(f"{cdir}: the critic's identities differ from the training data's")
        critic_dir = str(cdir)
    elif data is None:
        raise ValueError("pass the training data together with an explicit critic (labels must match its classes)")
    if data.num_classes != critic.num_classes:
        raise ValueError(f"data has {data.num_classes} identities, the critic {critic.num_classes} classes")
    extra_critic = None
    if config.extra_critic_profile:
        # trained (or loaded) on the same training pool, so its classes are the main critic's
        extra_critic, _, extra_dir = ensure_critic(CriticConfig.profile(config.extra_critic_profile), data, progress)
        critic_dir += f";{extra_dir}"
    critic_wall = time.perf_counter() - t_start
    data = data.resized(config.image_size)
    teacher_images = teacher_outputs(config.teacher, data.train_images, run_dir, progress) if config.teacher else None
    critic = critic.to(device).freeze()
    # The critic runs forward and backward at every step: a BatchNorm-folded copy computes the same function
    # in evaluation mode, faster.
    fast_critic = fold_batchnorm(critic)
    fast_extra = fold_batchnorm(extra_critic.to(device).freeze()) if extra_critic is not None else None

    torch.manual_seed(config.seed)  # identical initial U-Net weights for a given seed
    unet = build_unet(config).to(device)
    if config.detail_basis:  # (a resumed run's checkpoint holds the same basis)
        unet.set_detail_basis(*fit_detail_basis(unet, data.train_images, config.detail_basis, config.seed))
    if config.shape_basis:
        unet.set_shape_basis(fit_shape_basis(unet, data.train_images, config.shape_basis))
    if config.init_from:  # fine-tuning; a resumed run's checkpoint overwrites this in fit()
        load_init_state(unet, init_state(config.init_from, run_dir), config.init_from)
    optimizer = torch.optim.Adam(unet.parameters(), lr=config.lr)
    modules, optimizers = {"unet": unet}, {"adam": optimizer}
    disc = opt_d = None
    if config.adv_weight:
        from deidkit.models.live import LiveDiscriminator

        disc = LiveDiscriminator(channels=32).to(device)
        opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.99))
        modules["discriminator"], optimizers["adam_d"] = disc, opt_d
    run = TrainingRun(run_dir, modules, optimizers, seed=config.seed,
                      config={**config.to_dict(), "critic_dir": critic_dir}, show_progress=progress)
    # DistributedDataParallel when several processes train (the checkpoint keeps the plain modules); the speed
    # options of the paper profile (channels-last, torch.compile, bf16 autocast) apply to the forward passes
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    unet_ddp = prepare(wrap(prepare(unet, config.channels_last)), compile=config.compile)
    disc_ddp = wrap(prepare(disc, config.channels_last)) if disc is not None else None

    face_net = None
    if config.detect_weight:
        from deidkit.recognizers import load_five_landmarks

        face_net = load_five_landmarks().to(device)
    adversary = None
    if config.adversary_weight:
        adversary = OnlineAdversary(config.adversary_bank, config.adversary_ridge, config.adversary_margin)
    box = config.face_region
    side = int(round(box * config.image_size))
    top = (config.image_size - side) // 2

    def make_loader(epoch: int) -> ArrayBatches | WorkerBatches:
        if config.workers and teacher_images is None:
            return WorkerBatches(data.train_images, data.train_labels, config.batch_size, config.seed, epoch,
                                 config.workers, augment=config.augment, shard=shard,
                                 pin_memory=device.type == "cuda")
        return ArrayBatches(data.train_images, data.train_labels, config.batch_size, config.seed, epoch,
                            augment=config.augment, shard=shard, targets=teacher_images)

    def step(batch: tuple[torch.Tensor, ...], epoch: int, global_step: int) -> dict[str, float]:
        with autocast(config.amp, device):
            target = batch[2].to(device, non_blocking=True).to(memory_format=memory) if len(batch) > 2 else None
            return train_step(batch[0].to(device, non_blocking=True).to(memory_format=memory),
                              batch[1].to(device, non_blocking=True), target)

    def train_step(x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        unet.train()
        fx = unet_ddp(x)
        # what the image terms keep the output close to: the input (the paper) or a teacher's output of it
        ref = x if target is None else target
        if config.feature_weight or config.push_weight:
            maps = fast_critic.feature_maps(fx)
            feats = maps["features"]
            with torch.no_grad():
                ref_maps = fast_critic.feature_maps(x)
        else:
            feats = fast_critic.features(fx)
        logits = fast_critic.logits_from_features(feats)
        loss = fadenet_loss(ref, fx, logits, y, lam=config.lam, ce_cap=config.ce_cap,
                            edge_weight=config.edge_weight)
        total = loss.total
        # expectation over transformation: the critic terms over random views of the output (see augment)
        view_pairs = []  # (maps of a view of the output, maps of the same view of the input) for the push term
        if config.push_weight and config.push_on_views:
            for _ in range(config.critic_views):
                # one draw for both: the 6-channel stack is resampled by the same per-image transform
                vfx, vx = random_views(torch.cat([fx, x], dim=1), shard=shard).split(3, dim=1)
                with torch.no_grad():
                    ref_view = fast_critic.feature_maps(vx)
                view_pairs.append((fast_critic.feature_maps(vfx), ref_view))
            view_feats = [m["features"] for m, _ in view_pairs]
        else:
            view_feats = [fast_critic.features(random_views(fx, shard=shard)) for _ in range(config.critic_views)]
        if view_feats:
            views = [fadenet_loss(x, fx, fast_critic.logits_from_features(f), y, lam=config.lam,
                                  ce_cap=config.ce_cap).l2 for f in view_feats]
            total = loss.l1 - config.lam * (loss.l2 + sum(views)) / (1 + len(views))
        extra = {}
        extra_pair = None  # (maps of the output, maps of the input) in the second critic
        if fast_extra is not None:
            with torch.no_grad():
                extra_ref = fast_extra.feature_maps(x)
            extra_pair = (fast_extra.feature_maps(fx), extra_ref)
        original = None  # the critic's embedding of the input, for the terms that compare the output's with it
        if config.embed_weight or config.diversity_weight or adversary is not None:
            with torch.no_grad():
                original = fast_critic.features(x)
        if config.embed_weight:
            sim = torch.stack([embedding_similarity(f, original, config.embed_margin).mean()
                               for f in (feats, *view_feats)]).mean()
            if extra_pair is not None:
                extra_sim = embedding_similarity(extra_pair[0]["features"], extra_pair[1]["features"],
                                                 config.embed_margin).mean()
                extra["extra_embed_sim"] = float(extra_sim.detach())
                sim = (sim + extra_sim) / 2
            total = total + config.embed_weight * sim
            extra["embed_sim"] = float(sim.detach())
        if config.diversity_weight:
            collapse = output_collapse(feats, original, y)
            total = total + config.diversity_weight * collapse
            extra["collapse"] = float(collapse.detach())
        if adversary is not None:
            adv, read_back = adversary(feats, original)
            total = total + config.adversary_weight * adv
            extra["adversary_cos"] = float(read_back.mean())
        if config.feature_weight:
            # the live model's attraction of low-level appearance (Gafni et al.): textures the critic would
            # read as a new identity change these maps most, a changed face shape least
            layers = config.feature_layers or DEFAULT_FEATURE_LAYERS
            if target is None:
                pull_maps = ref_maps
            else:
                with torch.no_grad():
                    pull_maps = fast_critic.feature_maps(target)
            feat = sum((maps[k] - pull_maps[k]).abs().mean() for k in layers)
            total = total + config.feature_weight * feat
            extra["feature_l1"] = float(feat.detach())
        if config.push_weight:
            # mid-level maps are shared more widely between recognisers than one network's embedding is (the
            # intermediate-feature attacks' observation): moving them off the original's should carry further
            push = torch.stack([embedding_similarity(m[k].flatten(1), r[k].flatten(1), config.push_margin).mean()
                                for m, r in ((maps, ref_maps), *view_pairs)
                                for k in config.push_layers or DEFAULT_PUSH_LAYERS]).mean()
            if extra_pair is not None:
                m, r = extra_pair
                push = (push + torch.stack([embedding_similarity(m[k].flatten(1), r[k].flatten(1),
                                                                 config.push_margin).mean()
                                            for k in config.push_layers or DEFAULT_PUSH_LAYERS]).mean()) / 2
            total = total + config.push_weight * push
            extra["push_sim"] = float(push.detach())
        if target is not None and config.teacher_weight:
            pixel = (fx - target).abs().mean()
            total = total + config.teacher_weight * pixel
            extra["teacher_l1"] = float(pixel.detach())
        if face_net is not None:
            # MTCNN's ONet on the face box (the region a detector's box covers in the canonical crop)
            prob = face_net.face_probability(fx[..., top:top + side, top:top + side])
            det = detection_loss(prob).mean()
            total = total + config.detect_weight * det
            extra.update(detect=float(det.detach()), face_prob=float(prob.detach().mean()))
        if config.ssim_weight:
            quality = 1.0 - ssim_index(x, fx).mean()
            total = total + config.ssim_weight * quality
            extra["ssim_loss"] = float(quality.detach())
        if config.chroma_weight:
            chroma = chroma_distance(x, fx, sigma=config.image_size / 32).mean()
            total = total + config.chroma_weight * chroma
            extra["chroma"] = float(chroma.detach())
        if disc is not None:
            # LSGAN: the discriminator scores real crops 1 and FaDeNet's outputs 0; the U-Net wants 1
            # one forward pass over real and fake (DDP synchronises once per forward-backward)
            d_real, d_fake = disc_ddp(torch.cat([x, fx.detach()])).split(len(x))
            d_loss = ((d_real - 1) ** 2).mean() + (d_fake**2).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            disc.requires_grad_(False)
            g_adv = ((disc(fx) - 1) ** 2).mean()
            disc.requires_grad_(True)
            total = total + config.adv_weight * g_adv
            extra.update(d_loss=float(d_loss.detach()), g_adv=float(g_adv.detach()))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        return {**loss.as_floats(), **extra, "critic_acc": (logits.argmax(1) == y).float().mean().item(),
                "n": float(len(x) * shard.world)}

    epochs_path = run_dir / "epochs.csv"
    rows = pd.read_csv(epochs_path).to_dict("records") if epochs_path.is_file() else []
    original_acc = rows[0]["heldout_critic_acc_original"] if rows else None
    t0 = time.perf_counter()
    log = run.read_log()
    # a collapse to the identity map (see collapsed_in_last_epoch) is undone: the epoch runs again from where it
    # started at half the learning rate (recorded in recoveries.json and the metrics)
    initial = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in modules.items()}
    recoveries = read_json(run_dir / RECOVERIES_NAME) or []
    for e in range(1, config.epochs + 1):  # one epoch per fit() so the held-out split is evaluated in between
        for attempt in range(MAX_RECOVERIES + 1):
            if any(int(r["epoch"]) == e for r in rows):  # done before (a resumed or finished run)
                log = run.fit(make_loader, step, epochs=e, desc="FaDeNet", total_epochs=config.epochs)
                break
            at_start = shard.is_main and _epoch_start_saved(run_dir, e)
            log = run.fit(make_loader, step, epochs=e, desc="FaDeNet", total_epochs=config.epochs)
            # (with a teacher, l1 is the distance to the teacher's output, which may rightly fall to nothing)
            if run.stopped or config.teacher:
                break
            collapsed, last, peak = collapsed_in_last_epoch(log)
            if not collapsed:
                break
            where = f"{run_dir}: epoch {e}: the U-Net collapsed to the identity map (its change to the input " \
                    f"fell from {peak:.3g} to {last:.2g}; its outputs would be the input)"
            if attempt == MAX_RECOVERIES or shard.active or not (e == 1 or at_start):
                raise TrainingCollapsed(f"{where}; halving the learning rate {attempt} time(s) did not help: lower "
                                        f"lr (--overrides lr=...) and delete the run folder to train it afresh")
            lr = _roll_back_epoch(run, run_dir, e, initial)
            recoveries.append({"epoch": e, "lr": lr, "collapsed_l1": last, "peak_l1": peak})
            if shard.is_main:
                write_json(run_dir / RECOVERIES_NAME, recoveries)
                print(f"{where}; running the epoch again at learning rate {lr:.3g}", file=sys.stderr)
        if run.stopped:  # the time limit of deidkit.train.loop.run_limits: the next call continues
            break
        if not any(int(r["epoch"]) == e for r in rows):
            # every process evaluates (the same numbers); rank 0 writes
            rep = heldout_report(unet, fast_critic, data, device, original_acc=original_acc)
            original_acc = rep.get("heldout_critic_acc_original")  # the critic is frozen: measure it once
            rows.append({"epoch": e, **rep})
            if shard.is_main:
                pd.DataFrame(rows).to_csv(epochs_path, index=False)
                # every epoch's U-Net is kept (small) for the training curve of the frontier measure
                snap = run_dir / "epochs" / f"epoch{e:03d}.pt"
                snap.parent.mkdir(exist_ok=True)
                torch.save({"unet": unet.state_dict(), "epoch": e}, snap)
            shard.barrier()
    wall = time.perf_counter() - t0
    unet.eval()
    if not run.stopped and shard.is_main:
        (run_dir / EPOCH_START_NAME).unlink(missing_ok=True)  # only a run still training can roll back
    if run.stopped:
        return FaDeNetResult(run_dir, unet, critic, log, pd.DataFrame(rows),
                             {"stopped": True, "epoch": run.epoch, "global_step": run.global_step})
    metrics: dict[str, Any] = {"profile": config.profile_name, "epochs": config.epochs, "lam": config.lam,
                               "train_images": int(len(data.train_images)), "critic_dir": critic_dir,
                               **({"recoveries": recoveries} if recoveries else {}),
                               **({k: v for k, v in rows[-1].items() if k != "epoch"} if rows else {})}
    if len(log) and "n" in log:
        metrics["train_images_per_s"] = float(log["n"].sum() / log["wall_s"].sum())
    if wall > 1.0 and len(log):
        metrics.update(wall_s_this_call=wall, critic_wall_s_this_call=critic_wall,
                       peak_rss_mb=peak_rss_mb(), device=str(device))
    old = read_json(run_dir / "metrics.json") or {}
    if shard.is_main:
        write_json(run_dir / "metrics.json", {**old, **metrics})
    return FaDeNetResult(run_dir, unet, critic, log, pd.DataFrame(rows), {**old, **metrics})


def fit_detail_basis(unet: UNet, images: np.ndarray, k: int, seed: int = 0, max_images: int = 4000
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The face-detail basis of a ``detail_basis`` U-Net: the first ``k`` principal components (randomised SVD)
    of what the U-Net's input blur removes from real faces, in tanh's pre-image, each scaled to one standard
    deviation; and the mean removed detail. From at most ``max_images`` training crops (uint8, N x S x S x 3)."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(images), min(len(images), max_images), replace=False))
    device = next(unet.parameters()).device
    residuals = []
    with torch.no_grad():
        for i in range(0, len(pick), 256):
            x = torch.from_numpy(np.ascontiguousarray(images[pick[i:i + 256]])).to(device)
            x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
            lim = 0.999  # as the U-Net clamps before atanh
            r = torch.atanh(x.clamp(-lim, lim)) - torch.atanh(unet.blurred_input(x).clamp(-lim, lim))
            residuals.append(r.flatten(1))
        r = torch.cat(residuals)
        mean = r.mean(0, keepdim=True)
        torch.manual_seed(seed)
        _, s, v = torch.svd_lowrank(r - mean, q=min(k + 16, len(r)), niter=4)
    scale = s[:k] / max(len(r) - 1, 1) ** 0.5
    _, side, _, chans = images.shape
    basis = (v[:, :k].T * scale[:, None]).reshape(k, chans, side, side)
    return basis, mean.reshape(1, chans, side, side)


def fit_shape_basis(unet: UNet, images: np.ndarray, k: int, max_images: int = 4000,
                    smooth_sigma: float = 1.5) -> torch.Tensor:
    """The face-geometry basis of a ``shape_basis`` U-Net: the first ``k`` principal components of where real faces'
    features sit relative to the mean face (dense optical flow, OpenCV's DIS, from the mean grey face to each
    training face, both smoothed by ``smooth_sigma`` pixels so texture does not count as geometry), windowed to the
    face box as the network applies it, each scaled to one standard deviation: (k, 2, S, S) pixels. Deterministic
    (the first ``max_images`` crops, uint8 N x S x S x 3)."""
    import cv2

    faces = images[:max_images]
    grey = np.stack([cv2.GaussianBlur(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), (0, 0), smooth_sigma)
                     for f in faces])
    mean_face = np.round(grey.astype(np.float32).mean(0)).astype(np.uint8)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    # flow[y, x] = where the mean face's pixel (x, y) lies in the face: a warp by it maps that face to the mean
    flows = torch.from_numpy(np.stack([dis.calc(mean_face, g, None) for g in grey])).permute(0, 3, 1, 2)
    flows = (flows * unet.warp_window.cpu()).flatten(1).double()
    centred = flows - flows.mean(0, keepdim=True)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    scale = s[:k] / max(len(flows) - 1, 1) ** 0.5
    side = images.shape[1]
    return (vt[:k] * scale[:, None]).float().reshape(k, 2, side, side)


def teacher_outputs(teacher: str, images: np.ndarray, run_dir: Path, progress: bool = True,
                    batch_size: int = 64) -> np.ndarray:
    """What the de-identifier ``teacher`` (a name for :func:`deidkit.deidentifiers.load_deidentifier`) makes of
    ``images``: computed once per run and kept in its folder (``teacher.npz``, with the teacher's name and the
    inputs' digest, so a changed teacher or data set is recomputed, not reused)."""
    from tqdm.auto import tqdm

    from deidkit.cache import content_digest
    from deidkit.deidentifiers import load_deidentifier

    digest = content_digest(images)
    path = run_dir / "teacher.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["teacher"]) == teacher and str(z["digest"]) == digest:
                return z["images"]
    model = load_deidentifier(teacher)
    out = np.empty_like(images)
    for s in tqdm(range(0, len(images), batch_size), desc=f"teacher {teacher}", disable=not progress):
        out[s:s + batch_size] = model.deidentify(images[s:s + batch_size])
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "teacher.tmp.npz"
    np.savez(tmp, images=out, teacher=np.array(teacher), digest=np.array(digest))
    os.replace(tmp, path)
    return out


def load_init_state(unet: UNet, state: dict[str, torch.Tensor], source: str) -> None:
    """``state`` into ``unet``; a warping network (``shape_warp``, ``shape_basis``) may start from one without the
    warp (its warp head then starts as no warp, its shape basis stays as fitted), any other difference is an
    error."""
    missing, unexpected = unet.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k.startswith(("warp.", "shape.")) or k == "shape_modes")]
    if missing or unexpected:
        raise ValueError(f"{source}: not a state of this U-Net (missing {missing[:3]}, unexpected {unexpected[:3]})")


def init_state(init_from: str, run_dir: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The U-Net state ``init_from`` names (see :func:`deidkit.checkpoints.init_state`): ``pretrained:fadenet`` or a
    run's epoch snapshot (``{"unet": ...}``)."""
    return checkpoint_init_state(init_from, "unet", run_dir)


@torch.no_grad()
def heldout_report(unet: UNet, critic: Critic, data: IdentityData, device: torch.device | str = "cpu",
                   batch_size: int = 64, original_acc: float | None = None) -> dict[str, float]:
    """Critic accuracy on the held-out originals (unless given) and on their FaDeNet versions, and the mean
    L1 term."""
    if len(data.heldout_images) == 0:
        return {}
    was = unet.training
    unet.eval()
    outs, l1, cos = [], [], []
    for s in range(0, len(data.heldout_images), batch_size):
        x = to_model_range(torch.from_numpy(data.heldout_images[s:s + batch_size]).permute(0, 3, 1, 2)).to(device)
        fx = unet(x)
        l1.append(unit_norm_distance(x, fx).cpu())
        cos.append(F.cosine_similarity(critic.features(fx), critic.features(x), dim=1).cpu())
        outs.append(from_model_range(fx).permute(0, 2, 3, 1).cpu().numpy())
    unet.train(was)
    deid = np.concatenate(outs)
    y = data.heldout_labels
    return {
        "heldout_critic_acc_original": original_acc if original_acc is not None
        else float((predict(critic, data.heldout_images, device=device).argmax(1) == y).mean()),
        "heldout_critic_acc_fadenet": float((predict(critic, deid, device=device).argmax(1) == y).mean()),
        "heldout_l1": float(torch.cat(l1).mean()),
        # the critic's embedding (the trained-against recogniser): cosine between output and original
        "heldout_embed_cos": float(torch.cat(cos).mean()),
    }


__all__ = ["FaDeNetConfig", "FaDeNetDeidentifier", "FaDeNetResult", "build_unet",
           "ensure_critic", "heldout_report", "load_fadenet_deidentifier", "train_fadenet", "CriticRecognizer"]
