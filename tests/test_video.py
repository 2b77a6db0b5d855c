"""The video pipeline on a short clip cut from the Hamilton video, its error handling and atomic writes, and the
temporal/landmark evaluation helpers."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from deidkit.assets import asset_path
from deidkit.baselines import get_deidentifier
from deidkit.eval.temporal import landmark_displacement, temporal_stability
from deidkit.models.live import RecognizerFeatures
from deidkit.pipeline import (
    Dlib68,
    FaceSwapper,
    VideoError,
    VideoWriter,
    deidentify_image,
    deidentify_video,
    largest_face_window,
    make_face_detector,
    open_video,
    probe_video,
    read_frames,
)
from deidkit.pipeline.io import ffmpeg_exe
from deidkit.pipeline.swap import STAGES
from deidkit.train import live as T

torch.set_num_threads(1)
REFERENCE = asset_path("hamilton-clip").parent / "reference" / "lin-manuel-miranda.png"


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Nine frames (0.3 s, with audio) of the Hamilton clip, index at the front (faststart)."""
    out = tmp_path_factory.mktemp("video") / "clip.mp4"
    _ffmpeg("-ss", "1.0", "-i", str(asset_path("hamilton-clip")), "-t", "0.3", "-c:v", "libx264", "-preset",
            "ultrafast", "-crf", "18", "-c:a", "aac", "-movflags", "+faststart", str(out))
    return out


def _frames(path) -> list[np.ndarray]:
    with open_video(path) as v:
        return list(v.frames())


class _Recognizer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, 4, 1)
        self.fc = nn.Linear(4, 16)

    def forward_features(self, x):
        a = torch.relu(self.c(x))
        return {"dw_conv": a, "embedding": self.fc(a.mean((2, 3)))}


@pytest.fixture(scope="module")
def live_deid():
    """An untrained tiny live network (the pipeline's behaviour does not depend on training)."""
    torch.manual_seed(0)
    cfg = T.LiveConfig.profile("tiny", device="cpu")
    feats = RecognizerFeatures(_Recognizer(), torch.from_numpy(T.network_to_arcface(cfg)), cfg.size)
    gen = T.build_generator(cfg, cond_dim=16)
    return T.LiveDeidentifier(gen, feats, cfg.crop_fraction, name="live_test")


def test_video_pipeline_keeps_frames_audio_and_background(clip, live_deid, tmp_path):
    out = tmp_path / "out" / "deid.mp4"
    rep = deidentify_video(clip, out, live_deid, progress=False)
    src, dst = _frames(clip), _frames(out)
    assert rep.frames == len(src) == len(dst) == 9
    assert rep.frames_with_faces == 9 and rep.faces >= 9  # the singer and the pianist are found
    assert rep.frames_without_faces == 0
    assert set(rep.stage_s) == set(rep.stage_cpu_s) == set(STAGES) and all(v > 0 for v in rep.stage_s.values())
    assert rep.cpu_s > 0 and rep.encoder_cpu_s > 0 and rep.cpu_fps > 0
    assert rep.fps > 0 and rep.deidentifier == "live_test"
    info = probe_video(out)
    assert (info.width, info.height) == (640, 360) and info.audio_codec == "aac"
    assert rep.audio.startswith("kept")
    # faces changed, the rest of the frame kept (up to H.264 noise)
    det = FaceSwapper(live_deid, hull="none").detector
    boxes = det.detect(src[4])
    face = np.zeros(src[4].shape[:2], bool)
    for d in boxes:
        x0, y0, x1, y1 = d.box.astype(int)
        face[max(y0, 0):y1, max(x0, 0):x1] = True
    diff = np.abs(dst[4].astype(int) - src[4]).mean(axis=2)
    grown = cv2.dilate(face.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    assert diff[~grown].mean() < 3.0
    assert diff[face].mean() > 3 * diff[~grown].mean()


def test_baseline_and_target_image(clip, live_deid, tmp_path):
    rep = deidentify_video(clip, tmp_path / "box.mkv", get_deidentifier("blackbox"), max_frames=3, progress=False,
                           keep_audio=False)
    assert rep.frames == 3 and rep.audio.startswith("dropped")
    assert probe_video(tmp_path / "box.mkv").audio_codec is None
    # a target image conditions the live network; it changes the output compared with self-conditioning
    a = deidentify_video(clip, tmp_path / "self.mp4", live_deid, max_frames=2, progress=False)
    b = deidentify_video(clip, tmp_path / "target.mp4", live_deid, target=REFERENCE, max_frames=2, progress=False)
    assert a.frames == b.frames == 2
    assert np.abs(_frames(tmp_path / "self.mp4")[1].astype(int) - _frames(tmp_path / "target.mp4")[1]).max() > 10
    with pytest.raises(ValueError, match="takes no target"):
        deidentify_video(clip, tmp_path / "x.mp4", get_deidentifier("blackbox"), target=REFERENCE, progress=False)
    assert not (tmp_path / "x.mp4").exists()


def test_frames_without_faces_pass_unchanged_and_are_counted(live_deid, tmp_path):
    sw = FaceSwapper(live_deid)
    grey = np.full((120, 160, 3), 90, np.uint8)
    res = sw.process(grey)
    assert res.faces == 0 and res.frame is grey
    src = tmp_path / "empty_scene.mkv"
    rng = np.random.default_rng(0)
    with VideoWriter(src, 160, 120, 10.0) as w:
        for _ in range(4):
            w.write(cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 3))
        w.commit()
    rep = deidentify_video(src, tmp_path / "o.mkv", live_deid, progress=False)
    assert (rep.frames, rep.frames_without_faces, rep.faces) == (4, 4, 0)
    assert rep.audio == "none in input"


def test_truncated_video_gives_named_error_and_no_output(clip, live_deid, tmp_path):
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # index at the front, half of the frames gone
    out = tmp_path / "o.mp4"
    with pytest.raises(VideoError, match=r"cut\.mp4.*truncated"):
        deidentify_video(cut, out, live_deid, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == [cut]
    # the original clip keeps its index at the end: cutting it loses the index
    full = asset_path("hamilton-clip").read_bytes()
    cut2 = tmp_path / "cut2.mp4"
    cut2.write_bytes(full[: len(full) // 3])
    with pytest.raises(VideoError, match=r"cut2\.mp4: truncated"):
        probe_video(cut2)


def test_unreadable_inputs_give_named_errors(tmp_path, live_deid):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    audio = tmp_path / "sound.m4a"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.2", "-c:a", "aac", str(audio))
    for path, msg in [(empty, "empty file"), (text, "not a readable video"), (audio, "no video stream"),
                      (tmp_path / "missing.mp4", "no such video file")]:
        with pytest.raises(VideoError, match=msg) as err:
            deidentify_video(path, tmp_path / "o.mp4", live_deid, progress=False)
        assert str(path) in str(err.value)
    assert not (tmp_path / "o.mp4").exists()
    with pytest.raises(VideoError, match="unsupported output container"):
        VideoWriter(tmp_path / "o.gif", 64, 64, 10.0)


class _Exploding:
    name = "exploding"

    def __init__(self, after: int, exc: type[BaseException]) -> None:
        self.calls, self.after, self.exc = 0, after, exc

    def deidentify(self, batch):
        self.calls += 1
        if self.calls > self.after:
            raise self.exc("stopped mid-video")
        return batch


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_run_leaves_no_output_file(clip, tmp_path, exc):
    out = tmp_path / "out.mp4"
    with pytest.raises(exc):
        deidentify_video(clip, out, _Exploding(3, exc), hull="none", progress=False)
    assert list(tmp_path.iterdir()) == []  # neither OUT nor the temporary file


def test_image_command_and_cli(tmp_path):
    from deidkit.cli import main

    out = tmp_path / "img.png"
    assert main(["image", str(REFERENCE), str(out), "--method", "pixelate_16px"]) == 0
    src = cv2.cvtColor(cv2.imread(str(REFERENCE)), cv2.COLOR_BGR2RGB)
    res = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert res.shape == src.shape and np.abs(res.astype(int) - src).mean() > 1
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((64, 64, 3), 200, np.uint8))
    rep = deidentify_image(blank, tmp_path / "b2.png", get_deidentifier("blackbox"))
    assert rep.faces == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "b2.png")), cv2.imread(str(blank)))


def test_landmark_displacement_and_temporal_stability(clip, crops_small):
    pred = Dlib68()
    crops = crops_small[:4]
    same = landmark_displacement(crops, crops, pred)
    assert np.allclose(same["px"], 0)
    shifted = np.stack([cv2.warpAffine(c, np.float32([[1, 0, 6], [0, 1, 0]]), (224, 224),
                                       borderMode=cv2.BORDER_REFLECT101) for c in crops])
    moved = landmark_displacement(crops, shifted, pred)
    assert moved["px"].median() == pytest.approx(6, abs=2.5)  # the predictor follows a 6-pixel shift
    assert (moved["iod"] > 0).all()

    class Mean:  # a transparent "recogniser": the mean colour of the crop
        def embed(self, c):
            e = c.reshape(len(c), -1, 3).mean(1).astype(np.float64) + 1.0
            return e / np.linalg.norm(e, axis=1, keepdims=True)

    df, summary = temporal_stability(clip, clip, Mean(), progress=False)
    assert len(df) >= 7 and summary["pairs"] == len(df)
    assert np.allclose(df["pix_orig"], df["pix_deid"]) and np.allclose(df["id_orig_vs_deid"], 0, atol=1e-9)
    assert (df["pix_orig"] > 0).all()


def test_self_target_is_reused_along_tracks(clip, live_deid):
    class Counting:
        name = "live_counting"
        crop_size = live_deid.crop_size

        def __init__(self) -> None:
            self.n = 0

        def target_representation(self, crops):
            self.n += len(crops)
            return live_deid.target_representation(crops)

        def deidentify_with_mask(self, crops, targets=None):
            assert targets is not None and len(targets) == len(crops)
            return live_deid.deidentify_with_mask(crops, targets)

        def deidentify(self, crops):
            return live_deid.deidentify(crops)

    frames = _frames(clip)
    counts = {}
    for refresh in (1, 15):
        deid = Counting()
        sw = FaceSwapper(deid, hull="none", target_refresh=refresh)
        faces = sum(sw.process(f).faces for f in frames)
        counts[refresh] = (deid.n, faces)
    assert counts[1][0] == counts[1][1]  # every face of every frame embedded
    assert counts[15][0] < counts[1][0] / 3  # tracked faces reuse their representation


def test_mtcnn_detector_option(tmp_path):
    rep = deidentify_image(REFERENCE, tmp_path / "m.png", get_deidentifier("blur_sigma8"), detector="mtcnn")
    assert rep.faces == 1


def test_read_frames_and_largest_face_window(clip):
    allf = _frames(clip)
    got = read_frames(clip, [8, 0, 4])
    assert sorted(got) == [0, 4, 8] and all(np.array_equal(got[i], allf[i]) for i in got)
    with pytest.raises(VideoError, match="do not exist"):
        read_frames(clip, [2, len(allf) + 5])
    det = make_face_detector("yunet")
    frame = allf[0]
    face = max(det.detect(frame), key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    y0, y1, x0, x1 = largest_face_window(det, frame)
    # The window holds the whole face box and stays inside the frame.
    assert 0 <= y0 <= face.box[1] and face.box[3] <= y1 <= frame.shape[0]
    assert 0 <= x0 <= face.box[0] and face.box[2] <= x1 <= frame.shape[1]
    assert largest_face_window(det, np.full_like(frame, 90)) is None


def test_prefetch_thread_gives_the_same_video(clip, live_deid, tmp_path):
    """Decoding, detecting and aligning one frame ahead in a second thread changes the speed, not the output."""
    reps = {pf: deidentify_video(clip, tmp_path / f"pf{pf}.mp4", live_deid, progress=False, prefetch=pf)
            for pf in (False, True)}
    assert reps[True].prefetch and not reps[False].prefetch
    assert reps[True].faces == reps[False].faces > 0 and reps[True].frames == reps[False].frames
    a, b = _frames(tmp_path / "pfFalse.mp4"), _frames(tmp_path / "pfTrue.mp4")
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(v > 0 for v in reps[True].stage_s.values())
    assert "one frame ahead" in str(reps[True]) and "one frame ahead" not in str(reps[False])


def test_very_large_face_is_found_and_deidentified(tmp_path):
    """A phone-sized portrait (the face ~1,800 px wide) is de-identified, not published untouched."""
    from deidkit.data.alignment import make_detector
    from deidkit.data.images import load_image, save_image

    src = load_image(REFERENCE)
    big = cv2.resize(src, (4000, 4000), interpolation=cv2.INTER_CUBIC)
    assert make_detector("yunet").detect(big) == []  # the bare detector misses it
    dets = make_face_detector("yunet").detect(big)
    assert len(dets) == 1 and dets[0].box[2] - dets[0].box[0] > 1000
    save_image(tmp_path / "big.png", big)
    rep = deidentify_image(tmp_path / "big.png", tmp_path / "out.png", get_deidentifier("blackbox"))
    assert rep.faces == 1
    out = load_image(tmp_path / "out.png")
    x0, y0, x1, y1 = dets[0].box.astype(int)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    assert np.abs(out[cy - 100:cy + 100, cx - 100:cx + 100].astype(int) - big[cy - 100:cy + 100, cx - 100:cx + 100]
                  ).mean() > 30  # the face centre was replaced
    # a face of ordinary size in a small image is found exactly as by the bare detector
    small = make_face_detector("yunet").detect(src)
    assert len(small) == 1 and np.allclose(small[0].box, make_detector("yunet").detect(src)[0].box)


def test_a_missed_detection_is_bridged_by_the_last_alignment(clip):
    """The detector misses the face in frames 2-3 (and 5-10); the face stays de-identified for up to
    ``carry_frames`` frames, then the frame passes unchanged."""
    frames = _frames(clip)[:1] * 11

    class Flaky:
        name = "flaky"

        def __init__(self) -> None:
            self.inner, self.calls = make_face_detector("yunet"), 0

        def detect(self, image):
            self.calls += 1
            return self.inner.detect(image) if self.calls in (1, 4) else []

    sw = FaceSwapper(get_deidentifier("blackbox"), detector=Flaky(), hull="none", carry_frames=3)
    res = [sw.process(f) for f in frames]
    n = res[0].faces
    assert n >= 1
    assert [r.faces for r in res] == [n] * 7 + [0] * 4
    assert [r.carried for r in res] == [0, n, n, 0, n, n, n, 0, 0, 0, 0]
    assert np.array_equal(res[2].frame, res[0].frame)  # the carried face is replaced the same way
    assert np.array_equal(res[8].frame, frames[8])
    sw.reset()
    assert sw.process(frames[0]).faces == 0  # detector call 12 finds nothing and nothing is carried
    with pytest.raises(ValueError, match="carry_frames"):
        FaceSwapper(get_deidentifier("blackbox"), hull="none", carry_frames=-1)


def test_multiface_hd_benchmark_clip_and_record(tmp_path, monkeypatch):
    """The 1080p benchmark clip holds many real faces (tiles of the shared clip); a benchmark case gives a speed
    record with its per-stage times."""
    from deidkit.pipeline.benchmark import benchmark_video, multiface_hd_clip
    from deidkit.pipeline.faces import make_face_detector
    from deidkit.pipeline.io import read_frames

    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    clip = multiface_hd_clip(frames=3, progress=False)
    assert multiface_hd_clip(frames=3, progress=False) == clip  # built once
    frame = read_frames(clip, [0])[0]
    assert frame.shape == (1080, 1920, 3)
    assert len(make_face_detector("yunet").detect(frame)) >= 8
    (rec,) = benchmark_video(["video_1080p_blur_cpu"], max_frames=2, progress=False, hd_frames=3)
    assert rec["kind"] == "speed" and rec["unit"] == "frames/s" and rec["value"] > 0
    assert rec["frames"] == 2 and rec["faces_per_frame"] >= 8 and rec["resolution"] == "1920x1080"
    assert set(rec["stage_ms_per_frame"]) == {"decode", "detect", "align", "network", "blend", "encode"}
    # all of a frame's CPU (more than the stages this process times) and the bound it sets on the frame rate
    assert rec["cpu_ms_per_frame"] > sum(rec["stage_cpu_ms_per_frame"].values())
    assert rec["ceiling_fps"] == pytest.approx(rec["cpu_count"] * 1000 / rec["cpu_ms_per_frame"])
    (fast,) = benchmark_video(["video_1080p_blur_cpu"], max_frames=2, progress=False, hd_frames=3, detect_side=960)
    assert (fast["name"], fast["detect_side"], rec["detect_side"]) == ("video_1080p_blur_cpu_detect960", 960, 1280)
    with pytest.raises(ValueError, match="unknown video benchmark"):
        benchmark_video(["video_8k"])


def test_detection_side_trades_small_faces_for_speed(tmp_path):
    """``detect_side`` reaches the detector of every entry point, and a smaller side misses small faces: on a
    1080p canvas of 20-pixel LFW faces the full-resolution pass finds more than the 960-pixel one (measured 39
    and 18 of 40); 56-pixel faces are found at either side."""
    from deidkit.cli import main
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.pipeline.benchmark import detection_by_face_size
    from deidkit.pipeline.swap import FaceSwapper

    assert FaceSwapper(load_deidentifier("blur_sigma8"), detect_side=960).detector.max_side == 960
    assert FaceSwapper(load_deidentifier("blur_sigma8"), detect_side=None).detector.max_side is None
    recs = detection_by_face_size(sides=(1920, 960), widths=(20, 56), faces=12, progress=False)
    found = {(r["detect_side"], r["face_px"]): r["found"] for r in recs}
    assert all(r["faces"] == 12 and r["kind"] == "detection_by_size" for r in recs)
    assert found[(1920, 56)] == found[(960, 56)] == 12
    assert found[(1920, 20)] > found[(960, 20)]
    with pytest.raises(SystemExit) as exc:
        main(["image", "a.jpg", str(tmp_path / "b.jpg"), "--detect-side", "32"])
    assert exc.value.code == 2


def test_pipeline_threads_are_set_for_the_run_and_restored(clip, tmp_path):
    """With prefetch the pipeline runs two threads of its own, so torch and OpenCV get half the cores each during
    the run (on 2 cores one each: measured faster, see stage_threads) and their settings come back after it."""
    from deidkit.pipeline.video import default_stage_threads, stage_threads

    before = torch.get_num_threads(), cv2.getNumThreads()
    with stage_threads(1):
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before
    rep = deidentify_video(clip, tmp_path / "box.mp4", get_deidentifier("blackbox"), max_frames=2, progress=False)
    assert rep.threads == default_stage_threads() >= 1
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before
    seq = deidentify_video(clip, tmp_path / "seq.mp4", get_deidentifier("blackbox"), max_frames=2, progress=False,
                           prefetch=False)
    assert seq.threads is None  # one pipeline thread: the libraries keep their own settings


def test_alignment_in_either_thread_gives_the_same_frames(clip):
    """The video pipeline may align a frame's faces with its detection (prefetch thread) or with its network (main
    thread), whichever balances the two threads; the frames come out the same."""
    from deidkit.pipeline.video import align_where

    frames = _frames(clip)[:3]
    a, b = FaceSwapper(get_deidentifier("blur_sigma8")), FaceSwapper(get_deidentifier("blur_sigma8"))
    for f in frames:
        early = a.finish(a.prepare(f))
        late_prep = b.prepare(f, align=False)
        assert late_prep.detections and late_prep.crops is None
        late = b.finish(late_prep)
        assert early.faces == late.faces > 0 and np.array_equal(early.frame, late.frame)
    # stage times summed over 10 frames (ms): alignment goes where the busier thread gets less
    def wall(**kw):
        return {**dict.fromkeys(("decode", "detect", "align", "network", "blend", "encode"), 0.0), **kw}

    blur_ahead, blur_main = wall(decode=50, detect=850), wall(network=250, blend=150, encode=60, align=250)
    assert align_where(blur_ahead, blur_main, 10) is False  # detection is the bottleneck: align beside the blur
    live_ahead, live_main = wall(decode=60, detect=960, align=200), wall(network=1300, blend=160, encode=65)
    assert align_where(live_ahead, live_main, 10) is True  # the network is: align beside the detection


def test_video_frames_figure_shows_both_videos_and_the_face(clip, tmp_path):
    """The notebooks' before/after video figure: one row per frame, original | de-identified | the face of both."""
    from deidkit.deidentifiers import load_deidentifier
    from deidkit.plots import video_frames_figure

    out = tmp_path / "blur.mp4"
    deidentify_video(clip, out, load_deidentifier("blur_sigma8"), max_frames=3, progress=False)
    fig = video_frames_figure(clip, out, [0, 2], "blur")
    axes = fig.axes
    assert len(axes) == 6 and axes[1].get_title() == "blur"
    face = axes[2].get_images()[0].get_array()
    assert face.shape[0] % 2 == 0  # the original's face window above the output's
    top, bottom = np.split(np.asarray(face), 2)
    assert top.shape == bottom.shape and not np.array_equal(top, bottom)  # the face was blurred
