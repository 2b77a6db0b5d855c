"""Human-study kit: study folders, the widget form driven by clicks, durable response files, resume after a
killed kernel, locking, corrupted files, simulated participants and the analysis tables, and the notebook."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest

import deidkit.study as ds
from deidkit.data.images import load_image
from deidkit.study.participants import participant_file


def _lfw_images() -> Path:
    # Real LFW photos, found the kit's way ($DEIDKIT_DATA, $DEIDKIT_SHARED, ../shared).
    from deidkit.data.lfw import DataNotFoundError, lfw_root

    try:
        return lfw_root() / "images"
    except DataNotFoundError:
        return Path("/nonexistent/lfw/images")


LFW = _lfw_images()
IDENTITIES = ["Ariel_Sharon", "Colin_Powell", "Tony_Blair", "Gerhard_Schroeder"]
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_human_study_form.ipynb"


class CvBlur:
    """A tiny de-identifier for the tests: Gaussian blur of the whole crop."""

    name = "blur_test"

    def deidentify(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([cv2.GaussianBlur(x, (0, 0), 6) for x in batch])


def _face(identity: str, k: int, size: int = 80) -> np.ndarray:
    img = load_image(LFW / identity / f"{identity}_{k:04d}.jpg")
    return cv2.resize(img[60:190, 60:190], (size, size), interpolation=cv2.INTER_AREA)


def _head(identity: str, k: int, size: int = ds.STIMULUS_PX) -> np.ndarray:
    """The study's own stimulus: the canonical crop warped from the LFW photo straight to ``size`` px."""
    from deidkit.data.lfw import aligned_crops

    return aligned_crops([f"images/{identity}/{identity}_{k:04d}.jpg"], size=size)[0]


def small(px: int) -> dict[str, int]:
    """Display sizes for the small test faces (a study refuses stimuli narrower than their display size)."""
    return {"stimulus_px": px, "pair_px": px, "gallery_px": px}


@pytest.fixture(scope="module")
def base_study(tmp_path_factory: pytest.TempPathFactory) -> ds.Study:
    if not LFW.is_dir():
        pytest.fail(f"LFW not found at {LFW} (set DEIDKIT_SHARED)")
    subjects = [ds.Subject(i, _face(i, 1), [_face(i, 2)], origin={"gallery": f"lfw:{i}_0001"}) for i in IDENTITIES]
    design = ds.StudyDesign(name="test_study", tasks=("identification", "real_vs_modified", "similarity"),
                            gallery_size=3, attention_checks=1, seed=3, **small(80))
    return ds.build_study_from_images(tmp_path_factory.mktemp("base") / "study", subjects, [CvBlur()], design)


@pytest.fixture
def study(base_study: ds.Study, tmp_path: Path) -> ds.Study:
    """A fresh copy per test (the export path is exercised every time)."""
    return ds.export_study(base_study, tmp_path / "study")


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def start(form: ds.StudyForm, participant: str) -> None:
    form.participant_box.value = participant
    form.consent_box.value = True
    form.start_button.click()


def answer(form: ds.StudyForm, n: int | None = None, choose=lambda form: 0) -> int:
    given = 0
    while form.screen == "trial" and (n is None or given < n):
        form.choice_buttons[choose(form)].click()
        given += 1
    return given


# ----------------------------------------------------------------------------------------------- study folders

def test_study_folder_is_self_contained_and_verified(base_study: ds.Study, study: ds.Study, tmp_path: Path) -> None:
    assert study.study_id == base_study.study_id and study.folder != base_study.folder
    m = study.stimuli
    # 4 gallery + 4 probes x (original, blur)
    assert len(m) == 12 and set(m["role"]) == {"gallery", "probe"}
    assert set(m["condition"]) == {"original", "blur_test"}
    assert all(Path(f).name.startswith("s") and "blur" not in f for f in m["file"])  # names do not give it away
    s = study.summary().set_index(["task", "condition"])["trials"]
    assert s[("identification", "original")] == 4 and s[("identification", "blur_test")] == 4
    assert s[("real_vs_modified", "blur_test")] == 4 and s[("similarity", "blur_test")] == 4
    assert s[("identification", "attention")] == 1
    for t in study.trials:
        if t.task == "identification":
            assert len(t.candidates) == 3 and t.correct in t.choices
            assert [study.stimuli.loc[c, "identity"] for c in t.candidates] == list(t.choices)
    # Tampering with a stimulus is caught, naming the file.
    victim = study.folder / m["file"].iloc[0]
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ds.StudyError, match=m["file"].iloc[0].split("/")[-1]):
        ds.load_study(study.folder)
    with pytest.raises(ds.StudyError, match="already exists"):
        ds.export_study(base_study, study.folder)


def test_build_is_deterministic_and_checks_its_input(tmp_path: Path) -> None:
    if not LFW.is_dir():
        pytest.fail(f"LFW not found at {LFW} (set DEIDKIT_SHARED)")
    subjects = [ds.Subject(i, _face(i, 1, 48), [_face(i, 2, 48)]) for i in IDENTITIES[:3]]
    a = ds.build_study_from_images(tmp_path / "a", subjects, [CvBlur()], ds.StudyDesign(seed=5, **small(48)))
    b = ds.build_study_from_images(tmp_path / "b", subjects, [CvBlur()], ds.StudyDesign(seed=5, **small(48)))
    assert a.study_id == b.study_id and [t.to_dict() for t in a.trials] == [t.to_dict() for t in b.trials]
    with pytest.raises(ds.StudyError, match="already exists"):
        ds.build_study_from_images(tmp_path / "a", subjects, [CvBlur()])

    class Broken:
        name = "broken"

        def deidentify(self, batch: np.ndarray) -> np.ndarray:
            return batch[:, ::2]

    with pytest.raises(ds.StudyError, match="broken"):
        ds.build_study_from_images(tmp_path / "c", subjects, [Broken()])
    bad = pd.DataFrame([{"file": str(tmp_path / "nope.png"), "identity": "x", "role": "probe",
                         "condition": "original", "source": "x"}])
    with pytest.raises(ds.StudyError, match="without a gallery"):
        ds.build_study(tmp_path / "d", bad)
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_plan_is_seeded_per_participant_and_counterbalanced(study: ds.Study) -> None:
    p1, p1b, p2 = study.plan("p01"), study.plan("p01"), study.plan("p02")
    assert p1 == p1b and p1.seed != p2.seed
    for plan in (p1, p2):
        trials = [study.trial(t) for t in plan.order]
        main = [t for t in trials if t.task != "similarity" and not t.attention]
        conds_per_source: dict[str, set[str]] = {}
        for t in main:
            conds_per_source.setdefault(t.source, set()).add(t.condition)
        assert all(len(c) == 1 for c in conds_per_source.values())  # one condition per source photo
        assert len(conds_per_source) == 4 and sum(t.attention for t in trials) == 1
        sims = [t for t in trials if t.task == "similarity"]
        assert trials[len(trials) - len(sims):] == sims  # originals revealed only at the end
        assert {(t.source, t.condition) for t in sims} == {
            (s, next(iter(c))) for s, c in conds_per_source.items() if c != {"original"}}
        assert all(sorted(plan.candidates[t.trial_id]) == sorted(t.candidates) for t in trials if t.candidates)


# ----------------------------------------------------------------------------------------------- the form

def test_full_session_writes_every_answer(study: ds.Study) -> None:
    form = ds.StudyForm(study)
    assert form.screen == "consent" and "Participant id" in form.snapshot_html()
    form.participant_box.value = "P07"
    form.start_button.click()
    assert form.screen == "consent" and "consent" in form.error  # consent not ticked
    form.consent_box.value = True
    form.start_button.click()
    assert form.screen == "instructions" and form.participant == "p07"
    form.begin_button.click()
    n = form.n_trials
    path = participant_file(study.responses_dir, "p07")
    for k in range(1, n + 1):
        assert form.screen == "trial" and form.progress_label.value == f"Trial {k} of {n}"
        trial = form.current_trial
        assert "<img" in form.snapshot_html()
        if trial.task == "identification":
            assert len(form.choice_buttons) == len(trial.candidates)
        value = form.choice_values[-1]
        form.choice_buttons[-1].click()
        last = [r for r in lines(path) if r["event"] == "response"][-1]  # on disk at once
        assert last["event"] == "response" and last["trial"] == trial.trial_id and last["answer"] == value
    assert form.screen == "finish" and f"All {n} of {n}" in form.snapshot_html()
    recs = lines(path)
    assert [r["event"] for r in recs] == ["session"] + ["response"] * n + ["complete"]
    resp = [r for r in recs if r["event"] == "response"]
    for r in resp:
        for key in ("participant", "trial", "stimulus", "answer", "correct_answer", "response_time_s", "timestamp"):
            assert key in r
        assert r["participant"] == "p07" and r["response_time_s"] >= 0 and r["order_seed"] == study.plan("p07").seed
    assert [r["trial"] for r in resp] == list(study.plan("p07").order)
    rs = ds.load_responses(study, strict=True)
    assert len(rs.responses) == n and rs.problems.empty
    assert rs.participants.set_index("participant").loc["p07", "completed"]
    # The lock was released at the end: the participant can be opened again (and is told it is complete).
    again = ds.StudyForm(study)
    start(again, "p07")
    assert again.screen == "finish" and len(lines(path)) == len(recs) + 1  # one more session line, no answers


def test_double_click_and_failed_write_lose_nothing(study: ds.Study) -> None:
    form = ds.StudyForm(study)
    start(form, "p01")
    form.begin_button.click()
    first = form.choice_buttons[0]
    first.click()
    first.click()  # a late second click on the previous trial's button
    assert len(form.answered) == 1
    # A failing disk: the answer is refused, the trial stays on screen, nothing is recorded.
    trial = form.current_trial

    def broken(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    good = form.writer._write
    form.writer._write = broken
    form.choice_buttons[0].click()
    assert form.current_trial == trial and "could NOT be saved" in form.error and len(form.answered) == 1
    form.writer._write = good
    form.choice_buttons[0].click()
    assert len(form.answered) == 2 and form.error == ""
    rs = ds.load_responses(study, strict=True)
    assert len(rs.responses) == 2


KILLED_SESSION = textwrap.dedent("""
    import os, sys
    import deidkit.study as ds
    study = ds.load_study(sys.argv[1])
    form = ds.StudyForm(study, sys.argv[2])
    form.consent_box.value = True
    form.start_button.click()
    form.begin_button.click()
    for _ in range(int(sys.argv[3])):
        form.choice_buttons[0].click()
    print("READY", flush=True)
    sys.stdin.readline()  # hold the session open until killed
""")


def test_killed_session_resumes_at_first_unanswered_trial(study: ds.Study) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SESSION, str(study.folder), "p03", "3"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        # While that session lives, the same participant cannot open a second one.
        other = ds.StudyForm(study)
        start(other, "p03")
        assert other.screen == "consent" and "already has a live session" in other.error
    finally:
        proc.kill()  # SIGKILL: no cleanup, as when a kernel dies
        proc.wait(timeout=10)
    path = participant_file(study.responses_dir, "p03")
    assert sum(r["event"] == "response" for r in lines(path)) == 3
    form = ds.StudyForm(study)
    start(form, "p03")
    assert form.screen == "instructions" and "Welcome back" in form.snapshot_html()
    form.begin_button.click()
    plan = study.plan("p03")
    n = len(plan.order)
    assert form.progress_label.value == f"Trial 4 of {n}" and form.current_trial.trial_id == plan.order[3]
    answer(form)
    assert form.screen == "finish"
    rs = ds.load_responses(study, strict=True)
    assert list(rs.responses["trial"]) == list(plan.order)
    assert list(rs.sessions["resumed_at"]) == [0, 3]


def test_two_participants_never_share_a_file(study: ds.Study) -> None:
    a, b = ds.StudyForm(study), ds.StudyForm(study)
    start(a, "pa")
    start(b, "pb")
    a.begin_button.click()
    b.begin_button.click()
    while a.screen == "trial" or b.screen == "trial":  # interleaved clicks
        for f in (a, b):
            if f.screen == "trial":
                f.choice_buttons[0].click()
    for pid in ("pa", "pb"):
        recs = lines(participant_file(study.responses_dir, pid))
        assert {r["participant"] for r in recs} == {pid}
        assert [r["trial"] for r in recs if r["event"] == "response"] == list(study.plan(pid).order)
    assert study.plan("pa").order != study.plan("pb").order
    rs = ds.load_responses(study, strict=True)
    assert rs.responses.groupby("participant").size().to_dict() == {"pa": a.n_trials, "pb": b.n_trials}


def test_participant_ids_are_checked(study: ds.Study) -> None:
    for bad in ("", "../etc", "a b", "x" * 65, "é"):
        form = ds.StudyForm(study)
        start(form, bad)
        assert form.screen == "consent" and "not valid" in form.error
    form = ds.StudyForm(study)
    start(form, "sim-001")
    assert "reserved for simulations" in form.error
    assert ds.normalize_participant_id(" P-01_a ") == "p-01_a"
    assert not any(study.responses_dir.glob("*.jsonl"))


def test_corrupted_lines_are_reported_not_merged(study: ds.Study) -> None:
    form = ds.StudyForm(study)
    start(form, "p05")
    form.begin_button.click()
    answer(form, 3)
    form.close()
    path = participant_file(study.responses_dir, "p05")
    recs = lines(path)
    dup = dict(recs[1], answer=recs[1]["answer"])  # a second copy of the first answer
    foreign = dict(recs[2], participant="p06")
    with open(path, "a") as f:
        f.write("this is not json\n")
        f.write(json.dumps(dup) + "\n")
        f.write(json.dumps(foreign) + "\n")
        f.write('{"event": "response", "participant": "p05", "tri')  # cut short by a crash, no newline
    rs = ds.load_responses(study)
    probs = rs.problems
    assert len(probs) == 4 and set(probs["line"]) == {5, 6, 7, 8}
    text = " | ".join(probs["problem"])
    assert "not JSON" in text and "duplicate answer" in text and "belongs to participant 'p06'" in text
    assert "cut short" in text
    assert len(rs.responses) == 3 and not rs.responses["trial"].duplicated().any()
    with pytest.raises(ds.ResponseFileError, match="duplicate"):
        ds.load_responses(study, strict=True)
    # Resuming appends after the cut line (on a line of its own) and asks only the unanswered trials.
    form = ds.StudyForm(study)
    start(form, "p05")
    assert len(form.notices) == 4
    form.begin_button.click()
    assert form.progress_label.value.startswith("Trial 4 of")
    answer(form)
    rs = ds.load_responses(study)
    assert len(rs.responses) == form.n_trials and len(rs.problems) == 4
    assert list(rs.responses["trial"]) == list(study.plan("p05").order)


def test_same_kernel_rerun_replaces_the_old_form(study: ds.Study) -> None:
    old = ds.StudyForm(study)
    start(old, "p09")
    old.begin_button.click()
    answer(old, 1)
    new = ds.StudyForm(study)
    start(new, "p09")  # a re-run cell: the old form is closed, not left writing
    assert new.screen == "instructions"
    old.choice_buttons[0].click()
    assert "could NOT be saved" in old.error and len(old.answered) == 1
    new.begin_button.click()
    answer(new)
    assert len(ds.load_responses(study, strict=True).responses) == new.n_trials


def test_video_stimuli_are_shown_as_video(tmp_path: Path) -> None:
    if not LFW.is_dir():
        pytest.fail(f"LFW not found at {LFW} (set DEIDKIT_SHARED)")
    rows = []
    for i, ident in enumerate(IDENTITIES[:2]):
        g = tmp_path / f"g{i}.png"
        cv2.imwrite(str(g), cv2.cvtColor(_face(ident, 1, 64), cv2.COLOR_RGB2BGR))
        rows.append({"file": str(g), "identity": ident, "role": "gallery", "condition": "original", "source": f"g{i}"})
        for cond, frame in (("original", _face(ident, 2, 64)), ("blur_test", CvBlur().deidentify(_face(ident, 2, 64)[None])[0])):
            v = tmp_path / f"v{i}_{cond}.mp4"
            w = cv2.VideoWriter(str(v), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
            for _ in range(5):
                w.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            w.release()
            rows.append({"file": str(v), "identity": ident, "role": "probe", "condition": cond, "source": f"v{i}"})
    st = ds.build_study(tmp_path / "vstudy", pd.DataFrame(rows),
                        ds.StudyDesign(tasks=("real_vs_modified",), attention_checks=0, **small(64)))
    assert set(st.stimuli["kind"]) == {"image", "video"}
    form = ds.StudyForm(st)
    start(form, "v01")
    form.begin_button.click()
    video = next(w for w in form.body.children if isinstance(w, widgets.Video))
    assert video.layout.width == video.layout.min_width == "64px"
    assert "<video" in form.snapshot_html()
    # Video frames narrower than the display size are refused like images.
    with pytest.raises(ds.StudyError, match="64x64 px shown 256 px wide"):
        ds.build_study(tmp_path / "vbig", pd.DataFrame(rows), ds.StudyDesign(tasks=("real_vs_modified",),
                                                                            attention_checks=0))


# ----------------------------------------------------------------------------------------------- stimulus size

def _images(w: widgets.Widget) -> list[widgets.Image]:
    """The images of a widget tree in page order."""
    if isinstance(w, widgets.Image):
        return [w]
    return [i for c in getattr(w, "children", ()) for i in _images(c)]


def _css_px(value: str) -> int:
    assert value.endswith("px"), value
    return int(value[:-2])


def test_form_shows_each_stimulus_at_the_study_size(tmp_path: Path) -> None:
    """Every face is laid out at the design's size (>= 256 px for the face a real-or-modified question and a
    similarity rating are about), with a fixed width that cannot shrink, from image data at least that wide."""
    import re
    from io import BytesIO

    from PIL import Image

    if not LFW.is_dir():
        pytest.fail(f"LFW not found at {LFW} (set DEIDKIT_SHARED)")
    design = ds.StudyDesign(tasks=ds.TASKS, gallery_size=3, attention_checks=1)
    assert design.stimulus_px >= 256 and design.pair_px >= 256 and design.gallery_px >= 192  # the defaults
    subjects = [ds.Subject(i, _head(i, 1), [_head(i, 2)]) for i in IDENTITIES[:3]]
    st = ds.build_study_from_images(tmp_path / "s", subjects, [CvBlur()], design)
    form = ds.StudyForm(st)
    start(form, "p01")
    form.begin_button.click()
    seen: set[str] = set()
    while form.screen == "trial":
        trial = form.current_trial
        seen.add(trial.task)
        imgs = _images(form.body)
        css = [_css_px(i.layout.width) for i in imgs]
        assert [i.layout.min_width for i in imgs] == [i.layout.width for i in imgs]  # cannot shrink
        for img, px in zip(imgs, css):
            with Image.open(BytesIO(bytes(img.value))) as im:
                assert min(im.size) >= px, (trial.task, im.size, px)  # never enlarged by the browser
        if trial.task == "real_vs_modified":
            assert css == [design.stimulus_px]
        elif trial.task == "similarity":
            assert css == [design.pair_px] * 2
        else:
            assert css == [design.stimulus_px] + [design.gallery_px] * len(trial.candidates)
        # The static snapshot (reports) shows the same sizes.
        shown = [int(w) for w in re.findall(r"<img [^>]*style='width:(\d+)px;min-width:\1px", form.snapshot_html())]
        assert shown == css
        form.choice_buttons[0].click()
    assert seen == set(ds.TASKS) and form.screen == "finish"
    # Stimuli narrower than their display size are refused when the study is built.
    tiny = [ds.Subject(i, _face(i, 1, 120), [_face(i, 2, 120)]) for i in IDENTITIES[:3]]
    with pytest.raises(ds.StudyError, match="120x120 px shown 256 px wide"):
        ds.build_study_from_images(tmp_path / "tiny", tiny, [CvBlur()], design)
    assert not (tmp_path / "tiny").exists()


def test_display_sizes_are_design_values() -> None:
    from deidkit.study.trial_screen import FORM_MAX_PX, gallery_columns

    cfg = ds.StudyConfig.profile("quick", stimulus_px=320)
    d = cfg.design()
    assert (d.stimulus_px, d.pair_px, d.gallery_px) == (320, ds.PAIR_PX, ds.GALLERY_PX)
    with pytest.raises(ds.StudyError, match="stimulus_px"):
        ds.StudyDesign(stimulus_px=0)
    # A study built before the sizes were named (one image_width) loads with the sizes it was shown at.
    old = ds.StudyDesign.from_dict({"image_width": 160, "tasks": ["real_vs_modified"]})
    assert (old.stimulus_px, old.pair_px, old.gallery_px) == (240, 208, 160)
    # Five candidates beside the probe: two rows (3 + 2) within the form's width.
    cols = gallery_columns(5, ds.STIMULUS_PX, ds.GALLERY_PX)
    assert cols == 3 and ds.STIMULUS_PX + cols * (ds.GALLERY_PX + 16) + 16 <= FORM_MAX_PX


# ----------------------------------------------------------------------------------------------- analysis

def test_simulated_participants_feed_the_analysis(study: ds.Study, tmp_path: Path) -> None:
    sim = ds.fresh_simulation(study)
    ids = ds.simulate_participants(sim, 5, {"original": 1.0, "default": 0.0, "similarity": 0.5}, seed=1)
    assert ids == [f"sim-{i:03d}" for i in range(1, 6)] and not any(study.responses_dir.glob("*.jsonl"))
    rs = ds.load_responses(sim, strict=True)
    assert rs.simulated and rs.responses["simulated"].all() and len(rs.participants) == 5
    assert rs.participants["completed"].all()
    assert rs.responses["response_time_s"].between(0.2, 30).all()  # drawn by the simulated clock

    real = ds.success_rates(rs, "real_vs_modified", study.conditions).set_index("condition")
    assert list(real.index) == ["original", "blur_test"] and (real["data"] == "SIMULATED").all()
    assert real.loc["original", "mean"] == 1.0 and real.loc["original", "sd"] == 0.0
    assert real.loc["blur_test", "mean"] == 0.0
    assert real["n_participants"].tolist() == [5, 5] and real["n_answers"].sum() == 5 * 4
    cm = ds.identification_confusion(rs, "original")
    assert list(cm.index) == list(cm.columns) == sorted(IDENTITIES)
    shown = cm.dropna()  # identities whose original some participant saw (counterbalancing)
    assert len(shown) >= 2 and all(shown.loc[i, i] == 1.0 and shown.loc[i].sum() == 1.0 for i in shown.index)
    deid = ds.identification_confusion(rs, "deidentified").dropna()
    assert len(deid) >= 2 and all(deid.loc[i, i] == 0.0 for i in deid.index)
    assert ds.attention_summary(rs)["pass_rate"].eq(1.0).all()
    assert ds.similarity_ratings(rs)["mean"].between(1, 5).all()
    fig = ds.plot_identification_confusions(rs)
    assert len(fig.axes) >= 2 and "SIMULATED" in fig._suptitle.get_text()

    missing = ds.human_vs_machine(rs, tmp_path / "none.json", "lfw_57x8", study.conditions)
    assert "not found" in missing.attrs["note"] and not any(c.startswith("rank1") for c in missing.columns)
    metrics = [
        {"kind": "identification", "protocol": "lfw_57x8", "deidentifier": "original", "recognizer": "dlib",
         "rank1_mean": 0.97},
        {"kind": "identification", "protocol": "lfw_57x8", "deidentifier": "blur_test", "recognizer": "dlib",
         "rank1_mean": 0.12},
        {"kind": "identification", "protocol": "lfw_217x8", "deidentifier": "blur_test", "recognizer": "dlib",
         "rank1_mean": 0.5},
        {"kind": "verification", "protocol": "lfw_pairs", "deidentifier": "blur_test", "recognizer": "dlib"},
    ]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    table = ds.human_vs_machine(rs, tmp_path / "metrics.json", "lfw_57x8", study.conditions).set_index("condition")
    assert table.loc["original", "human_rate"] == 1.0 and table.loc["blur_test", "human_rate"] == 0.0
    assert table.loc["original", "rank1 dlib"] == 0.97 and table.loc["blur_test", "rank1 dlib"] == 0.12
    assert table.loc["original", "chance"] == pytest.approx(1 / 3)
    # A completed participant who comes back is told so and adds no answer.
    form = ds.StudyForm(sim, simulated=True)
    start(form, "sim-001")
    assert form.screen == "finish" and len(ds.load_responses(sim).responses) == len(rs.responses)
    with pytest.raises(FileExistsError):
        (sim.responses_dir / "notes.txt").write_text("x")
        ds.fresh_simulation(study)


def test_default_lfw_study(tmp_path: Path) -> None:
    from deidkit import baselines

    st = ds.build_lfw_study(tmp_path / "lfw", [baselines.get_deidentifier("blur_sigma8")], n_identities=3,
                            probes_per_identity=1)
    assert st.info["protocol"] == "lfw_57x8" and st.stimuli["origin"].str.startswith("lfw:").all()
    assert set(st.conditions) == {"original", "blur_sigma8"} and st.stimuli["identity"].nunique() == 3
    # Crops are made from the photos at the largest display size, not enlarged from smaller ones.
    assert st.info["size"] == max(st.design.stimulus_px, st.design.pair_px, st.design.gallery_px) >= 256
    assert {load_image(st.stimulus_path(s)).shape for s in st.stimuli["stimulus_id"]} == {(256, 256, 3)}


# ----------------------------------------------------------------------------------------------- the notebook

def run_study_notebook(tmp_path: Path) -> None:
    """Execute notebook 06 headless on a tiny study (simulated participants, analysis, static form)."""
    import papermill as pm

    subjects = [ds.Subject(i, _face(i, 1, 64), [_face(i, 2, 64)]) for i in IDENTITIES[:3]]
    design = ds.StudyDesign(tasks=("identification", "real_vs_modified", "similarity"), gallery_size=3,
                            attention_checks=1, **small(64))
    st = ds.build_study_from_images(tmp_path / "tiny_study", subjects, [CvBlur()], design)
    (tmp_path / "metrics.json").write_text(json.dumps([
        {"kind": "identification", "protocol": "lfw_57x8", "deidentifier": "blur_test", "recognizer": "dlib",
         "rank1_mean": 0.25}]))
    out = tmp_path / "06_out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
                        parameters={"profile": "tiny", "study_dir": str(st.folder),
                                    "metrics_path": str(tmp_path / "metrics.json")})
    nb = json.loads(out.read_text())
    text = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert "SIMULATED" in text and "First screen (static snapshot)" in text and "Trial 1 of" in text
    assert "rank1 dlib" in text and "no problems in the response files" in text
    assert len(list((st.folder / "simulated_responses").glob("sim-*.jsonl"))) == 3
    assert not any((st.folder / "responses").glob("*.jsonl"))
    assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.notebooks
def test_notebook_runs_headless(tmp_path: Path) -> None:
    if not LFW.is_dir():
        pytest.fail(f"LFW not found at {LFW} (set DEIDKIT_SHARED)")
    run_study_notebook(tmp_path)


@pytest.mark.notebooks
def test_notebook_under_voila_shows_only_the_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As Voila runs it (its kernel sees SERVER_SOFTWARE=voila/...): no simulation, no analysis, no writes."""
    import papermill as pm

    if not LFW.is_dir():
        pytest.fail(f"LFW not found at {LFW} (set DEIDKIT_SHARED)")
    subjects = [ds.Subject(i, _face(i, 1, 48), [_face(i, 2, 48)]) for i in IDENTITIES[:2]]
    st = ds.build_study_from_images(tmp_path / "s", subjects, [CvBlur()], ds.StudyDesign(**small(48)))
    monkeypatch.setenv("SERVER_SOFTWARE", "voila/0.5")
    monkeypatch.setenv("QUERY_STRING", "participant=p42")
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
                        parameters={"study_dir": str(st.folder)})
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    assert len(outputs) == 1 and "application/vnd.jupyter.widget-view+json" in outputs[0]["data"]
    assert not (st.folder / "simulated_responses").exists() and not any(st.responses_dir.iterdir())


def test_notebook_is_stored_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])
