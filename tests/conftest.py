"""Shared fixtures. Tests use the real LFW and weights from the shared folder (``$DEIDKIT_SHARED`` or
``../shared``); aligned crops are cached in the user cache (``$DEIDKIT_CACHE``), so a second run is faster."""

from __future__ import annotations

import numpy as np
import pytest

from deidkit.data.lfw import aligned_crops, lfw_root, load_manifest


@pytest.fixture(scope="session")
def lfw_dir():
    return lfw_root()


@pytest.fixture(scope="session")
def protocol_small():
    """Six identities of lfw_57x8 (48 images) with their splits."""
    p = load_manifest("lfw_57x8")
    keep = sorted(p["identity"].unique())[:6]
    return p[p["identity"].isin(keep)].reset_index(drop=True)


@pytest.fixture(scope="session")
def crops_small(protocol_small) -> np.ndarray:
    return aligned_crops(protocol_small["path"])
