"""Training of the live model's detail stage (:class:`deidkit.models.detail.DetailNet`, loss
:mod:`deidkit.losses.detail`): a 2x super-resolution GAN on training-pool faces.

Data: the central ``crop_fraction`` of the canonical crops of the training manifest (the region the live generator
sees) at twice the generator's side: the real face ``hr``. Each batch: a random horizontal flip; ``lr`` is ``hr``
blurred by a Gaussian of a random width in [0, ``blur_max``] pixels and reduced to the generator's side by area
averaging. The generator's faces are softer than a reduced photo; the blur teaches the stage to draw detail into
soft faces too. Resumable (:class:`deidkit.train.loop.TrainingRun`): an interrupted run goes on from its last
checkpoint."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from deidkit.checkpoints import runs_dir
from deidkit.configs import DetailConfig
from deidkit.losses.detail import detail_discriminator_loss, detail_generator_loss, detail_unpaired_loss
from deidkit.models.detail import DetailNet, PatchDiscriminator
from deidkit.train.live import _Batches, resolve_device, training_paths
from deidkit.train.loop import TrainingRun, seed_everything


def default_detail_run_dir(profile: str) -> Path:
    return runs_dir() / f"detail-{profile}"


def load_detail_images(cfg: DetailConfig, chunk: int = 512) -> np.ndarray:
    """The real faces (N, 2S, 2S, 3) uint8: the central ``crop_fraction`` of the training manifest's canonical
    crops, at twice the stage's input side ``S``. The crops are aligned at least as large as that (a second stage,
    128 -> 256 px, learns from 320-px crops, not from 224-px ones enlarged, which would teach it to draw soft)."""
    from deidkit.data.lfw import aligned_crops

    paths = training_paths(cfg)  # the manifest, or max_images of it drawn with the seed
    side = 2 * cfg.size
    canonical = max(224, int(np.ceil(side / cfg.crop_fraction)))
    if cfg.crop_pack:
        from deidkit.data.packs import read_crop_pack

        _, crops = read_crop_pack(cfg.crop_pack, paths)
        return np.stack([centre_region(c, cfg.crop_fraction, side) for c in crops])
    out = np.empty((len(paths), side, side, 3), np.uint8)
    for s in tqdm(range(0, len(paths), chunk), desc="training crops", disable=len(paths) <= chunk):
        crops = aligned_crops(paths[s:s + chunk], size=canonical)
        out[s:s + len(crops)] = [centre_region(c, cfg.crop_fraction, side) for c in crops]
    return out


@torch.no_grad()
def teacher_faces(teacher: str, cfg: DetailConfig, chunk: int = 64, show_progress: bool = True) -> np.ndarray:
    """The shipped live model ``teacher``'s raw generator faces (N, S, S, 3) uint8 of the training manifest's
    crops, each conditioned on itself (as in the pipeline)."""
    from deidkit.data.lfw import aligned_crops
    from deidkit.deidentifiers.live import to_uint8
    from deidkit.pretrained import load_pretrained

    deid = load_pretrained(teacher)
    if deid.size != cfg.size:
        raise ValueError(f"teacher {teacher!r} draws {deid.size}-px faces, the detail stage takes {cfg.size}")
    paths = training_paths(cfg)
    out = np.empty((len(paths), cfg.size, cfg.size, 3), np.uint8)
    for s in tqdm(range(0, len(paths), chunk), desc=f"{teacher} faces", disable=not show_progress):
        x = deid._network_input(aligned_crops(paths[s:s + chunk], size=224))
        raw, _ = deid.generator(x, deid.features.embed(x))
        out[s:s + len(raw)] = to_uint8(raw)
    return out


def centre_region(crop: np.ndarray, fraction: float, side: int) -> np.ndarray:
    """The central ``fraction`` of a canonical crop, resized to ``side`` (area averaging to shrink)."""
    c = crop.shape[0]
    k = int(round(fraction * c))
    o = (c - k) // 2
    region = crop[o:o + k, o:o + k]
    interp = cv2.INTER_AREA if side < k else cv2.INTER_CUBIC
    return cv2.resize(region, (side, side), interpolation=interp)


def degrade(hr: torch.Tensor, size: int, blur_max: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``hr`` (N, 3, 2S, 2S) blurred by a Gaussian of random width in [0, ``blur_max``] and area-reduced to
    ``size``."""
    n = hr.shape[0]
    sigmas = torch.rand(n, generator=generator) * blur_max
    radius = max(1, int(np.ceil(3 * blur_max)))
    t = torch.arange(-radius, radius + 1, dtype=hr.dtype)
    k = torch.exp(-0.5 * (t[None] / sigmas.clamp_min(1e-3)[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)  # a width near 0 gives a unit impulse: no blur
    k = k.to(hr.device)
    x = hr.reshape(1, n * 3, *hr.shape[-2:])
    kh = k.repeat_interleave(3, 0)[:, None, None, :]
    kv = k.repeat_interleave(3, 0)[:, None, :, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kh, groups=n * 3)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kv, groups=n * 3)
    return F.interpolate(x.reshape_as(hr), size=(size, size), mode="area")


def finest_grid(x: torch.Tensor, amplitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Patterns at the finest period of ``x`` (N, C, H, W): alternate columns, alternate rows and a checkerboard,
    each under a smooth random envelope (unit RMS) with a random amplitude in [0, ``amplitude``], the same in every
    channel (what a decoder's grid looks like)."""
    n, _, h, w = x.shape
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    signs = torch.stack([(-1.0) ** xx, (-1.0) ** yy, (-1.0) ** (xx + yy)]).to(x)  # (3, H, W)
    env = torch.randn(n, 3, 4, 4, generator=generator).to(x)
    env = F.interpolate(env, size=(h, w), mode="bicubic", align_corners=False)
    env = env / env.pow(2).mean((2, 3), keepdim=True).sqrt().clamp_min(1e-6)
    amp = (torch.rand(n, 3, 1, 1, generator=generator) * amplitude).to(x)
    return (amp * env * signs).sum(1, keepdim=True).expand_as(x)


def random_patches(images: torch.Tensor, side: int) -> torch.Tensor:
    """One random ``side`` x ``side`` patch of each image (at even offsets, so that the half-size input of a patch
    is a patch of the half-size image)."""
    n, _, h, w = images.shape
    ys = torch.randint(0, (h - side) // 2 + 1, (n,)) * 2
    xs = torch.randint(0, (w - side) // 2 + 1, (n,)) * 2
    return torch.stack([images[i, :, y:y + side, x:x + side] for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist()))])


class TextureLayers(torch.nn.Module):
    """Early feature maps of a frozen face network (MobileFaceNet MS1M), differentiable, at the input's side."""

    def __init__(self, network: torch.nn.Module, layers: tuple[str, ...]) -> None:
        super().__init__()
        from deidkit.recognizers import MobileFaceNetMS1MRecognizer as R

        self.network = network.eval().requires_grad_(False)
        self.layers = tuple(layers)
        self.register_buffer("mean", torch.tensor(R.MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(R.STD).view(1, 3, 1, 1), False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        net, out = self.network, {}
        x = ((x + 1.0) / 2.0 - self.mean) / self.std
        x = net.conv1(x)
        out["conv1"] = x
        x = net.dw_conv(x)
        out["dw_conv"] = x
        start = 0
        for name, end in net.STAGE_ENDS.items():
            if all(k in out for k in self.layers):
                break
            x = net.features[start:end](x)
            out[name] = x
            start = end
        return {k: out[k] for k in self.layers}


def train_detail(cfg: DetailConfig, run_dir: str | os.PathLike | None = None, images: np.ndarray | None = None,
                 show_progress: bool = True, network: torch.nn.Module | None = None) -> tuple[DetailNet, Any]:
    """Train (or resume, or load when finished) the detail stage; returns (network, per-step log). ``images``:
    real faces (N, 2S, 2S, 3) uint8 replacing the manifest's (tests); ``network``: the frozen feature network
    (default: MobileFaceNet MS1M)."""
    run_dir = Path(run_dir) if run_dir is not None else default_detail_run_dir(cfg.profile_name)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    G = DetailNet(cfg.channels, cfg.blocks, cfg.upsample, cfg.input_filter).to(device)
    D = PatchDiscriminator(cfg.disc_channels).to(device)
    if network is None:
        from deidkit.recognizers import get_recognizer

        network = get_recognizer("mobilefacenet_ms1m").network
    feats = TextureLayers(network, cfg.feature_layers).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
    imgs = load_detail_images(cfg) if images is None else np.asarray(images)
    side = 2 * cfg.size
    if imgs.ndim != 4 or imgs.shape[1:] != (side, side, 3) or imgs.dtype != np.uint8:
        raise ValueError(f"training faces must be uint8 (N, {side}, {side}, 3), got {imgs.dtype} {imgs.shape}")
    data = torch.from_numpy(np.ascontiguousarray(imgs))
    unpaired = None
    if cfg.teacher:  # kept beside the run: computed once, also across resumes
        tpath = run_dir / "teacher_faces.npy"
        if tpath.is_file():
            unpaired = np.load(tpath, allow_pickle=False)
        if unpaired is None or len(unpaired) != len(data):
            unpaired = teacher_faces(cfg.teacher, cfg, show_progress=show_progress)
            run_dir.mkdir(parents=True, exist_ok=True)
            tmp = run_dir / f".teacher_faces.tmp{os.getpid()}.npy"
            np.save(tmp, unpaired)
            os.replace(tmp, tpath)
        unpaired = torch.from_numpy(unpaired)
    run = TrainingRun(run_dir, {"detail": G, "discriminator": D}, {"detail": opt_g, "discriminator": opt_d},
                      seed=cfg.seed, config=dataclasses.asdict(cfg), show_progress=show_progress)

    def step(idx: np.ndarray, epoch: int, global_step: int) -> dict[str, float]:
        hr = data[torch.from_numpy(idx)].to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        flip = torch.rand(len(idx)) < 0.5
        hr = torch.where(flip.view(-1, 1, 1, 1).to(device), hr.flip(3), hr)
        if cfg.patch and cfg.patch < side:
            hr = random_patches(hr, cfg.patch)
        lr = degrade(hr, hr.shape[-1] // 2, cfg.blur_max)
        # the input may carry a decoder's grid; the low-band term below still compares with the clean reduction
        out = G(lr + finest_grid(lr, cfg.input_grid) if cfg.input_grid else lr)
        fakes = [out]
        if unpaired is not None:  # the teacher's faces of the same images, own random patches
            xu = unpaired[torch.from_numpy(idx)].to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            xu = torch.where(flip.view(-1, 1, 1, 1).to(device), xu.flip(3), xu)
            if cfg.patch and cfg.patch < side:
                xu = random_patches(xu, cfg.patch // 2)
            out_u = G(xu)
            fakes.append(out_u)
        opt_d.zero_grad(set_to_none=True)
        d_loss = detail_discriminator_loss(D(hr), D(torch.cat(fakes).detach()))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        out_f, hr_f = out, hr
        if cfg.feature_shift:  # one random shift for the batch, the same for output and original
            dy, dx = (int(v) for v in torch.randint(0, cfg.feature_shift + 1, (2,)))
            out_f, hr_f = out.roll((dy, dx), (2, 3)), hr.roll((dy, dx), (2, 3))
        with torch.no_grad():
            hr_feats = feats(hr_f)
        total, terms = detail_generator_loss(out, hr, lr, D(out), feats(out_f), hr_feats, cfg.weights)
        if unpaired is not None:
            total_u, terms_u = detail_unpaired_loss(out_u, xu, D(out_u), cfg.weights)
            total, terms = total + total_u, {**terms, **terms_u}
        total.backward()
        opt_g.step()
        return {"loss": float(total.detach()), "d": float(d_loss.detach()), **terms}

    log = run.fit(lambda epoch: _Batches(len(data), cfg.batch_size, cfg.seed, epoch, cfg.epoch_steps), step,
                  cfg.epochs, desc=f"detail-{cfg.profile_name}")
    return G.eval(), log
