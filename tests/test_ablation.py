"""The lambda ablation: configuration hashing, the model cache (reuse, a changed configuration, divergence, an
interrupted run that resumes), record merging, privacy-utility curves, and the explorer widget driven from code.
One real training (the live model's tiny profile); everything else uses small stand-ins. Runs in well under a
minute."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from deidkit import ablation as A  # noqa: E402
from deidkit.train.loop import TrainingRun, load_checkpoint  # noqa: E402
from deidkit.widgets import LambdaExplorer, png_bytes  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture()
def runs(tmp_path, monkeypatch) -> Path:
    """Sweep models go to a temporary folder (the aligned-crop cache stays the user's)."""
    root = tmp_path / "runs"
    import deidkit.cache

    monkeypatch.setattr(deidkit.cache, "runs_root", lambda: root)
    return root


# ----------------------------------------------------------------------------------------------- hashing
def test_config_hash_is_stable_across_processes_and_key_order():
    payload = {"lam": 0.001, "sizes": (64, 128), "name": "x", "nested": {"b": None, "a": True}}
    code = ("from deidkit import ablation as A; "
            "print(A.config_hash({'nested': {'a': True, 'b': None}, 'name': 'x', 'sizes': [64, 128], 'lam': 1e-3}))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.strip()
    assert other == A.config_hash(payload) and len(other) == 12
    fade = A.FaDeNetSweep()
    a, b = (fade.payload(fade.make_config("tiny", 0.05, {})) for _ in range(2))
    assert a is not b and A.config_hash(a) == A.config_hash(b)


def test_config_hash_changes_with_what_is_trained_only():
    fade = A.FaDeNetSweep()

    def h(lam=0.05, **over):
        return A.config_hash(fade.payload(fade.make_config("tiny", lam, over)))

    base = h()
    assert h(0.1) != base  # lambda
    assert h(epochs=2) != base  # schedule
    assert h(critic_profile="quick") != base  # another critic is another model
    assert h(train_images=100) != base  # a subset of the training images
    assert h(device="cpu") == base and h(run_name="elsewhere") == base  # where, not what
    live = A.LiveSweep()
    lh = [A.config_hash(live.payload(live.make_config("tiny", lam, {}))) for lam in (0.0, 1.0)]
    assert lh[0] != lh[1]
    assert A.config_hash(live.payload(live.make_config("tiny", 0.0, {"device": "cpu"}))) == lh[0]
    assert A.run_dir_for("live", lh[0]).name == f"live-{lh[0]}"
    with pytest.raises(TypeError, match="cannot be hashed"):
        A.config_payload({"f": object()})
    with pytest.raises(ValueError, match="not finite"):
        A.config_hash({"lam": float("nan")})


# ------------------------------------------------------------------------------------------------ cache
@dataclass
class ToyConfig:
    lam: float = 0.0
    epochs: int = 2
    device: str = "cpu"


class ToySweep:
    """A two-weight model trained with the shared loop: enough to exercise the cache without real data."""

    name = "toy"

    def __init__(self) -> None:
        self.trained = 0
        self.diverge = False
        self.forbid = False

    def make_config(self, profile, lam, overrides):
        return ToyConfig(lam=lam, **overrides)

    def payload(self, config):
        return A.config_payload(config)

    def epochs(self, config):
        return config.epochs

    def _modules(self):
        net = nn.Linear(2, 1)
        return net, torch.optim.SGD(net.parameters(), lr=0.1)

    def train(self, config, run_dir, progress):
        if self.forbid:
            raise AssertionError("a cached model must not be trained again")
        self.trained += 1
        net, opt = self._modules()
        run = TrainingRun(run_dir, {"net": net}, {"sgd": opt}, seed=0, config=config, show_progress=False)
        x, y = torch.randn(8, 2), torch.randn(8, 1)

        def step(batch, epoch, global_step):
            loss = ((net(x) - y) ** 2).mean() + config.lam * net.weight.abs().sum()
            if self.diverge:
                loss = loss * float("inf")
            opt.zero_grad()
            loss.backward()
            opt.step()
            return {"loss": float(loss.detach())}

        run.fit(lambda epoch: range(3), step, config.epochs)

    def load(self, config, run_dir):
        net, _ = self._modules()
        net.load_state_dict(load_checkpoint(run_dir)["modules"]["net"])
        return net


def test_cache_reuses_a_finished_model_and_separates_configurations(runs):
    toy = ToySweep()
    first = A.ensure_model(toy, toy.make_config("x", 0.5, {}), 0.5, progress=False)
    assert first.status == "trained" and toy.trained == 1
    assert first.run_dir == runs / f"toy-{first.config_hash}" and first.name == "toy_lam0.5"
    meta = json.loads((first.run_dir / A.META_NAME).read_text())
    assert meta["status"] == "complete" and meta["payload"]["lam"] == 0.5 and meta["train_wall_s"] > 0

    toy.forbid = True
    again = A.ensure_model(toy, toy.make_config("x", 0.5, {"device": "cuda"}), 0.5, progress=False)
    assert again.status == "cached" and again.run_dir == first.run_dir
    weights = again.deidentifier().inner.weight.detach()
    assert torch.equal(weights, load_checkpoint(first.run_dir)["modules"]["net"]["weight"])

    toy.forbid = False
    other = A.ensure_model(toy, toy.make_config("x", 0.7, {}), 0.7, progress=False)
    assert other.status == "trained" and other.run_dir != first.run_dir and toy.trained == 2
    longer = A.ensure_model(toy, toy.make_config("x", 0.5, {"epochs": 3}), 0.5, progress=False)
    assert longer.run_dir not in (first.run_dir, other.run_dir)


def test_sweep_plan_and_train_sweep_with_an_injected_model(runs):
    toy = ToySweep()
    cfg = A.AblationConfig.profile("tiny")  # its FaDeNet slot is filled by the toy model
    plan = A.sweep_plan(cfg, {"fadenet": toy})
    assert plan["state"].tolist() == ["to train", "to train"] and plan["lambda"].tolist() == [0.0, 1.0]
    assert [p.status for p in A.train_sweep(cfg, {"fadenet": toy}, progress=False)] == ["trained"] * 2
    assert A.sweep_plan(cfg, {"fadenet": toy})["state"].tolist() == ["cached"] * 2
    assert [p.status for p in A.train_sweep(cfg, {"fadenet": toy}, progress=False)] == ["cached"] * 2
    assert toy.trained == 2


def test_diverged_point_is_remembered_not_retrained(runs):
    toy = ToySweep()
    toy.diverge = True
    cfg = toy.make_config("x", 1e6, {})
    p = A.ensure_model(toy, cfg, 1e6, progress=False)
    assert p.status == "diverged" and "non-finite" in p.error and not p.ok
    with pytest.raises(RuntimeError, match="no usable model"):
        p.deidentifier()
    again = A.ensure_model(toy, cfg, 1e6, progress=False)
    assert again.status == "diverged" and toy.trained == 1
    toy.diverge = False
    assert A.ensure_model(toy, cfg, 1e6, progress=False, retry_diverged=True).status == "trained"


def test_edited_metadata_is_refused(runs):
    toy = ToySweep()
    p = A.ensure_model(toy, toy.make_config("x", 0.5, {}), 0.5, progress=False)
    meta_path = p.run_dir / A.META_NAME
    meta = json.loads(meta_path.read_text())
    meta["payload"]["lam"] = 0.9
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="another configuration"):
        A.ensure_model(toy, toy.make_config("x", 0.5, {}), 0.5, progress=False)


class Interrupted(Exception):
    pass


def test_interrupted_live_training_resumes_where_it_stopped(runs, monkeypatch, crops_small):
    from deidkit.train import live as L

    live = A.LiveSweep(share_warmup=False)
    cfg = live.make_config("tiny", 1.0, {"device": "cpu", "epochs": 2, "epoch_steps": 2, "max_images": 8})
    steps: list[int] = []
    real_step = L.LiveTrainer.step

    stop_at = [2]

    def step(self, x, x_in, global_step, *args, **kwargs):
        if global_step in stop_at:
            raise Interrupted(f"stopped at step {global_step}")
        steps.append(global_step)
        return real_step(self, x, x_in, global_step, *args, **kwargs)

    monkeypatch.setattr(L.LiveTrainer, "step", step)
    with pytest.raises(Interrupted):
        A.ensure_model(live, cfg, 1.0, progress=False)
    run_dir = A.run_dir_for("live", A.config_hash(live.payload(cfg)))
    assert A.completed_epochs(run_dir) == 1 and steps == [0, 1]
    assert json.loads((run_dir / A.META_NAME).read_text())["status"] == "training"

    stop_at.clear()
    point = A.ensure_model(live, cfg, 1.0, progress=False)
    assert point.status == "trained" and point.run_dir == run_dir
    assert steps == [0, 1, 2, 3]  # the second call ran only the second epoch
    assert A.completed_epochs(run_dir) == 2
    log = pd.read_csv(run_dir / "log.csv")
    assert log["step"].tolist() == [0, 1, 2, 3]
    assert set(point.training_summary()) >= {"lambda", "cos_to_target"}

    monkeypatch.setattr(live, "train", lambda *a, **k: pytest.fail("retrained a finished run"))
    cached = A.ensure_model(live, cfg, 1.0, progress=False)
    assert cached.status == "cached"
    deid = cached.deidentifier()
    out = deid.deidentify(crops_small[:2])
    assert deid.name == "live_lam1" and out.shape == crops_small[:2].shape and out.dtype == np.uint8


# ------------------------------------------------------------------------------------------ configuration
def test_profiles_cover_the_requested_ranges():
    quick = A.AblationConfig.profile("quick")
    fl, ll = quick.lambdas("fadenet"), quick.lambdas("live")
    assert len(fl) >= 6 and fl[0] == 0.0 and fl[-1] >= 10 * 1e-3
    assert len(ll) >= 4 and ll[0] == 0.0 and ll[-1] > 1.0  # beyond the top of the paper's schedule
    tiny = A.AblationConfig.profile("tiny")
    assert len(tiny.lambdas("fadenet")) == 2 and len(tiny.lambdas("live")) == 2
    assert "dlib" not in tiny.recognizers and tiny.n_identities == 6
    over = A.AblationConfig.profile("tiny", live_lambdas=[0.0, 0.5], n_identities=None)
    assert over.live_lambdas == (0.0, 0.5) and over.n_identities == 6  # None means "profile default"
    points = A.sweep_configs(tiny)
    assert [(t.name, lam) for t, _, lam in points] == [("fadenet", 0.0), ("fadenet", 1.0), ("live", 0.0),
                                                        ("live", 4.0)]
    assert points[1][1].config.lam == 1.0 and points[3][1].lambda_max == 4.0
    with pytest.raises(ValueError, match="unknown ablation profile"):
        A.AblationConfig.profile("huge")
    with pytest.raises(ValueError, match="unknown AblationConfig fields"):
        A.AblationConfig.profile("tiny", lamda=1)
    with pytest.raises(ValueError, match=">= 0"):
        A.AblationConfig.profile("tiny", fadenet_lambdas=(-1.0, 0.0))


def test_describe_baseline_and_index_helpers():
    assert A.describe_baseline("blur_sigma8") == ("blur", 8.0)
    assert A.describe_baseline("pixelate_16px") == ("pixelate", 16.0)
    assert A.describe_baseline("noise_sigma32") == ("noise", 32.0)
    assert A.describe_baseline("blackbox") == ("blackbox", None)
    with pytest.raises(ValueError, match="not a baseline"):
        A.describe_baseline("fadenet_lam0.1")
    proto = pd.DataFrame({"identity": ["b", "b", "a", "a", "c", "c"], "path": list("123456"),
                          "rep0": ["probe", "gallery", "gallery", "probe", "probe", "probe"]})
    assert A.sample_indices(proto, 2).tolist() == [3, 0]  # identities a, b: their first probe
    assert A.landmark_indices(proto, None).tolist() == [0, 3, 4, 5]
    assert A.landmark_indices(proto, 2).tolist() == [0, 5]


# -------------------------------------------------------------------------------------- records and curves
def _bench_rows(deid: str, rec: str, rank1: float, ssim: float) -> list[dict]:
    return [
        {"kind": "identification", "protocol": "lfw_57x8", "n_identities": 57, "deidentifier": deid,
         "recognizer": rec, "rank1_mean": rank1, "rank1_std": 0.02, "rank5_mean": min(1.0, rank1 + 0.1),
         "rank5_std": 0.01, "ssim": ssim, "psnr": 20 + 10 * ssim, "ssim_face": ssim - 0.05,
         "psnr_face": 18.0, "detection_rate": 1.0, "repetitions": 5, "probes_per_rep": 228},
        {"kind": "deid_verification", "deidentifier": deid, "recognizer": rec, "tar_at_far": rank1 / 2,
         "far": 1e-3},
        {"kind": "true_identity_rank", "deidentifier": deid, "recognizer": rec, "median": 1 / max(rank1, 0.01),
         "mean": 2.0, "sd": 1.0, "gallery_size": 5749},
    ]


SYNTH = {  # name -> (model, lambda or strength, rank1, ssim)
    "original": ("original", None, 0.98, 1.0),
    "blur_sigma8": ("blur", 8.0, 0.3, 0.75),
    "blur_sigma2": ("blur", 2.0, 0.9, 0.95),
    "blur_sigma4": ("blur", 4.0, 0.7, 0.88),
    "blackbox": ("blackbox", None, 0.02, 0.5),
    "fadenet_lam0.1": ("fadenet", 0.1, 0.1, 0.8),
    "fadenet_lam0": ("fadenet", 0.0, 0.97, 0.99),
    "fadenet_lam0.01": ("fadenet", 0.01, 0.5, 0.93),
    "live_lam1": ("live", 1.0, 0.6, 0.85),
    "live_lam0": ("live", 0.0, 0.9, 0.86),
}


def synthetic_records() -> list[dict]:
    bench, info, marks = [], {}, {}
    for name, (model, order, rank1, ssim) in SYNTH.items():
        for rec in ("dlib", "mobilefacenet_ms1m"):
            bench += _bench_rows(name, rec, rank1, ssim)
        learned = model in A.MODELS
        info[name] = {"model": model, "lambda": order if learned else None, "strength": None if learned else order,
                      "baseline": not learned}
        marks[name] = {"landmark_px": 1 - ssim, "landmark_iod": (1 - ssim) / 10, "landmark_images": 8}
    records = A.build_records(bench, info, marks, ["dlib"], "tiny")
    records.append({"kind": "ablation", "status": "diverged", "model": "fadenet", "lambda": 5.0,
                    "deidentifier": "fadenet_lam5", "error": "non-finite"})
    return records


def test_build_records_merges_benchmark_rows():
    records = synthetic_records()
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 2 * len(SYNTH)
    r = next(r for r in ok if r["deidentifier"] == "fadenet_lam0.01" and r["recognizer"] == "dlib")
    assert r["model"] == "fadenet" and r["lambda"] == 0.01 and r["independent"] is True
    assert r["rank1_mean"] == 0.5 and r["tar_at_far"] == 0.25 and r["true_rank_median"] == 2.0
    assert r["landmark_iod"] == pytest.approx(0.007) and r["gallery_size"] == 5749
    m = next(r for r in ok if r["deidentifier"] == "fadenet_lam0.01" and r["recognizer"] == "mobilefacenet_ms1m")
    assert m["independent"] is False


def test_privacy_utility_curves_order_points_along_each_curve():
    table = pd.DataFrame(synthetic_records())
    curves = A.privacy_utility_curves(table, "dlib")
    assert "fadenet_lam5" not in set(curves["deidentifier"])  # the diverged point has no metrics
    assert curves["curve"].drop_duplicates().tolist()[:2] == ["fadenet", "live"]  # learned curves first
    fade = curves[curves["curve"] == "fadenet"]
    assert fade["order"].tolist() == [0.0, 0.01, 0.1] and fade["y"].tolist() == [0.97, 0.5, 0.1]
    assert fade["x"].tolist() == [0.99, 0.93, 0.8] and (fade["yerr"] == 0.02).all()
    blur = curves[curves["curve"] == "blur"]
    assert blur["order"].tolist() == [2.0, 4.0, 8.0] and blur["deidentifier"].tolist()[0] == "blur_sigma2"
    assert len(curves[curves["curve"] == "blackbox"]) == 1 and not curves["learned"][curves["curve"] == "blur"].any()
    psnr = A.privacy_utility_curves(table, "dlib", x="psnr", y="tar_at_far")
    assert psnr["yerr"].isna().all() and psnr["x"].max() == pytest.approx(30.0)
    with pytest.raises(KeyError, match="no rows for recogniser"):
        A.privacy_utility_curves(table, "vggface")

    trend = A.lambda_trend(table).set_index(["model", "recognizer"])
    assert trend.loc[("fadenet", "dlib"), "rank1_mean_spearman"] == pytest.approx(-1.0)
    assert trend.loc[("fadenet", "dlib"), "ssim_at_max_lambda"] == 0.8
    assert np.isnan(trend.loc[("live", "dlib"), "rank1_mean_spearman"])  # two points: no correlation

    comp = A.baseline_comparison(table, "dlib").set_index("deidentifier")
    # fadenet_lam0.1 (SSIM 0.8, Rank-1 0.1): blur_sigma2/4 keep more SSIM but leak more identity.
    assert comp.loc["fadenet_lam0.1", "baselines_with_higher_ssim"] == 2
    assert bool(comp.loc["fadenet_lam0.1", "beats_them_all"])
    # live_lam1 (0.85, 0.6): blur_sigma4 (0.88, 0.7) and blur_sigma2 leak more, so it beats them too;
    # fadenet_lam0 (0.99, 0.97): no baseline keeps that much of the image.
    assert comp.loc["fadenet_lam0", "baselines_with_higher_ssim"] == 0
    assert not bool(comp.loc["fadenet_lam0", "beats_them_all"])

    fig = A.curves_figure(table, ["dlib", "mobilefacenet_ms1m"], independent=["dlib"])
    assert len(fig.axes) == 2 and "not independent" in fig.axes[1].get_title()
    assert len(fig.axes[0].lines) >= 5  # one line per curve (error-bar caps add more)


# ------------------------------------------------------------------------------------------------ widget
def synthetic_result(size: int = 32) -> A.SweepResult:
    rng = np.random.default_rng(0)
    originals = rng.integers(0, 200, (3, size, size, 3), dtype=np.uint8)
    trained, samples = [], {}
    for model, lams in (("fadenet", (0.0, 0.5)), ("live", (1.0, 2.0, 3.0))):
        for k, lam in enumerate(lams):
            t = A.TrainedModel(model, lam, None, f"h{model}{k}", Path(f"/nonexistent/{model}-{k}"), "cached")
            trained.append(t)
            samples[t.name] = np.clip(originals.astype(int) + 10 * (k + 1) + (40 if model == "live" else 0),
                                      0, 255).astype(np.uint8)
    records = []
    for t in trained:
        for rec, indep in (("dlib", True), ("mobilefacenet_ms1m", False)):
            records.append({"kind": "ablation", "status": "ok", "model": t.model, "lambda": t.lam,
                            "deidentifier": t.name, "recognizer": rec, "independent": indep,
                            "rank1_mean": round(0.9 - 0.1 * t.lam - (0.05 if indep else 0), 4), "rank1_std": 0.01,
                            "true_rank_median": 1.0 + t.lam, "tar_at_far": 0.5, "ssim": 0.9 - 0.05 * t.lam,
                            "psnr": 30.0, "landmark_px": 0.5, "landmark_iod": 0.01})
    cfg = A.AblationConfig.profile("tiny")
    return A.SweepResult(cfg, trained, records, originals, ["a (0001)", "b (0002)", "c (0003)"], samples)


def _decode(png: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_explorer_updates_views_and_metrics_when_controls_change():
    res = synthetic_result()
    ex = LambdaExplorer(res)
    assert ex.state() == {"model": "fadenet", "lambda": 0.0, "image": 0} and ex.updates == 1
    assert np.array_equal(_decode(ex.views["output"].value), res.output("fadenet", 0.0)[0])

    ex.lam.value = 0.5  # what a user's slider move does
    assert ex.updates == 2
    assert np.array_equal(_decode(ex.views["output"].value), res.output("fadenet", 0.5)[0])
    assert np.array_equal(_decode(ex.views["original"].value), res.originals[0])
    diff = _decode(ex.views["difference"].value)
    assert np.array_equal(diff, np.full_like(diff, 80))  # |20| grey levels x gain 4
    assert "λ = 0.5" in ex.metrics.value and "0.800" in ex.metrics.value and "0.850" in ex.metrics.value
    table = ex.metrics_table()
    assert table["rank1_mean"].tolist() == [0.8, 0.85] and table["image_ssim"].iloc[0] < 1

    ex.image.value = 2
    assert np.array_equal(_decode(ex.views["output"].value), res.output("fadenet", 0.5)[2])
    assert "c (0003)" in ex.metrics.value

    n = ex.updates
    ex.model.value = "live"  # new slider range; 0.5 is not a live lambda: the slider moves to the first one
    assert ex.updates == n + 1  # one redraw, not one per slider event
    assert [v for _, v in ex.lam.options] == [1.0, 2.0, 3.0] and ex.lam.value == 1.0
    assert np.array_equal(_decode(ex.views["output"].value), res.output("live", 1.0)[2])
    ex.lam.value = 3.0
    assert "live, λ = 3" in ex.metrics.value and np.array_equal(_decode(ex.views["output"].value),
                                                                 res.output("live", 3.0)[2])
    shown = ex.widget.children[2].children[1].children[1]  # the layout holds the output view itself
    assert shown is ex.views["output"] and bytes(shown.value)[:4] == b"\x89PNG"


def test_explorer_static_figures_match_the_widget_content():
    res = synthetic_result()
    ex = LambdaExplorer(res, gain=2.0)
    fig = ex.static_figure("live", image=1)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3 * 3  # three lambdas x (original, output, difference)
    shown = image_axes[4].images[0].get_array()  # second row's output
    assert np.array_equal(np.asarray(shown), res.output("live", 2.0)[1])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("dlib: 0.65" in t for t in texts) and any("mobilefacenet_ms1m*" in t for t in texts)
    one = ex.figure("fadenet", 0.5, 0)
    assert len([ax for ax in one.axes if ax.images]) == 3
    seq = A.lambda_sequence_figure(res, "live", recognizer="dlib")
    assert len([ax for ax in seq.axes if ax.images]) == 3 * 4 and "λ=2" in seq.axes[2].get_title()
    assert png_bytes(res.originals[0])[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((4, 4, 3), np.float32))


def test_explorer_needs_evaluated_points():
    res = synthetic_result()
    empty = dataclasses.replace(res, trained=[], samples={})
    with pytest.raises(ValueError, match="no evaluated learned model"):
        LambdaExplorer(empty)


def test_shared_live_warmup_gives_the_same_model_as_training_from_scratch(runs, tmp_path, monkeypatch):
    from deidkit.train import live as L

    overrides = {"device": "cpu", "max_images": 8, "epochs": 3, "warmup_epochs": 2, "epoch_steps": 1}
    cfg = A.LiveSweep().make_config("tiny", 2.0, overrides)
    A.LiveSweep(share_warmup=False).train(cfg, tmp_path / "scratch", False)
    steps: list[int] = []
    real_step = L.LiveTrainer.step

    def step(self, x, x_in, global_step, *args, **kwargs):
        steps.append(global_step)
        return real_step(self, x, x_in, global_step, *args, **kwargs)

    monkeypatch.setattr(L.LiveTrainer, "step", step)
    shared = A.LiveSweep()
    shared.train(cfg, tmp_path / "shared", False)
    assert steps == [0, 1, 2]  # warm-up (lambda 0) in its own folder, then the point's lambda epoch
    assert shared.warmup_dir(cfg).parent == runs and A.completed_epochs(shared.warmup_dir(cfg)) == 2
    a, b = (load_checkpoint(tmp_path / d)["modules"] for d in ("scratch", "shared"))
    for net in ("generator", "discriminator"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    logs = [pd.read_csv(tmp_path / d / "log.csv").drop(columns="wall_s") for d in ("scratch", "shared")]
    pd.testing.assert_frame_equal(*logs)
    # another lambda starts from the same warm-up: only its own epoch is trained
    steps.clear()
    other = shared.make_config("tiny", 0.5, overrides)
    assert shared.warmup_dir(other) == shared.warmup_dir(cfg)
    shared.train(other, tmp_path / "other", False)
    assert steps == [2]


def test_fadenet_point_trains_on_a_seeded_subset(runs):
    fade = A.FaDeNetSweep()
    point = fade.make_config("tiny", 0.5, {"train_images": 10, "device": "cpu", "batch_size": 5})
    assert point.train_images == 10 and point.lam == 0.5 and point.config.lam == 0.5
    trained = A.ensure_model(fade, point, 0.5, progress=False)
    assert trained.status == "trained"
    log = pd.read_csv(trained.run_dir / "log.csv")
    assert len(log) == 2 and log["n"].sum() == 10  # one epoch over the 10 drawn images, batches of 5
    deid = trained.deidentifier()
    crops = np.zeros((2, 80, 80, 3), np.uint8)
    assert deid.name == "fadenet_lam0.5" and deid.deidentify(crops).shape == crops.shape


def test_subset_training_images_is_seeded_and_keeps_heldout():
    from deidkit.train.critic import IdentityData

    imgs = np.arange(10, dtype=np.uint8).repeat(4 * 4 * 3).reshape(10, 4, 4, 3)
    data = IdentityData(imgs, np.arange(10) % 3, imgs[:2], np.array([0, 1]), ["a", "b", "c"],
                        [f"p{i}" for i in range(10)], ["h0", "h1"])
    a, b = (A.subset_training_images(data, 4, seed=1) for _ in range(2))
    assert np.array_equal(a.train_images, b.train_images) and len(a.train_images) == 4
    assert [int(x[0, 0, 0]) for x in a.train_images] == [int(p[1:]) for p in a.train_paths]
    assert np.array_equal(a.train_labels, np.array([int(p[1:]) % 3 for p in a.train_paths]))
    assert a.heldout_images is data.heldout_images
    assert A.subset_training_images(data, None, 0) is data
    assert not np.array_equal(A.subset_training_images(data, 4, seed=2).train_paths, a.train_paths)
