"""What the warped FaDeNet candidates of 2026-12-07 do to faces: one face of every 25th identity of the selection
protocol (``lfw_select_160x8``; never the test protocol), the original and each candidate at its selection-rule
operating point, as one grid. Writes ``reports/figures/fadenet_subspace_warp_grid.png``.

Run: ``python scripts/fadenet_warp_grid.py`` (the warp runs named below must be in the kit's cache: see the
profiles ``subspace_warp``, ``subspace_warp_g8`` and ``subspace_shape`` in ``deidkit/configs.py``; rows of runs it lacks are left out)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from deidkit.data.lfw import aligned_crops
from deidkit.deidentifiers import load_deidentifier
from deidkit.eval.selection import selection_set
from deidkit.reports import save_figure

#: row label -> de-identifier name (run @ epoch snapshot with its inference options); the 6 px, 12 x 12 and 5 x 5
#: 1.5 px warps of 2026-12-07 look like their neighbours here and are left out so the figure stays small
CANDIDATES = {
    "2026-12-07 model (no warp)": "fadenet-subspace_push_m@epoch003_f0.23_cm_dc1.5",
    "5x5 warp, 4 px": "fadenet-subspace_warp@epoch003_f0.26_cm_dc1.5",
    "8x8 warp, 4 px": "fadenet-subspace_warp_g8@epoch003_f0.26_cm_dc1.5",
    "4x4 warp, 2 px": "fadenet-subspace_warp_g4p2@epoch003_f0.26_cm_dc1.5",
    "shipped fadenet: 16 face-shape modes, 3 SD": "fadenet",
    "16 face-shape modes, 5 SD": "fadenet-subspace_shape_b5@epoch002_f0.26_cm_dc1.5",
}


def main() -> None:
    chosen = selection_set(1).iloc[::25].head(6)
    crops = aligned_crops(chosen["path"].tolist())
    rows = {"original": crops}
    for label, name in CANDIDATES.items():
        try:
            rows[label] = load_deidentifier(name).deidentify(crops)
        except FileNotFoundError as exc:  # a run this machine has not trained
            print(f"skipped {label}: {exc}")
    # small enough to keep in git (the wedges show at this size)
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.2 * len(crops), 1.25 * len(rows)), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items()):
        ax.imshow(np.concatenate(list(images), axis=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, fontsize=6)
    fig.suptitle("FaDeNet with a learned warp of the face box (selection protocol faces)", fontsize=7)
    fig.tight_layout()
    print(save_figure(fig, "fadenet_subspace_warp_grid"))


if __name__ == "__main__":
    main()
