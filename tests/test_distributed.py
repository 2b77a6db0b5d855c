"""torchrun + DistributedDataParallel on the CPU (gloo): a 2-process run of each model's tiny profile computes
what a 1-process run with the same global batch and seed computes, and an interrupted 2-process run resumes.

Tolerance: the logged loss terms agree to 1e-4 (relative) and the final weights to 1e-4 (absolute); the only
difference is the order in which gloo sums the two halves of each gradient."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from deidkit.checkpoints import load_checkpoint
from deidkit.cli import main

TORCHRUN = Path(sys.executable).with_name("torchrun")


def torchrun(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", "29517", "-m", "deidkit",
                           "train", *args, "--threads", "1"], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def logged(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "log.csv").drop(columns="wall_s")


def assert_same_run(a: Path, b: Path) -> None:
    la, lb = logged(a), logged(b)
    assert list(la.columns) == list(lb.columns) and len(la) == len(lb) > 0
    pd.testing.assert_frame_equal(la, lb, check_exact=False, rtol=1e-4, atol=1e-6)
    ma, mb = load_checkpoint(a)["modules"], load_checkpoint(b)["modules"]
    for m in ma:
        for k, v in ma[m].items():
            if v.is_floating_point():
                assert torch.allclose(v, mb[m][k], atol=1e-4), f"{m}.{k}"


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is installed with torch")
@pytest.mark.parametrize("model", ["critic", "fadenet", "live"])
def test_two_processes_compute_what_one_does(tmp_path, model):
    assert main(["train", model, "--profile", "tiny", "--run-dir", str(tmp_path / "one"), "--threads", "1"]) == 0
    torchrun(model, "--profile", "tiny", "--run-dir", str(tmp_path / "two"))
    assert_same_run(tmp_path / "one", tmp_path / "two")
    # rank 0 alone wrote: one log, one checkpoint, no temporary files left
    assert not list((tmp_path / "two").glob(".*tmp*"))


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is installed with torch")
def test_interrupted_two_process_run_resumes_to_the_same_weights(tmp_path):
    torchrun("live", "--profile", "tiny", "--run-dir", str(tmp_path / "whole"))
    # stopped after its first step with a checkpoint (under torchrun with status 0: torchrun reads any other as
    # a failure), then the plain command finishes it
    torchrun("live", "--profile", "tiny", "--run-dir", str(tmp_path / "cut"), "--max-minutes", "1e-9")
    assert load_checkpoint(tmp_path / "cut")["global_step"] == 1
    torchrun("live", "--profile", "tiny", "--run-dir", str(tmp_path / "cut"))
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    shutil.rmtree(tmp_path)


def test_a_batch_that_does_not_split_is_refused():
    from deidkit.train.distributed import Shard

    with pytest.raises(ValueError, match="split evenly over 3"):
        Shard(0, 3).check_batch(8)
    assert torch.equal(Shard(1, 2).take(torch.arange(6)), torch.tensor([3, 4, 5]))
    assert torch.equal(Shard(0, 1).take(torch.arange(3)), torch.arange(3))
