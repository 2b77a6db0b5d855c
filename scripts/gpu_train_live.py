"""Train the live model's ``gpu`` profile on one GPU in a fixed wall-time budget (maintainers; a rented GPU machine may have
no LFW and no internet, and returns at most eight files of 16 MiB).

    python scripts/gpu_train_live.py --pack PACK.npz --out OUT_DIR --budget-s 390

1. times 30 full-loss and 30 warm-up steps of the profile (``deidkit.train.speed.benchmark_training``);
2. sets ``epochs`` / ``warmup_epochs`` (100-step epochs, a third warm-up, the rest a multiple of four so the lambda
   stages are whole epochs) to fit the budget, and trains with ``deidkit train live --profile gpu``;
3. writes the stage-0, -1 and -3 generators as float16, split into 15 MiB parts, and ``run.tar.gz`` (config, log,
   plan, timings) into OUT_DIR.

Locally: ``cat live-gpu-stage1.pt.part* > stages/stage1.pt`` rebuilds a snapshot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from gpu_common import archive_run, gpu_arguments, save_half

from deidkit.train.speed import benchmark_training, plan_epochs


def main() -> int:
    ap = gpu_arguments("/tmp/deidkit-runs/live-gpu", 30,
                       "gpu: time and plan the epochs; another: train it as defined")
    ap.add_argument("--epoch-steps", type=int, default=100, help="steps per epoch (the profile's: 100)")
    ap.add_argument("--stages", nargs="+", type=int, default=[0, 1, 3])
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    base = {"crop_pack": str(Path(args.pack).resolve()), "epoch_steps": args.epoch_steps}
    plan: dict = {"profile": args.profile, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                  else "cpu", "torch": torch.__version__}
    planned: list[str] = []
    if args.profile in ("gpu", "gpu128"):  # from scratch: time both kinds of step, fit the epochs to the budget
        t0 = time.perf_counter()
        full = benchmark_training("live", args.profile, steps=args.timing_steps, device=args.device, overrides=base)
        warm = benchmark_training("live", args.profile, steps=args.timing_steps, device=args.device,
                                  overrides={**base, "epochs": 30, "warmup_epochs": 29})
        step_full = full["batch_size"] / full["images_per_s"]
        step_warm = warm["batch_size"] / warm["images_per_s"]
        epochs, warmup = plan_epochs(step_full, step_warm, args.budget_s, args.epoch_steps, safety=args.safety)
        plan.update(step_full_s=step_full, step_warm_s=step_warm, epochs=epochs, warmup_epochs=warmup,
                    budget_s=args.budget_s, timing_s=time.perf_counter() - t0, timings=[full, warm])
        planned = [f"epochs={epochs}", f"warmup_epochs={warmup}", f"epoch_steps={args.epoch_steps}"]
    print(json.dumps({k: v for k, v in plan.items() if k != "timings"}), flush=True)
    (out / "plan.json").write_text(json.dumps(plan, indent=1))
    cmd = [sys.executable, "-m", "deidkit", "train", "live", "--profile", args.profile, "--run-dir", args.run_dir,
           "--max-minutes", f"{args.budget_s / 60 + 1.0:.2f}", "--overrides", f"crop_pack={base['crop_pack']}",
           f"device={args.device}", *planned]
    t1 = time.perf_counter()
    rc = subprocess.call(cmd)
    plan.update(train_rc=rc, train_wall_s=time.perf_counter() - t1)
    (out / "plan.json").write_text(json.dumps(plan, indent=1))
    run = Path(args.run_dir)
    for k in args.stages:
        snap = run / "stages" / f"stage{k}.pt"
        if not snap.is_file():
            print(f"missing {snap}", flush=True)
            continue
        half = out / f"{Path(args.run_dir).name}-stage{k}.pt"
        save_half(snap, "state_dict", half)
        subprocess.check_call(["split", "-b", "15m", str(half), f"{half}.part"])
        half.unlink()
    archive_run(run, out, plan)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
