"""Reading and writing videos: header checks, frames as RGB arrays, H.264 output through ffmpeg with the audio kept.

Decoding uses OpenCV (it returns the frames actually stored, without the duplicates a constant-rate re-timing would
add); encoding pipes raw frames into the ``ffmpeg`` binary of the ``imageio-ffmpeg`` wheel (H.264), which also
copies the input's audio track, shifted so that it stays in sync. The output is written under a temporary name
beside ``OUT`` and renamed only when complete: an interrupted or failed run leaves no file under ``OUT``'s name.
Unreadable, truncated, zero-frame and undecodable videos raise :class:`VideoError` naming the file.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

#: Container suffixes whose muxers take a copied AAC/MP3 track; others get the audio re-encoded to AAC.
_COPY_AUDIO = {".mp4": {"aac", "mp3", "alac", "ac3"}, ".m4v": {"aac", "mp3", "alac", "ac3"},
               ".mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le"}, ".mkv": None}


class VideoError(RuntimeError):
    """A video cannot be read or written; the message names the file and the problem."""



# ------------------------------------------------------------------------------------------------- ffmpeg


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped in the ``imageio-ffmpeg`` wheel (no system ffmpeg needed)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise VideoError("the 'imageio-ffmpeg' package is needed to write videos: pip install imageio-ffmpeg") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class VideoInfo:
    """What a video holds, from ffmpeg's header parse and OpenCV's decoder."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    codec: str
    video_start: float
    audio_codec: str | None
    audio_start: float = 0.0

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


def _ffmpeg_header(path: Path) -> str:
    try:
        res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                             timeout=60, errors="replace")
    except subprocess.TimeoutExpired:
        raise VideoError(f"{path}: ffmpeg timed out reading the header; the file is unreadable") from None
    return res.stderr


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header; raises :class:`VideoError` naming the file when it is missing, empty, not a video,
    truncated (index missing), has no video stream or a codec this build cannot decode."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    header = _ffmpeg_header(path)
    with open(path, "rb") as f:
        head = f.read(12)
    looks_mp4 = head[4:8] in (b"ftyp", b"mdat", b"moov", b"free", b"wide", b"skip")
    if "moov atom not found" in header and looks_mp4:
        raise VideoError(f"{path}: truncated or incomplete video (its MP4 index, the 'moov' atom, is missing: "
                         "the recording or download was probably cut off)")
    if "Invalid data found when processing input" in header or "Input #0" not in header:
        last = header.strip().splitlines()[-1] if header.strip() else "no output"
        raise VideoError(f"{path}: not a readable video file ({last})")
    vline = next((ln for ln in header.splitlines() if re.search(r"Stream #\d+:\d+.*: Video:", ln)), None)
    if vline is None:
        raise VideoError(f"{path}: no video stream (audio-only or not a video)")
    codec = re.search(r"Video: (\w+)", vline).group(1)
    aline = next((ln for ln in header.splitlines() if re.search(r"Stream #\d+:\d+.*: Audio:", ln)), None)
    audio = re.search(r"Audio: (\w+)", aline).group(1) if aline else None
    m = re.search(r"start (-?[\d.]+)", vline)
    start = float(m.group(1)) if m else 0.0
    ma = re.search(r"start (-?[\d.]+)", aline) if aline else None
    audio_start = float(ma.group(1)) if ma else start

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: video codec '{codec}' cannot be decoded by this OpenCV build "
                             "(unsupported codec); convert it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise VideoError(f"{path}: video stream has no frame size; the file is corrupt")
    if not np.isfinite(fps) or fps <= 0:
        fps = 25.0  # a stream without a declared rate: ffmpeg's own default
    return VideoInfo(str(path), w, h, fps, n, codec, start, audio, audio_start)


class VideoReader:
    """Frames of a video as RGB uint8 arrays. Use as a context manager; iterate :meth:`frames`.

    After the last frame, a video that gave no frame at all, or clearly fewer than its container declares,
    raises :class:`VideoError` (truncated or corrupt) instead of ending quietly."""

    def __init__(self, path: str | os.PathLike, strict: bool = True) -> None:
        self.info = probe_video(path)
        self.path = Path(path)
        self.strict = strict
        self.frames_read = 0
        self._cap: cv2.VideoCapture | None = None

    width = property(lambda self: self.info.width)
    height = property(lambda self: self.info.height)
    fps = property(lambda self: self.info.fps)
    frame_count = property(lambda self: self.info.frame_count)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def frames(self, max_frames: int | None = None) -> Iterator[np.ndarray]:
        self.close()
        self._cap = cv2.VideoCapture(str(self.path))
        self.frames_read = 0
        while max_frames is None or self.frames_read < max_frames:
            ok, bgr = self._cap.read()
            if not ok:
                break
            self.frames_read += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.close()
        if self.frames_read == 0:
            raise VideoError(f"{self.path}: zero frames could be decoded (codec '{self.info.codec}'); the video is "
                             "empty, truncated or uses a codec this OpenCV build cannot decode")
        declared = self.info.frame_count
        complete = max_frames is not None and self.frames_read >= max_frames
        if self.strict and not complete and declared > 0 and self.frames_read < declared - max(2, declared // 100):
            raise VideoError(f"{self.path}: decoded {self.frames_read} of the {declared} frames its container "
                             "declares; the file is truncated or corrupt")


def open_video(path: str | os.PathLike, strict: bool = True) -> VideoReader:
    """A :class:`VideoReader` for ``path`` (checked at once: missing, unreadable or undecodable files raise)."""
    return VideoReader(path, strict=strict)


def read_frames(path: str | os.PathLike, indices: list[int]) -> dict[int, np.ndarray]:
    """The frames at ``indices`` (0-based) of a video, as ``{index: RGB frame}``; decodes up to the last one."""
    wanted = set(indices)
    if not wanted:
        return {}
    if min(wanted) < 0:
        raise ValueError(f"frame indices must be >= 0, got {sorted(wanted)}")
    with open_video(path, strict=False) as video:
        got = {i: f for i, f in enumerate(video.frames(max(wanted) + 1)) if i in wanted}
    missing = sorted(wanted - got.keys())
    if missing:
        raise VideoError(f"{path}: has only {video.frames_read} frames; frames {missing} do not exist")
    return got



def _partial_path(out: Path) -> Path:
    return out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")


class VideoWriter:
    """H.264 video written through an ffmpeg pipe to a temporary file, renamed to ``out`` by :meth:`commit`.

    ``audio_from``: a video whose first audio track is copied (or re-encoded to AAC where the container needs it),
    kept in sync with the frames: where the input's sound starts before its first picture (the Hamilton clip:
    0.84 s), that lead-in is cut so both streams start together; where the picture starts first, the sound is
    delayed by the difference. ``audio_seconds`` limits the sound to the frames actually written.
    Leaving the context without :meth:`commit` (an exception, Ctrl-C) deletes the temporary file."""

    def __init__(self, out: str | os.PathLike, width: int, height: int, fps: float,
                 audio_from: VideoInfo | None = None, crf: int = 18, preset: str = "veryfast",
                 audio_seconds: float | None = None) -> None:
        self.out = Path(out)
        if self.out.suffix.lower() not in {".mp4", ".m4v", ".mov", ".mkv", ".avi"}:
            raise VideoError(f"{self.out}: unsupported output container '{self.out.suffix}' "
                             "(use .mp4, .m4v, .mov, .mkv or .avi)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _partial_path(self.out)
        self.width, self.height = width, height
        rate = Fraction(fps).limit_denominator(1001)
        cmd = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", f"{rate.numerator}/{rate.denominator}"]
        self.audio = "none in input"
        cmd += ["-i", "pipe:0"]
        if audio_from is not None and audio_from.has_audio:
            allowed = _COPY_AUDIO.get(self.out.suffix.lower(), set())
            copy = allowed is None or audio_from.audio_codec in allowed
            lead = audio_from.video_start - audio_from.audio_start
            if lead > 0:  # sound before the first picture: start the sound at the first picture
                cmd += ["-ss", f"{lead:.6f}"]
            elif lead < 0:  # picture first: delay the sound
                cmd += ["-itsoffset", f"{-lead:.6f}"]
            if audio_seconds is not None:  # a run cut short keeps only the matching stretch of sound
                cmd += ["-t", f"{audio_seconds:.6f}"]
            cmd += ["-i", audio_from.path, "-map", "0:v:0", "-map", "1:a:0",
                    *(["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "160k"])]
            self.audio = f"kept ({audio_from.audio_codec}, {'copied' if copy else 're-encoded to aac'})"
        else:
            cmd += ["-map", "0:v:0"]
        # yuv420p needs even sides; pad by one pixel where needed rather than fail.
        cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        if self.out.suffix.lower() in {".mp4", ".m4v", ".mov"}:
            cmd += ["-movflags", "+faststart"]
        cmd += [str(self.tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.frames_written = 0
        self.encoder_cpu_s = float("nan")
        self._done = False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if not self._done:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 ({self.height}, {self.width}, 3), got {frame.dtype} {frame.shape}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            err = self._proc.stderr.read().decode(errors="replace").strip()
            self.abort()
            raise VideoError(f"{self.out}: ffmpeg stopped while writing ({err or 'broken pipe'})") from None
        self.frames_written += 1

    def commit(self) -> Path:
        """Finish encoding and move the file to its name."""
        self._proc.stdin.close()
        err = self._proc.stderr.read().decode(errors="replace").strip()
        # wait4 reaps the encoder and reports its own CPU time (user + system)
        _, status, usage = os.wait4(self._proc.pid, 0)
        self._proc.returncode = rc = os.waitstatus_to_exitcode(status)
        self.encoder_cpu_s = usage.ru_utime + usage.ru_stime
        if rc != 0 or not self.tmp.is_file():
            self.abort()
            raise VideoError(f"{self.out}: ffmpeg failed (exit {rc}): {err}")
        os.replace(self.tmp, self.out)
        self._done = True
        return self.out

    def abort(self) -> None:
        """Stop ffmpeg and delete the temporary file (nothing is left under ``out``)."""
        self._done = True
        try:
            if self._proc.stdin and not self._proc.stdin.closed:
                self._proc.stdin.close()
        except OSError:
            pass
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self.tmp.unlink(missing_ok=True)


