#!/usr/bin/env bash
# The 128-pixel live model and the detail stage on one GPU, in that order, then FaDeNet's paper profile: the script
# to run when a GPU machine is available (no LFW there: the data travel as crop packs made beforehand on the CPU).
#
# Before (on the CPU machine, from the project root):
#   .venv/bin/deidkit data pack --manifest lfw_train_pool --size 160 --quality 85 --out packs/crops160.npz
#   (the generator reads the central 0.8 of a 160-px canonical crop: 128 px)
# On the GPU machine (outputs under $OUT: fp16 stage generators in 15 MiB parts, plan and logs):
#   bash scripts/gpu_live128.sh packs/crops160.npz "$OUT"
set -euo pipefail
PACK=${1:?crop pack}
OUT=${2:?output folder}
mkdir -p "$OUT/live128" "$OUT/detail"
# 1. the 128-px live generator from scratch, epochs fitted to 330 s of training
python scripts/gpu_train_live.py --pack "$PACK" --profile gpu128 --out "$OUT/live128" --budget-s 330 \
  --run-dir /tmp/deidkit-runs/live-gpu128
# 2. the detail stage (2x) at its gpu profile, 120 s
python -m deidkit train detail --profile gpu --max-minutes 2 --run-dir /tmp/deidkit-runs/detail-gpu \
  --overrides device=cuda "crop_pack=$PACK" || true
cp /tmp/deidkit-runs/detail-gpu/config.json /tmp/deidkit-runs/detail-gpu/log*.csv "$OUT/detail/" 2>/dev/null || true
python - "$OUT/detail/detail.pt" <<'PY'
import sys, torch
ck = torch.load("/tmp/deidkit-runs/detail-gpu/checkpoint.pt", map_location="cpu", weights_only=True)
torch.save({k: v.half() for k, v in ck["modules"]["detail"].items()}, sys.argv[1])
PY
