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
``epochs.csv``, ``metrics.json``). What happens between epochs (the held-out report, undoing a collapse) is
:mod:`deidkit.train.fadenet_epochs`; what a run starts from (fitted bases, a teacher's outputs, a fine-tuning
state), :mod:`deidkit.train.fadenet_start`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from deidkit.checkpoints import read_json, runs_dir, write_json
from deidkit.configs import DEFAULT_FEATURE_LAYERS, DEFAULT_PUSH_LAYERS, CriticConfig, FaDeNetConfig
from deidkit.deidentifiers.fadenet import FaDeNetDeidentifier, build_unet, load_fadenet_deidentifier
from deidkit.losses.fadenet import (
    chroma_distance,
    detection_loss,
    embedding_similarity,
    fadenet_loss,
    output_collapse,
    ssim_index,
)
from deidkit.models.critic import Critic, fold_batchnorm
from deidkit.models.unet import UNet
from deidkit.train.adversary import OnlineAdversary
from deidkit.train.augment import ArrayBatches, random_views
from deidkit.train.critic import (
    CriticRecognizer,
    IdentityData,
    ensure_critic,
    load_train_pool,
    peak_rss_mb,
    resolve_device,
)
from deidkit.train.distributed import current as current_shard
from deidkit.train.distributed import device_for, wrap

# What happens between epochs and what a run starts from moved to modules of their own; their names stay
# importable from here.
from deidkit.train.fadenet_epochs import (
    EPOCH_START_NAME,
    MAX_RECOVERIES,
    RECOVERIES_NAME,
    epoch_start_saved,
    heldout_report,
    roll_back_epoch,
)
from deidkit.train.fadenet_start import (
    fit_detail_basis,
    fit_shape_basis,
    init_state,
    load_init_state,
    teacher_outputs,
)
from deidkit.train.loop import TrainingCollapsed, TrainingRun, collapsed_in_last_epoch
from deidkit.train.speedups import WorkerBatches, autocast, prepare


@dataclass
class FaDeNetResult:
    run_dir: Path
    unet: UNet
    critic: Critic
    log: pd.DataFrame
    epochs: pd.DataFrame
    metrics: dict[str, Any]


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
            at_start = shard.is_main and epoch_start_saved(run_dir, e)
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
            lr = roll_back_epoch(run, run_dir, e, initial)
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


__all__ = ["EPOCH_START_NAME", "MAX_RECOVERIES", "RECOVERIES_NAME", "CriticRecognizer", "FaDeNetConfig",
           "FaDeNetDeidentifier", "FaDeNetResult", "build_unet", "ensure_critic", "fit_detail_basis",
           "fit_shape_basis", "heldout_report", "init_state", "load_fadenet_deidentifier", "load_init_state",
           "teacher_outputs", "train_fadenet"]
