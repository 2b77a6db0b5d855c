"""What the GPU training scripts share: float16 copies of snapshots and one archive of the run's small files (the
device machine returns at most eight files of 16 MiB)."""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import torch


def save_half(snapshot: Path, key: str, dest: Path) -> None:
    """``snapshot``'s state dict under ``key`` as float16 (other entries as they are) into ``dest``."""
    state = torch.load(snapshot, map_location="cpu", weights_only=True)
    state[key] = {n: (t.half() if t.is_floating_point() else t) for n, t in state[key].items()}
    torch.save(state, dest)


def archive_run(run: Path, out: Path, plan: dict, names: tuple[str, ...] = ("config.json",)) -> None:
    """``out/run.tar.gz``: the plan (timings, epochs, return code), the run's ``names`` and its logs; prints the
    plan without its timing details."""
    (out / "plan.json").write_text(json.dumps(plan, indent=1))
    with tarfile.open(out / "run.tar.gz", "w:gz") as tar:
        for p in [out / "plan.json", *(run / n for n in names), *run.glob("log*")]:
            if p.is_file():
                tar.add(p, arcname=p.name)
    (out / "plan.json").unlink()
    print(json.dumps({k: v for k, v in plan.items() if k not in ("timings", "timing")}), flush=True)


def gpu_arguments(run_dir: str, timing_steps: int, profile_help: str | None = None) -> argparse.ArgumentParser:
    """The arguments every GPU training script takes: the crop pack, profile, output folder, wall-time budget, run
    folder, device, timed steps and the safety factor on the timed step."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", required=True)
    ap.add_argument("--profile", default="gpu", help=profile_help)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=390.0)
    ap.add_argument("--run-dir", default=run_dir)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--timing-steps", type=int, default=timing_steps)
    ap.add_argument("--safety", type=float, default=1.25,
                    help="planned step time = timed x this (the first H200 run trained ~10%% slower than timed)")
    return ap
