"""Interactive exploration of the lambda ablation: sliders for lambda, the model and the image; the original,
the output, their difference and the point's metrics update in place.

The explorer only reads an evaluated :class:`deidkit.ablation.SweepResult` (precomputed outputs on a few sample
crops and the ablation records), so moving a slider costs a PNG encoding, not a network pass. Without a browser
(papermill, nbconvert) the same content is drawn by :meth:`LambdaExplorer.figure` and
:meth:`LambdaExplorer.static_figure`.
"""

from __future__ import annotations

import html
from typing import Any

import cv2
import ipywidgets as widgets
import numpy as np
import pandas as pd

from deidkit.eval.quality import psnr, ssim
from deidkit.plots import difference_image


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an RGB (or grey) uint8 image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 image (H, W[, 3]), got {image.dtype} {image.shape}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


class LambdaExplorer:
    """Model, lambda and image controls over an evaluated sweep.

    ``explorer.widget`` is the ipywidgets layout; set ``explorer.lam.value`` (or ``model``/``image``) from code
    and the views update as they do when a user moves the slider. ``state()`` and ``metrics_table()`` say what is
    shown. ``gain`` amplifies the difference image."""

    VIEWS = ("original", "output", "difference")

    def __init__(self, result: Any, gain: float = 4.0, width: int = 192) -> None:
        models = result.models()
        if not models:
            raise ValueError("the sweep has no evaluated learned model to explore")
        if len(result.originals) == 0:
            raise ValueError("the sweep has no sample images")
        self.result, self.gain = result, gain
        self.updates = 0  # how many times the views were redrawn (tests and debugging)
        self._busy = False
        self.model = widgets.Dropdown(options=models, value=models[0], description="model")
        self.lam = widgets.SelectionSlider(options=self._lam_options(models[0]), description="λ",
                                           continuous_update=False, layout=widgets.Layout(width="480px"))
        self.image = widgets.Dropdown(options=[(lab, i) for i, lab in enumerate(result.sample_labels)], value=0,
                                      description="image")
        self.views = {k: widgets.Image(format="png", width=width) for k in self.VIEWS}
        self.metrics = widgets.HTML()
        self.model.observe(self._on_model, names="value")
        self.lam.observe(self._on_change, names="value")
        self.image.observe(self._on_change, names="value")
        self.update()

    # -- state
    def _lam_options(self, model: str) -> list[tuple[str, float]]:
        return [(f"{lam:g}", float(lam)) for lam in self.result.lambdas(model)]

    def state(self) -> dict[str, Any]:
        return {"model": self.model.value, "lambda": float(self.lam.value), "image": int(self.image.value)}

    def images(self, model: str | None = None, lam: float | None = None, image: int | None = None
               ) -> dict[str, np.ndarray]:
        """The original, the output and the amplified difference for a state (default: the current one)."""
        s = self.state()
        model, lam, image = model or s["model"], s["lambda"] if lam is None else lam, s["image"] if image is None else image
        orig = self.result.originals[image]
        out = self.result.output(model, lam)[image]
        return {"original": orig, "output": out, "difference": difference_image(orig, out, self.gain)}

    def metrics_table(self, model: str | None = None, lam: float | None = None, image: int | None = None
                      ) -> pd.DataFrame:
        """The point's metrics per recogniser (over the whole protocol) and this image's SSIM/PSNR."""
        s = self.state()
        model, lam, image = model or s["model"], s["lambda"] if lam is None else lam, s["image"] if image is None else image
        m = self.result.point_metrics(model, lam)
        cols = [c for c in ("recognizer", "independent", "rank1_mean", "rank1_std", "true_rank_median",
                            "tar_at_far", "ssim", "psnr", "landmark_px", "landmark_iod") if c in m]
        table = m[cols].copy()
        imgs = self.images(model, lam, image)
        a, b = imgs["original"][None], imgs["output"][None]
        table["image_ssim"] = float(ssim(a, b)[0])
        table["image_psnr"] = float(psnr(a, b)[0])
        return table

    # -- drawing
    def _metrics_html(self, table: pd.DataFrame) -> str:
        s = self.state()
        head = (f"<b>{html.escape(s['model'])}, λ = {s['lambda']:g}</b> — "
                f"{html.escape(self.result.sample_labels[s['image']])}")
        if table.empty:
            return head + "<br>(no metrics recorded for this point)"
        r0 = table.iloc[0]
        lines = [head,
                 f"this image: SSIM {r0['image_ssim']:.3f}, PSNR {r0['image_psnr']:.1f} dB",
                 f"protocol mean: SSIM {r0.get('ssim', np.nan):.3f}, PSNR {r0.get('psnr', np.nan):.1f} dB, "
                 f"landmark shift {r0.get('landmark_px', np.nan):.2f} px ({r0.get('landmark_iod', np.nan):.3f} IOD)"]
        rows = "".join(
            f"<tr><td>{html.escape(str(r['recognizer']))}{'' if r.get('independent', True) else ' *'}</td>"
            f"<td>{r['rank1_mean']:.3f} ± {r['rank1_std']:.3f}</td>"
            f"<td>{r.get('true_rank_median', np.nan):g}</td></tr>" for _, r in table.iterrows())
        return ("<br>".join(lines) + "<table><tr><th>recogniser</th><th>Rank-1</th><th>true-identity rank "
                f"(median)</th></tr>{rows}</table><small>* not an independent recogniser</small>")

    def update(self) -> None:
        """Redraw the three views and the metrics for the current state."""
        imgs = self.images()
        for k, view in self.views.items():
            view.value = png_bytes(imgs[k])
        self.metrics.value = self._metrics_html(self.metrics_table())
        self.updates += 1

    def _on_change(self, change: dict) -> None:
        if not self._busy:
            self.update()

    def _on_model(self, change: dict) -> None:
        # Changing the slider's options fires its own change event; redraw once, at the end.
        self._busy = True
        try:
            old = float(self.lam.value)
            options = self._lam_options(change["new"])
            self.lam.options = options
            values = [v for _, v in options]
            self.lam.value = old if old in values else values[0]
        finally:
            self._busy = False
        self.update()

    @property
    def widget(self) -> widgets.VBox:
        boxes = [widgets.VBox([widgets.Label(k), self.views[k]]) for k in self.VIEWS]
        return widgets.VBox([widgets.HBox([self.model, self.image]), self.lam, widgets.HBox(boxes), self.metrics])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- static versions (for papermill/HTML reports)
    def figure(self, model: str | None = None, lam: float | None = None, image: int | None = None):
        """The explorer's view of one state as a matplotlib figure."""
        import matplotlib.pyplot as plt

        s = self.state()
        model, lam, image = model or s["model"], s["lambda"] if lam is None else lam, s["image"] if image is None else image
        imgs = self.images(model, lam, image)
        fig, axes = plt.subplots(1, 4, figsize=(10, 2.8), gridspec_kw={"width_ratios": [1, 1, 1, 1.3]})
        self._draw_row(axes, imgs, self.metrics_table(model, lam, image), f"{model}, λ={lam:g}")
        fig.tight_layout()
        return fig

    def static_figure(self, model: str | None = None, image: int = 0):
        """Every lambda of ``model`` for one image: original, output, difference and metrics, one row each."""
        import matplotlib.pyplot as plt

        model = model or self.model.value
        lams = self.result.lambdas(model)
        fig, axes = plt.subplots(len(lams), 4, figsize=(10, 2.4 * len(lams) + 0.4), squeeze=False,
                                 gridspec_kw={"width_ratios": [1, 1, 1, 1.3]})
        for i, (row, lam) in enumerate(zip(axes, lams)):
            self._draw_row(row, self.images(model, lam, image), self.metrics_table(model, lam, image),
                           f"λ={lam:g}", titles=i == 0)
        fig.suptitle(f"{model} — {self.result.sample_labels[image]}", fontsize=10)
        fig.tight_layout()
        return fig

    def _draw_row(self, axes, imgs: dict[str, np.ndarray], table: pd.DataFrame, label: str,
                  titles: bool = True) -> None:
        for ax, k in zip(axes[:3], self.VIEWS):
            ax.imshow(imgs[k])
            ax.set_xticks([])
            ax.set_yticks([])
            if titles:
                ax.set_title(k if k != "difference" else f"difference ×{self.gain:g}", fontsize=8)
        axes[0].set_ylabel(label, fontsize=8)
        ax = axes[3]
        ax.axis("off")
        if table.empty:
            ax.text(0, 0.5, "no metrics", fontsize=7)
            return
        r0 = table.iloc[0]
        lines = [f"image SSIM {r0['image_ssim']:.3f}  PSNR {r0['image_psnr']:.1f}",
                 f"mean SSIM {r0.get('ssim', np.nan):.3f}  landmarks {r0.get('landmark_iod', np.nan):.3f} IOD",
                 "Rank-1 (true-id. rank):"]
        lines += [f"  {r['recognizer']}{'' if r.get('independent', True) else '*'}: {r['rank1_mean']:.2f}"
                  f"±{r['rank1_std']:.2f} ({r.get('true_rank_median', np.nan):g})" for _, r in table.iterrows()]
        ax.text(0, 1, "\n".join(lines), va="top", fontsize=7, family="monospace", transform=ax.transAxes)


__all__ = ["LambdaExplorer", "png_bytes"]
