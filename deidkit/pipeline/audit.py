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
"""

from __future__ import annotations

import csv
import json
import os
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


def verification_threshold(recognizer: Any, far: float = AUDIT_FAR) -> float:
    """The cosine threshold of ``recognizer`` at ``far`` on LFW's View-2 pairs (embeddings cached; the threshold
    is cached by recogniser and weights under the kit's cache)."""
    from deidkit.assets import cache_dir
    from deidkit.data.lfw import aligned_crops
    from deidkit.data.protocols import parse_pairs
    from deidkit.eval.embeddings import embed_cached, recognizer_key
    from deidkit.eval.verification import cosine_scores, threshold_at_far

    store = cache_dir() / "audit_thresholds.json"
    key = f"{recognizer_key(recognizer)}@far={far:g}"
    known = json.loads(store.read_text()) if store.is_file() else {}
    if key in known:
        return float(known[key])
    pairs = parse_pairs()
    paths = pairs.unique_paths()
    emb = embed_cached(recognizer, aligned_crops([f"images/{p}" for p in paths]), desc="LFW pairs")
    index = {p: i for i, p in enumerate(paths)}
    scores = cosine_scores(emb[[index[p] for p in pairs.left]], emb[[index[p] for p in pairs.right]])
    threshold = threshold_at_far(scores, pairs.same, far)
    known[key] = threshold
    tmp = store.with_name(f".{store.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(known, indent=1))
    os.replace(tmp, store)
    return threshold


class Auditor:
    """Audits pairs of frames (original, output) with the detectors and a recogniser built once."""

    def __init__(self, recognizer: str = "mobilefacenet_ms1m", untouched_px: float = 1.0,
                 threshold: float | None = None) -> None:
        from deidkit.recognizers import get_recognizer

        self.recognizer = get_recognizer(recognizer)
        self.threshold = verification_threshold(self.recognizer) if threshold is None else float(threshold)
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
          auditor: Auditor | None = None) -> tuple[list[AuditRow], str]:
    """Audit an image, a video or a folder of either against its de-identified counterpart (a folder holds the
    outputs under the names ``deidkit image|video`` gives them). Videos: every ``every``-th frame. Returns the
    rows (also written to ``csv_path`` when given) and a one-line verdict."""
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
    auditor = auditor or Auditor(recognizer)
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
