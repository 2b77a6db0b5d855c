"""How far each warped FaDeNet candidate of 2026-12-07 stretches faces: for one face of each of the selection
protocol's 160 identities (``lfw_select_160x8``; never the test protocol), the largest principal stretch of the
warp the network applies (``FaDeNetDeidentifier.warp_stretch``, at the network's 96 px), and its median and
95th percentile over the faces. Records ``reports/metrics/fadenet_warp_stretch.json``.

Run: ``python scripts/fadenet_warp_stretch.py`` (the runs below must be in the kit's cache; see the profiles
``subspace_warp``, ``subspace_warp_g8`` and ``subspace_shape`` in ``deidkit/configs.py``; runs it lacks are left out)."""

from __future__ import annotations

import numpy as np

from deidkit.data.lfw import aligned_crops
from deidkit.deidentifiers import load_deidentifier
from deidkit.eval.selection import selection_set
from deidkit.reports import record_metrics

#: snapshot (run @ epoch) -> its warp (the runs of scripts/fadenet_warp_grid.py)
SNAPSHOTS = {
    "fadenet-subspace_warp@epoch003": "5x5, 4 px",
    "fadenet-subspace_warp6@epoch003": "5x5, 6 px",
    "fadenet-subspace_warp_g8@epoch003": "8x8, 4 px",
    "fadenet-subspace_warp_g12@epoch003": "12x12, 4 px",
    "fadenet-subspace_warp_g4p2@epoch003": "4x4, 2 px",
    "fadenet-subspace_warp_g5p15@epoch003": "5x5, 1.5 px",
    "fadenet-subspace_shape@epoch003": "16 face-shape modes, 3 SD",
    "fadenet-subspace_shape@epoch002": "16 face-shape modes, 3 SD (shipped)",
    "fadenet-subspace_shape_b5@epoch003": "16 face-shape modes, 5 SD",
    "fadenet-subspace_shape_k32@epoch003": "32 face-shape modes, 3 SD",
}


def main() -> None:
    crops = aligned_crops(selection_set(1)["path"].tolist())
    rows = []
    for snapshot, warp in SNAPSHOTS.items():
        try:
            deid = load_deidentifier(snapshot)
        except FileNotFoundError as exc:
            print(f"skipped {snapshot}: {exc}")
            continue
        stretch = deid.warp_stretch(crops)
        run, _, epoch = snapshot.partition("@")
        rows.append({"kind": "warp_stretch", "protocol": "lfw_select_160x8 (1 per identity)", "run": run,
                     "snapshot": f"epochs/{epoch}.pt", "warp": warp, "faces": len(stretch),
                     "median": float(np.median(stretch)), "p95": float(np.percentile(stretch, 95)),
                     "max": float(stretch.max())})
        print(f"{snapshot:36s} {warp:12s} stretch median {rows[-1]['median']:.3f} p95 {rows[-1]['p95']:.3f} "
              f"max {rows[-1]['max']:.3f}")
    record_metrics(rows, "fadenet_warp_stretch")


if __name__ == "__main__":
    main()
