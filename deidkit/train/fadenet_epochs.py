"""Between FaDeNet's epochs: the held-out report (the critic's accuracy on originals and on FaDeNet's outputs),
and undoing an epoch that collapsed to the identity map (it runs again from its start at half the learning
rate). The recipe itself is :mod:`deidkit.train.fadenet`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deidkit.checkpoints import CHECKPOINT_NAME, load_checkpoint
from deidkit.data.images import from_model_range, to_model_range
from deidkit.losses.fadenet import unit_norm_distance
from deidkit.models.critic import Critic
from deidkit.models.unet import UNet
from deidkit.train.identity_data import IdentityData
from deidkit.train.loop import TrainingRun
from deidkit.train.trained_critic import predict

#: how often one epoch may run again at half the learning rate after a collapse to the identity map
MAX_RECOVERIES = 3
RECOVERIES_NAME = "recoveries.json"
EPOCH_START_NAME = "checkpoint.epoch_start.pt"


def epoch_start_saved(run_dir: Path, epoch: int) -> bool:
    """Keep a copy of the checkpoint that starts ``epoch`` (the end of the one before), to roll back to; True
    when there is one (an epoch resumed mid-way has its copy from the process that started it)."""
    ckpt, start = run_dir / CHECKPOINT_NAME, run_dir / EPOCH_START_NAME
    if ckpt.is_file():
        saved = load_checkpoint(run_dir)
        if int(saved["epoch"]) == epoch - 1 and not int(saved.get("epoch_step", 0)):
            shutil.copyfile(ckpt, start)
            return True
    return start.is_file() and int(torch.load(start, map_location="cpu", weights_only=True)["epoch"]) == epoch - 1


def roll_back_epoch(run: TrainingRun, run_dir: Path, epoch: int, initial: dict[str, dict]) -> float:
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
