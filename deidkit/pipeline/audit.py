"""Did any face slip through? Compare originals with their de-identified versions, face by face.

Every face of the original (found by two detectors, YuNet and MTCNN, each at any face size, merged) is aligned with
its five landmarks; the same alignment cuts the face out of the output, so a face the de-identifier missed is
compared exactly where it was. Per face (and frame, for videos):

* ``pixel_change``: mean absolute change (0-255) of the aligned face; below ``untouched_px`` the face is flagged
  ``untouched`` (the worst leak: published as it was);
* ``similarity``: cosine between a recogniser's embeddings of the original and the output face; at or above the
  recogniser's LFW verification threshold at FAR = 1e-3 (the score above which only one in a thousand pairs of
  different people lands) the face is flagged ``identity``: a recogniser would still match it to the person;
* ``detected_in_output``: whether MTCNN, a detector the pipeline does not use, finds a face there in the output
  (informative: a de-identified face should still look like a face).

The thresholds of the published recogniser weights ship with the kit (:data:`SHIPPED_THRESHOLDS`, keyed by the
weights' sha256 and written by ``deidkit audit --calibrate-thresholds``), so an audit on a new machine starts at
once. Other weights (a user's own) are calibrated on LFW's View-2 pairs on first use (minutes) and cached.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from deidkit.pipeline.faces import box_iou, make_face_detector, merge_detections

#: the false accept rate whose LFW threshold flags a face as still identifiable
AUDIT_FAR = 1e-3
CROP = 224
#: The audit thresholds shipped with the package: one entry per recogniser and weights sha256, with the calibration
#: it came from. Written by ``deidkit audit --calibrate-thresholds`` (:func:`write_shipped_thresholds`).
SHIPPED_THRESHOLDS = Path(__file__).with_name("audit_thresholds.json")


@dataclass
class AuditRow:
    original: str
    output: str
    frame: int
    face: int
    box: str
    pixel_change: float
    similarity: float
    threshold: float
    detected_in_output: bool
    flag: str  # "" | "untouched" | "identity"


# ------------------------------------------------------------------------------------------------ thresholds


def recognizer_identity(recognizer: Any) -> dict[str, Any]:
    """What a threshold belongs to: the recogniser's name, the sha256 of its weights and the options that change its
    embeddings (the mirror image's features, dlib's jittering)."""
    # via the embeddings module, an upward import docs/architecture.md already lists (provenance would be a new one)
    from deidkit.eval.embeddings import recognizer_weights_sha256

    return {"recognizer": recognizer.name, "weights_sha256": recognizer_weights_sha256(recognizer),
            "flip": bool(getattr(recognizer, "flip", False)), "num_jitters": int(getattr(recognizer, "num_jitters", 0))}


def shipped_threshold(recognizer: Any, far: float = AUDIT_FAR, path: str | os.PathLike | None = None) -> dict | None:
    """The shipped entry (threshold and its calibration) for ``recognizer``'s weights at ``far``, or None when the
    file has none for them (other weights, options or FAR). A file that cannot be read raises a one-line error."""
    path = Path(SHIPPED_THRESHOLDS if path is None else path)
    if not path.is_file():
        return None
    entries = _read_entries(path)
    want = recognizer_identity(recognizer)
    if want["weights_sha256"] is None:  # weights the kit cannot checksum are never taken for the published ones
        return None
    for e in entries:
        if all(e.get(k) == v for k, v in want.items()) and abs(e.get("far", -1) - far) <= 1e-12:
            return e
    return None


def _read_entries(path: Path) -> list[dict]:
    try:
        entries = json.loads(path.read_text())["thresholds"]
        if not isinstance(entries, list):
            raise TypeError("'thresholds' is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not an audit thresholds file ({type(exc).__name__}: {exc})") from None
    return entries


def pair_scores(recognizer: Any, pairs: Any) -> np.ndarray:
    """Cosine scores of ``recognizer`` on LFW ``pairs`` (:class:`deidkit.data.protocols.LFWPairs`), each image
    aligned as the kit's LFW crops are (YuNet, MTCNN where it finds none; 224 px); crops and embeddings cached."""
    from deidkit.data.lfw import aligned_crops
    from deidkit.eval.embeddings import embed_cached
    from deidkit.eval.verification import cosine_scores

    paths = pairs.unique_paths()
    emb = embed_cached(recognizer, aligned_crops([f"images/{p}" for p in paths], size=CROP), desc="LFW pairs")
    index = {p: i for i, p in enumerate(paths)}
    return cosine_scores(emb[[index[p] for p in pairs.left]], emb[[index[p] for p in pairs.right]])


def calibrate_threshold(recognizer: Any, far: float = AUDIT_FAR, pairs: Any = None) -> dict[str, Any]:
    """Calibrate ``recognizer``'s audit threshold on LFW's View-2 pairs (``pairs``: another
    :class:`~deidkit.data.protocols.LFWPairs`): the lowest cosine whose false accept rate is at most ``far``, with
    what it was measured on and how the recogniser does there. Minutes on a new machine: every pair image is
    aligned and embedded (both cached)."""
    from deidkit.assets import sha256_file
    from deidkit.data.lfw import AlignmentKey
    from deidkit.data.protocols import parse_pairs
    from deidkit.eval.verification import kfold_accuracy, threshold_at_far

    pairs = parse_pairs() if pairs is None else pairs
    start = time.perf_counter()
    scores = pair_scores(recognizer, pairs)
    same = np.asarray(pairs.same, bool)
    threshold = threshold_at_far(scores, same, far)
    accepted = scores >= threshold  # the audit's rule: flagged at or above the threshold
    kfold = kfold_accuracy(scores, same, pairs.fold) if len(np.unique(pairs.fold)) > 1 else None
    return {
        **recognizer_identity(recognizer),
        "far": far,
        "threshold": round(threshold, 6),
        "calibration": {
            "protocol": f"LFW View-2 pairs ({len(np.unique(pairs.fold))} folds)",
            "pairs_file": Path(pairs.source).name if pairs.source else None,
            "pairs_sha256": sha256_file(pairs.source) if pairs.source and Path(pairs.source).is_file() else None,
            "matched_pairs": int(same.sum()),
            "mismatched_pairs": int((~same).sum()),
            "images": len(pairs.unique_paths()),
            "alignment": AlignmentKey("yunet", CROP).tag,
            "false_accepts": int((accepted & ~same).sum()),
            "false_accept_rate": round(float((accepted & ~same).sum() / max((~same).sum(), 1)), 6),
            "true_accept_rate": round(float((accepted & same).sum() / max(same.sum(), 1)), 6),
            "accuracy_at_threshold": round(float((accepted == same).mean()), 6),
            "accuracy_10fold": round(kfold.mean, 6) if kfold else None,
            "accuracy_10fold_std": round(kfold.std, 6) if kfold else None,
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "commit": _kit_commit(),
            "seconds": round(time.perf_counter() - start, 1),
        },
    }


def _kit_commit() -> str | None:
    # as deidkit.eval.provenance.git_commit gives it; importing that would be a new upward import of the pipeline
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_shipped_thresholds(recognizers: list[str] | None = None, path: str | os.PathLike | None = None,
                             far: float = AUDIT_FAR, say: Callable[[str], object] = print) -> Path:
    """Calibrate the published weights of ``recognizers`` (default: every one the kit has) afresh and write their
    entries into the shipped thresholds file (other entries kept). A maintainer's command: minutes to an hour
    (dlib embeds the 7,701 pair images slowly)."""
    from deidkit.recognizers import RECOGNIZERS, get_recognizer

    path = Path(SHIPPED_THRESHOLDS if path is None else path)
    names = list(recognizers or RECOGNIZERS)
    unknown = [n for n in names if n not in RECOGNIZERS]
    if unknown:
        raise ValueError(f"unknown recogniser {unknown[0]!r}; choose from {', '.join(RECOGNIZERS)}")
    old = _read_entries(path) if path.is_file() else []
    fresh = []
    for name in names:
        entry = calibrate_threshold(get_recognizer(name), far)
        c = entry["calibration"]
        say(f"{name}: threshold {entry['threshold']:.4f} at FAR {far:g} ({c['false_accepts']} of "
            f"{c['mismatched_pairs']} mismatched pairs accepted, TAR {c['true_accept_rate']:.4f}, 10-fold accuracy "
            f"{c['accuracy_10fold']}; {c['seconds']:.0f} s)")
        fresh.append(entry)
    replaced = {(e["recognizer"], e["far"]) for e in fresh}
    kept = [e for e in old if (e.get("recognizer"), e.get("far")) not in replaced]
    doc = {"about": "deidkit audit: each recogniser's cosine threshold at a false accept rate on LFW, for its "
                    "published weights (sha256). Written by `deidkit audit --calibrate-thresholds`; other weights "
                    "are calibrated on first use.",
           "thresholds": sorted(kept + fresh, key=lambda e: (e["recognizer"], e["far"]))}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def verification_threshold(recognizer: Any, far: float = AUDIT_FAR, recalibrate: bool = False) -> float:
    """The cosine threshold of ``recognizer`` at ``far`` on LFW's View-2 pairs: the shipped one when its weights are
    the published ones (:func:`shipped_threshold`); else the one calibrated on this machine before (cached by
    recogniser and weights), else a fresh calibration (minutes; said in one line on stderr). ``recalibrate``
    ignores both and calibrates afresh."""
    from deidkit.assets import cache_dir
    from deidkit.eval.embeddings import recognizer_key

    if not recalibrate:
        entry = shipped_threshold(recognizer, far)
        if entry is not None:
            return float(entry["threshold"])
    store = cache_dir() / "audit_thresholds.json"
    key = f"{recognizer_key(recognizer)}@far={far:g}"
    known = json.loads(store.read_text()) if store.is_file() else {}
    if key in known and not recalibrate:
        return float(known[key])
    sha = recognizer_identity(recognizer)["weights_sha256"]
    why = "as asked" if recalibrate else f"no shipped threshold for these weights (sha256 {(sha or 'unknown')[:12]})"
    print(f"deidkit audit: {recognizer.name}: {why}; calibrating on LFW's View-2 pairs (minutes, once; cached in "
          f"{store})", file=sys.stderr)
    threshold = calibrate_threshold(recognizer, far)["threshold"]
    known[key] = threshold
    tmp = store.with_name(f".{store.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(known, indent=1))
    os.replace(tmp, store)
    return threshold


class Auditor:
    """Audits pairs of frames (original, output) with the detectors and a recogniser built once.

    ``weights``: the recogniser's own weights file instead of the published one (its threshold is then calibrated on
    first use); ``recalibrate``: calibrate the threshold afresh even where one ships."""

    def __init__(self, recognizer: str = "mobilefacenet_ms1m", untouched_px: float = 1.0,
                 threshold: float | None = None, weights: str | os.PathLike | None = None,
                 recalibrate: bool = False) -> None:
        from deidkit.recognizers import get_recognizer

        self.recognizer = (get_recognizer(recognizer) if weights is None
                           else get_recognizer(recognizer, weights=weights, verify=False))
        self.threshold = (verification_threshold(self.recognizer, recalibrate=recalibrate) if threshold is None
                          else float(threshold))
        self.untouched_px = untouched_px
        self.yunet = make_face_detector("yunet")
        self.mtcnn = make_face_detector("mtcnn")

    def original_faces(self, image: np.ndarray) -> list:
        """Faces of the original: both detectors' detections, merged (highest score kept where boxes overlap)."""
        return merge_detections(self.yunet.detect(image) + self.mtcnn.detect(image))

    def audit_frame(self, original: np.ndarray, output: np.ndarray, names: tuple[str, str] = ("", ""),
                    frame: int = 0) -> list[AuditRow]:
        from deidkit.data.alignment import align_to_landmarks

        if original.shape != output.shape:
            raise ValueError(f"{names[1]}: size {output.shape[1]}x{output.shape[0]} differs from the original's "
                             f"{original.shape[1]}x{original.shape[0]} ({names[0]})")
        faces = self.original_faces(original)
        if not faces:
            return []
        found = self.mtcnn.detect(output)
        a, b = [], []
        for d in faces:
            ca, m = align_to_landmarks(original, d.landmarks, CROP)
            a.append(ca)
            b.append(cv2.warpAffine(output, m, (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101))
        a, b = np.stack(a), np.stack(b)
        ea, eb = self.recognizer.embed(a), self.recognizer.embed(b)
        sims = (ea * eb).sum(1) / np.maximum(np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1), 1e-12)
        q = CROP // 4  # the central half of the crop: the face itself, not the background around it
        change = np.abs(a[:, q:-q, q:-q].astype(np.float32) - b[:, q:-q, q:-q]).mean(axis=(1, 2, 3))
        rows = []
        for i, d in enumerate(faces):
            flag = "untouched" if change[i] < self.untouched_px else ("identity" if sims[i] >= self.threshold else "")
            rows.append(AuditRow(names[0], names[1], frame, i, ",".join(f"{v:.0f}" for v in d.box),
                                 round(float(change[i]), 3), round(float(sims[i]), 4), round(self.threshold, 4),
                                 any(box_iou(d.box, f.box) >= 0.3 for f in found), flag))
        return rows


def _pairs(original: Path, output: Path, kind: str) -> list[tuple[Path, Path]]:
    from deidkit.pipeline.batch import collect_inputs, output_name

    if original.is_dir():
        if not output.is_dir():
            raise ValueError(f"{output}: the original is a folder, so the de-identified side must be one too")
        pairs = [(src, output / output_name(rel, kind)) for src, rel in collect_inputs([original], kind)]
    else:
        pairs = [(original, output)]
    missing = [(src, out) for src, out in pairs if not out.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{missing[0][1]}: no de-identified file for {missing[0][0]}{more}")
    return pairs


def audit(original: str | os.PathLike, output: str | os.PathLike, recognizer: str = "mobilefacenet_ms1m",
          every: int = 1, csv_path: str | os.PathLike | None = None, progress: bool = True,
          auditor: Auditor | None = None, weights: str | os.PathLike | None = None,
          recalibrate: bool = False) -> tuple[list[AuditRow], str]:
    """Audit an image, a video or a folder of either against its de-identified counterpart (a folder holds the
    outputs under the names ``deidkit image|video`` gives them). Videos: every ``every``-th frame. Returns the
    rows (also written to ``csv_path`` when given) and a one-line verdict. ``weights`` and ``recalibrate`` go to
    :class:`Auditor` (unless ``auditor`` is given)."""
    from deidkit.data.images import load_image
    from deidkit.pipeline.batch import IMAGE_SUFFIXES, VIDEO_SUFFIXES
    from deidkit.pipeline.io import open_video

    original, output = Path(original), Path(output)
    if not original.exists():
        raise FileNotFoundError(f"{original}: no such file or folder")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    probe = original if original.is_file() else next((p for p in original.rglob("*") if p.is_file()), original)
    kind = "video" if probe.suffix.lower() in VIDEO_SUFFIXES else "image"
    if kind == "image" and original.is_file() and original.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"{original}: neither an image nor a video file")
    pairs = _pairs(original, output, kind)
    auditor = auditor or Auditor(recognizer, weights=weights, recalibrate=recalibrate)
    rows: list[AuditRow] = []
    frames = 0
    for src, dst in tqdm(pairs, desc="audit", unit="file", disable=not progress or len(pairs) < 2):
        if kind == "image":
            rows += auditor.audit_frame(load_image(src), load_image(dst), (str(src), str(dst)))
            frames += 1
            continue
        with open_video(src) as va, open_video(dst) as vb:
            for i, (fa, fb) in enumerate(zip(va.frames(), vb.frames())):
                if i % every == 0:
                    rows += auditor.audit_frame(fa, fb, (str(src), str(dst)), i)
                    frames += 1
    if csv_path is not None:
        csv_path = Path(csv_path)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, [fl.name for fl in fields(AuditRow)])
            w.writeheader()
            w.writerows(asdict(r) for r in rows)
    untouched = sum(r.flag == "untouched" for r in rows)
    ident = sum(r.flag == "identity" for r in rows)
    verdict = ("FAIL" if untouched or ident else "PASS") + (
        f": {len(rows)} faces in {frames} {'frames' if kind == 'video' else 'images'} of {len(pairs)} file(s); "
        f"{untouched} untouched, {ident} still identifiable ({auditor.recognizer.name} similarity >= "
        f"{auditor.threshold:.3f}, its LFW threshold at FAR {AUDIT_FAR:g})")
    return rows, verdict
