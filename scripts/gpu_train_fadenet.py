"""Train FaDeNet's ``gpu`` profile on one GPU in a fixed wall-time budget (maintainers; a rented GPU machine may have
no LFW, no facenet-pytorch and no internet, and returns at most eight files of 16 MiB).

    # here: the critic identities' crops (1,911 images, ~10 MiB at 96 px) and what travels with them
    deidkit data pack --manifest lfw_train_pool --critic-identities --size 96 --out .gpu/critic_pool_96.npz
    # there ($DEIDKIT_CACHE holding runs/critic-quick; facenet-pytorch from a carried wheel for MTCNN's ONet):
    python scripts/gpu_train_fadenet.py --pack .gpu/critic_pool_96.npz --out $OUT --budget-s 390

1. times the profile's steps (``deidkit.train.speed.benchmark_training``) and sets ``epochs`` so that training fits
   the budget (with a safety factor: the first live run on an H200 trained ~10 % slower than timed);
2. trains with ``deidkit train fadenet --profile gpu``;
3. writes up to ``--keep`` epoch snapshots (evenly spread, the last included) as float16 U-Nets and ``run.tar.gz``
   (config, epochs.csv with the critic's held-out accuracy after each epoch, plan, timings) into OUT_DIR.

One device call (``.gpu`` ignored through ``.git/info/exclude`` and carried; ``reports/`` and ``deidkit/weights/``
moved aside for the call, since the tracked files alone are over the 64 MiB that travels)::

    # .gpu/: critic_pool_96.npz, cache/runs/critic-quick (the finished critic), whl/facenet_pytorch-2.5.3-*.whl
    pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
    DEIDKIT_CACHE=$PWD/.gpu/cache python scripts/gpu_train_fadenet.py --pack .gpu/critic_pool_96.npz --out $OUT

Locally: put the snapshots under ``$DEIDKIT_CACHE/runs/fadenet-gpu/epochs/`` and choose among them with
``deidkit select fadenet --run-dir ...`` (selection set and MS1M only).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from gpu_common import archive_run, gpu_arguments, save_half

from deidkit.train.speed import benchmark_training


def spread(n: int, keep: int) -> list[int]:
    """Up to ``keep`` epochs of 1..n, evenly spread, the last one included."""
    if n <= keep:
        return list(range(1, n + 1))
    return sorted({max(1, round(n * (k + 1) / keep)) for k in range(keep)})


def main() -> int:
    ap = gpu_arguments("/tmp/deidkit-runs/fadenet-gpu", 20)
    ap.add_argument("--keep", type=int, default=6, help="epoch snapshots to return")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    pack = str(Path(args.pack).resolve())
    plan: dict = {"profile": args.profile, "torch": torch.__version__,
                  "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    t0 = time.perf_counter()
    timed = benchmark_training("fadenet", args.profile, steps=args.timing_steps, device=args.device,
                               overrides={"crop_pack": pack})
    from deidkit.configs import FaDeNetConfig
    from deidkit.train.critic import load_train_pool

    cfg = FaDeNetConfig.profile(args.profile, crop_pack=pack)
    ccfg = cfg.critic_config()
    train_images = len(load_train_pool(ccfg.image_size, ccfg.max_identities, ccfg.seed, crop_pack=pack).train_labels)
    steps_per_epoch = math.ceil(train_images / cfg.batch_size)
    step_s = timed["batch_size"] / timed["images_per_s"]
    # each epoch also scores the held-out split and saves a snapshot: counted as a tenth of an epoch
    epochs = max(1, int(args.budget_s / (args.safety * 1.1 * step_s * steps_per_epoch)))
    plan.update(step_s=step_s, steps_per_epoch=steps_per_epoch, epochs=epochs, budget_s=args.budget_s,
                timing_s=time.perf_counter() - t0, timing=timed)
    print(json.dumps({k: v for k, v in plan.items() if k != "timing"}), flush=True)
    cmd = [sys.executable, "-m", "deidkit", "train", "fadenet", "--profile", args.profile, "--run-dir",
           args.run_dir, "--max-minutes", f"{args.budget_s / 60 + 1.0:.2f}", "--overrides", f"crop_pack={pack}",
           f"device={args.device}", f"epochs={epochs}"]
    t1 = time.perf_counter()
    rc = subprocess.call(cmd)
    plan.update(train_rc=rc, train_wall_s=time.perf_counter() - t1)
    run = Path(args.run_dir)
    done = sorted(int(p.stem.removeprefix("epoch")) for p in (run / "epochs").glob("epoch*.pt"))
    for e in spread(len(done), args.keep):
        snap = run / "epochs" / f"epoch{done[e - 1]:03d}.pt"
        save_half(snap, "unet", out / snap.name)
    archive_run(run, out, plan, ("config.json", "epochs.csv"))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
