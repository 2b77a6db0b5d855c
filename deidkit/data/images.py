"""Reading images safely: every failure names the file and the problem; odd modes are converted."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

# Truncated files must fail loudly, not decode as grey padding.
ImageFile.LOAD_TRUNCATED_IMAGES = False

MIN_SIDE = 24

#: ITU-R BT.601 (full range, as JPEG and OpenCV's YCrCb): the luma weights of R, G, B, and the rows of RGB ->
#: (Cb, Cr) without their offset (each row sums to 0, so they map a difference of images to a difference of colour).
BT601_LUMA = (0.299, 0.587, 0.114)
BT601_CHROMA = ((-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


class ImageError(ValueError):
    """An image file cannot be used; the message names the file and the reason."""


def load_image(path: str | os.PathLike, min_side: int = MIN_SIDE) -> np.ndarray:
    """Read ``path`` as an RGB ``uint8`` array of shape (H, W, 3).

    Grey, palette, 16-bit, CMYK and alpha images are converted (alpha is composited on black, which is
    what a detector sees where a transparent image is shown on a dark page); corrupt, truncated, empty or
    tiny images raise :class:`ImageError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                arr = to_rgb(img)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a recognised image format (corrupt or not an image)") from None
    except (OSError, SyntaxError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: unreadable image ({exc}); the file is probably truncated or corrupt") from None
    h, w = arr.shape[:2]
    if min(h, w) < min_side:
        raise ImageError(f"{path}: image is {w}x{h} pixels, smaller than the {min_side}-pixel minimum for a face")
    return arr


def to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to RGB uint8."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        hi = a.max() or 1.0
        a = np.clip(a / hi * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 array atomically (a crash leaves no half-written file under ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    Image.fromarray(np.ascontiguousarray(image)).save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    os.replace(tmp, path)


def resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, S, S, 3) uint8 crops to ``size`` (INTER_AREA to shrink, bilinear to enlarge)."""
    if crops.shape[1] == size:
        return crops
    interp = cv2.INTER_AREA if size < crops.shape[1] else cv2.INTER_LINEAR
    out = np.empty((len(crops), size, size, 3), dtype=np.uint8)
    for i, c in enumerate(crops):
        out[i] = cv2.resize(c, (size, size), interpolation=interp)
    return out


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) in 0..255 -> float32 in [-1, 1], the range every network of the kit takes."""
    return batch.float().div_(127.5).sub_(1.0)


def from_model_range(batch: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 0..255 (clipped and rounded)."""
    return batch.detach().add(1.0).mul(127.5).clamp_(0, 255).round_().to(torch.uint8)
