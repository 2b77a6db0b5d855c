"""What the GPU training scripts share: float16 copies of snapshots and one archive of the run's small files (the
device machine returns at most eight files of 16 MiB)."""

from __future__ import annotations

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
