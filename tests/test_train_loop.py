"""The shared training loop: checkpoints, resume after interruption, divergence detection."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deidkit.train.loop import (
    CHECKPOINT_NAME,
    TrainingDiverged,
    TrainingRun,
    load_checkpoint,
    load_module_state,
    rng_state,
    set_rng_state,
)

torch.set_num_threads(1)

X = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
Y = X @ torch.arange(1.0, 6.0) + 0.1


class Boom(RuntimeError):
    pass


def make_run(run_dir, seed=7, config=None):
    # Two modules and two optimisers, one of them with momentum state, to exercise the general case.
    torch.manual_seed(123)  # identical initial weights in every run; the loop's seed governs the rest
    enc = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.2), nn.ReLU())
    head = nn.Linear(8, 1)
    opts = {"enc": torch.optim.Adam(enc.parameters(), lr=1e-2), "head": torch.optim.SGD(head.parameters(), 1e-2, 0.9)}
    return TrainingRun(run_dir, {"enc": enc, "head": head}, opts, seed=seed, config=config, show_progress=False)


def make_step(run, fail_at_epoch=None, fail_at_batch=1):
    enc, head = run.modules["enc"], run.modules["head"]

    def step(batch, epoch, global_step):
        if epoch == fail_at_epoch and global_step % 4 == fail_at_batch:
            raise Boom("simulated crash")
        xb, yb = batch
        # numpy and python RNGs are consumed too, so their restoration is tested.
        noise = float(np.random.normal(0, 0.01)) + random.uniform(-0.01, 0.01)
        loss = ((head(enc(xb)).squeeze(1) - yb - noise) ** 2).mean()
        for o in run.optimizers.values():
            o.zero_grad()
        loss.backward()
        for o in run.optimizers.values():
            o.step()
        return {"loss": loss.item(), "noise": noise}

    return step


def make_loader(epoch):
    # Shuffling from torch's global RNG: correct resumption depends on the restored RNG state.
    perm = torch.randperm(len(X))
    return [(X[perm[i : i + 10]], Y[perm[i : i + 10]]) for i in range(0, len(X), 10)]


def weights(run):
    return {f"{m}.{k}": v.clone() for m, mod in run.modules.items() for k, v in mod.state_dict().items()}


def test_interrupted_run_resumes_to_identical_weights_and_log(tmp_path):
    ref = make_run(tmp_path / "ref")
    log_ref = ref.fit(make_loader, make_step(ref), epochs=4)
    assert len(log_ref) == 16 and list(log_ref.columns) == ["epoch", "step", "wall_s", "loss", "noise"]
    assert log_ref["step"].tolist() == list(range(16))

    run = make_run(tmp_path / "int")
    with pytest.raises(Boom):
        run.fit(make_loader, make_step(run, fail_at_epoch=2, fail_at_batch=1), epochs=4)
    # Crashed in epoch 2 after one logged step: checkpoint holds 2 epochs, log has 9 rows on disk.
    assert load_checkpoint(tmp_path / "int")["epoch"] == 2
    assert len(pd.read_csv(tmp_path / "int" / "log.csv")) == 9

    # A fresh process would rebuild everything: new modules with the same initial weights, disturbed RNG.
    torch.manual_seed(999), np.random.seed(999), random.seed(999)
    run2 = make_run(tmp_path / "int")
    log = run2.fit(make_loader, make_step(run2), epochs=4)

    for k, v in weights(ref).items():
        assert torch.equal(v, weights(run2)[k]), k
    cols = ["epoch", "step", "loss", "noise"]
    pd.testing.assert_frame_equal(log[cols], log_ref[cols])
    # The optimiser state (Adam moments, SGD momentum) was restored as well.
    o_ref, o_new = ref.optimizers["enc"].state_dict(), run2.optimizers["enc"].state_dict()
    for pid in o_ref["state"]:
        assert torch.equal(o_ref["state"][pid]["exp_avg"], o_new["state"][pid]["exp_avg"])


def test_checkpoint_every_epoch_and_weights_only(tmp_path):
    run = make_run(tmp_path)
    seen = []

    def loader(epoch):
        if epoch > 0:
            seen.append(torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["epoch"])
        return make_loader(epoch)

    run.fit(loader, make_step(run), epochs=3)
    assert seen == [1, 2]
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["global_step"] == 12
    assert set(ckpt["modules"]) == {"enc", "head"} and set(ckpt["optimizers"]) == {"enc", "head"}
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    fresh = nn.Linear(8, 1)
    load_module_state(tmp_path, "head", fresh)
    assert torch.equal(fresh.weight, run.modules["head"].weight)
    # Calling fit again on a finished run trains nothing; asking for more epochs continues.
    before = weights(run)
    assert len(run.fit(make_loader, make_step(run), epochs=3)) == 12
    assert all(torch.equal(v, weights(run)[k]) for k, v in before.items())
    assert len(run.fit(make_loader, make_step(run), epochs=4)) == 16


def test_rng_state_roundtrip_through_weights_only(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    a = (torch.rand(3), np.random.normal(size=3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    b = (torch.rand(3), np.random.normal(size=3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_nan_loss_raises_training_diverged(tmp_path):
    run = make_run(tmp_path)

    def step(batch, epoch, global_step):
        return {"l1": 0.5, "l2": float("nan") if global_step == 5 else 1.0}

    with pytest.raises(TrainingDiverged, match=r"step 5 \(epoch 1\).*\['l2'\].*l1=0.5"):
        run.fit(make_loader, step, epochs=3)
    assert load_checkpoint(tmp_path)["epoch"] == 1  # the diverged epoch was not checkpointed


def test_inf_loss_and_bad_step_output(tmp_path):
    run = make_run(tmp_path / "a")
    with pytest.raises(TrainingDiverged, match="inf"):
        run.fit(make_loader, lambda b, e, s: {"loss": float("inf")}, epochs=1)
    run = make_run(tmp_path / "b")
    with pytest.raises(TypeError, match="dict of floats"):
        run.fit(make_loader, lambda b, e, s: 1.0, epochs=1)


def test_config_recorded_and_mismatch_refused(tmp_path):
    run = make_run(tmp_path, config={"lr": 0.01, "sizes": (1, 2)})
    run.fit(make_loader, make_step(run), epochs=1)
    assert (tmp_path / "config.json").is_file()
    make_run(tmp_path, config={"lr": 0.01, "sizes": (1, 2)})  # same config resumes fine
    with pytest.raises(ValueError, match=r"different configuration.*\['lr'\]"):
        make_run(tmp_path, config={"lr": 0.02, "sizes": (1, 2)})
    # More epochs is a continuation of the same experiment, not a different one.
    make_run(tmp_path, config={"lr": 0.01, "sizes": (1, 2), "epochs": 5})
    # An option added to the configuration later, switched off, is what the run was trained with...
    make_run(tmp_path, config={"lr": 0.01, "sizes": (1, 2), "new_term_weight": 0.0, "new_flag": None})
    # ...switched on, it is a different experiment.
    with pytest.raises(ValueError, match=r"\['new_term_weight'\]"):
        make_run(tmp_path, config={"lr": 0.01, "sizes": (1, 2), "new_term_weight": 0.5})
    # an empty list or string added later (no extra layers, no starting point) is "off" too
    other = make_run(tmp_path / "b", config={"lr": 0.01})
    other.fit(make_loader, make_step(other), epochs=1)
    make_run(tmp_path / "b", config={"lr": 0.01, "new_layers": (), "new_init": ""})
    with pytest.raises(ValueError, match=r"\['new_layers'\]"):
        make_run(tmp_path / "b", config={"lr": 0.01, "new_layers": ("stage3",), "new_init": ""})
    # a run copied to another cache root: its critic's folder has another parent, the same name
    moved = make_run(tmp_path / "c", config={"lr": 0.01, "critic_dir": "/old/cache/runs/critic-quick"})
    moved.fit(make_loader, make_step(moved), epochs=1)
    make_run(tmp_path / "c", config={"lr": 0.01, "critic_dir": "/new/cache/runs/critic-quick"})
    with pytest.raises(ValueError, match=r"\['critic_dir'\]"):
        make_run(tmp_path / "c", config={"lr": 0.01, "critic_dir": "/new/cache/runs/critic-robust"})


def test_time_limit_stops_with_a_checkpoint_and_the_same_call_finishes_identically(tmp_path):
    """``run_limits(max_minutes)``: each call stops at the first step past the limit, mid-epoch included, with a
    checkpoint; calling again continues; the final weights and log equal an uninterrupted run's."""
    from deidkit.train.loop import run_limits

    ref = make_run(tmp_path / "ref")
    log_ref = ref.fit(make_loader, make_step(ref), epochs=3)
    calls = 0
    while True:
        calls += 1
        with run_limits(max_minutes=1e-9):  # spent at once: one step per call
            run = make_run(tmp_path / "chunks")
            log = run.fit(make_loader, make_step(run), epochs=3)
        if not run.stopped:
            break
        ckpt = load_checkpoint(tmp_path / "chunks")
        assert (ckpt["epoch"], ckpt["epoch_step"]) == divmod(ckpt["global_step"], 4)
        assert calls < 20
    assert calls == 12  # 3 epochs x 4 steps, one step per call
    assert all(torch.equal(a, b) for a, b in zip(weights(ref).values(), weights(run).values()))
    pd.testing.assert_frame_equal(log.drop(columns="wall_s"), log_ref.drop(columns="wall_s"))


def test_checkpoints_inside_an_epoch_lose_at_most_n_steps_on_a_crash(tmp_path):
    from deidkit.train.loop import RunLimits, run_limits

    ref = make_run(tmp_path / "ref")
    ref.fit(make_loader, make_step(ref), epochs=2)
    with run_limits(checkpoint_every=2):
        run = make_run(tmp_path / "crash")
        with pytest.raises(Boom):  # fails at the 4th step of epoch 1 (global step 7)
            run.fit(make_loader, make_step(run, fail_at_epoch=1, fail_at_batch=3), epochs=2)
        ckpt = load_checkpoint(tmp_path / "crash")
        assert (ckpt["epoch"], ckpt["epoch_step"], ckpt["global_step"]) == (1, 2, 6)
        run = make_run(tmp_path / "crash")
        run.fit(make_loader, make_step(run), epochs=2)
    assert all(torch.equal(a, b) for a, b in zip(weights(ref).values(), weights(run).values()))
    with pytest.raises(ValueError, match="max_minutes"):
        RunLimits(max_minutes=0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        RunLimits(checkpoint_every=0)


def test_train_command_stops_at_max_minutes_and_continues_to_the_same_weights(tmp_path):
    """``deidkit train live --profile tiny --max-minutes``: exit status 3 with a checkpoint until the run is done,
    then 0; the weights equal an uninterrupted run of the same command."""
    from deidkit.cli import EXIT_STOPPED, main

    assert main(["train", "live", "--profile", "tiny", "--run-dir", str(tmp_path / "ref"), "--threads", "1"]) == 0
    codes = []
    while len(codes) < 12:
        codes.append(main(["train", "live", "--profile", "tiny", "--run-dir", str(tmp_path / "chunks"),
                           "--threads", "1", "--max-minutes", "1e-9"]))
        if codes[-1] == 0:
            break
    assert codes[-1] == 0 and set(codes[:-1]) == {EXIT_STOPPED} and len(codes) >= 3
    a, b = load_checkpoint(tmp_path / "ref")["modules"], load_checkpoint(tmp_path / "chunks")["modules"]
    assert all(torch.equal(a[m][k], b[m][k]) for m in a for k in a[m])


def test_step_budget_stops_like_the_time_limit(tmp_path):
    from deidkit.train.loop import run_limits

    with run_limits(max_steps=5):
        run = make_run(tmp_path / "budget")
        run.fit(make_loader, make_step(run), epochs=3)
    assert run.stopped and load_checkpoint(tmp_path / "budget")["global_step"] == 5


def test_speed_options_worker_loader_and_training_benchmark(tmp_path):
    """The paper profiles' speed options: the worker loader gives every sample once per epoch, in an order fixed
    by (seed, epoch), split between processes; autocast is a no-op on the CPU; the benchmark times real steps."""
    from deidkit.configs import FaDeNetConfig
    from deidkit.train.distributed import Shard
    from deidkit.train.speed import WorkerBatches, autocast, benchmark_training

    imgs = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(12)

    def order(epoch, shard=None):
        return [int(v) for _, y in WorkerBatches(imgs, labels, 4, 7, epoch, workers=1, shard=shard) for v in y]

    assert sorted(order(0)) == list(range(12)) and order(0) == order(0) != order(1)
    halves = order(0, Shard(0, 2)) + order(0, Shard(1, 2))
    assert sorted(halves) == list(range(12))
    assert isinstance(autocast(True, torch.device("cpu")), type(autocast(False, torch.device("cpu"))))
    assert FaDeNetConfig.profile("paper").amp and not FaDeNetConfig.profile("quick").amp
    rec = benchmark_training("fadenet", "tiny", steps=1, overrides={"workers": 1})
    assert rec["kind"] == "train_speed" and rec["images_per_s"] > 0 and rec["world_size"] == 1


def test_a_second_process_training_the_same_run_waits_and_resumes_from_it(tmp_path, capfd):
    """Two trainers of one run folder (two notebooks, a notebook and a test): the second waits for the first's
    lock, then resumes from its finished checkpoint instead of training over it."""
    import threading
    import time

    first, second = make_run(tmp_path / "r"), make_run(tmp_path / "r")
    started, release = threading.Event(), threading.Event()
    first_step = make_step(first)

    def slow_step(batch, epoch, global_step):
        started.set()
        release.wait(10)
        return first_step(batch, epoch, global_step)

    a = threading.Thread(target=first.fit, args=(make_loader, slow_step, 2))
    a.start()
    assert started.wait(10)
    logs = []
    b = threading.Thread(target=lambda: logs.append(second.fit(make_loader, make_step(second), epochs=2)))
    b.start()
    time.sleep(0.5)
    assert b.is_alive()  # waiting for the first trainer, not training
    release.set()
    a.join(10)
    b.join(10)
    (log,) = logs
    assert log["step"].tolist() == list(range(8))  # every step once: the second trained none
    assert all(torch.equal(w1, w2) for w1, w2 in zip(weights(first).values(), weights(second).values()))
    assert "another process is training this run" in capfd.readouterr().err


def test_plan_epochs_fits_the_budget_in_whole_lambda_stages():
    from deidkit.train.speed import plan_epochs

    epochs, warm = plan_epochs(0.05, 0.025, 370.0, safety=1.0)
    assert (epochs - warm) % 4 == 0 and warm == epochs // 3
    assert 100 * (warm * 0.025 + (epochs - warm) * 0.05) <= 370.0
    bigger = plan_epochs(0.05, 0.025, 370.0 + 100 * 0.05 * 8, safety=1.0)[0]
    assert bigger > epochs  # more time, more epochs
    assert plan_epochs(0.05, 0.025, 370.0, safety=1.25)[0] < epochs
    assert plan_epochs(10.0, 10.0, 1.0) == (4, 0)  # too little time: the shortest schedule
