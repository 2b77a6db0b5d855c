"""The ``reversal`` attacker (:mod:`deidkit.eval.attack`): a small residual U-Net (the kit's FaDeNet network)
trained with an L1 loss to map a de-identifier's outputs back to the originals, at the judges' input size (112
pixels) by default. Training runs are cached and resumable (``cache_dir()/runs/reversal-...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from deidkit.models.unet import UNet


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
                   run_dir: str | Path | None = None, progress: bool = True,
                   outputs: np.ndarray | None = None) -> UNet:
    """Train (or resume, or load when finished) the U-Net that maps ``deidentifier``'s outputs back to the
    originals (``train_crops``, canonical crops of the attacker's training identities; ``outputs``: the
    de-identifier's outputs on them when already computed). Returns the U-Net in eval mode."""
    import hashlib
    import json

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


def reverse(unet: UNet, deidentified: np.ndarray, size: int, batch_size: int = 64) -> np.ndarray:
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


__all__ = ["ReversalConfig", "reverse", "train_reversal"]
