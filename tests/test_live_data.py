"""The live model's training data (deidkit.train.live_data): a configuration that names a test manifest is refused
at run time, before a crop is read; the training pool passes; its batches are full and never repeat an image inside an epoch."""

from __future__ import annotations

import numpy as np
import pytest

from deidkit.configs import DetailConfig, LiveConfig
from deidkit.data import lfw
from deidkit.train import live as T
from deidkit.train.live_data import IndexBatches, load_training_images, training_paths


@pytest.mark.parametrize("protocol", lfw.TEST_PROTOCOLS)
def test_a_test_manifest_is_refused_as_training_data(protocol):
    """Neither lfw_57x8 nor lfw_217x8 is a training manifest, so load_manifest reads them without a check; the
    training loader checks whatever manifest the configuration names."""
    one = sorted(set(lfw.load_manifest(protocol)["identity"]))[0]
    cfg = LiveConfig.profile("tiny", device="cpu", manifest=protocol)
    leak = rf"training manifest {protocol} reads \d+ identities of the test protocols.*{one}"
    with pytest.raises(ValueError, match=leak):
        training_paths(cfg)
    with pytest.raises(ValueError, match=leak):
        load_training_images(cfg)
    with pytest.raises(ValueError, match=leak):  # the old import path and the detail stage's data share the guard
        T.training_paths(DetailConfig(manifest=protocol))


def test_the_training_pool_passes_the_guard():
    cfg = LiveConfig.profile("tiny", device="cpu", max_images=5)
    paths = training_paths(cfg)
    assert len(paths) == 5 and paths == training_paths(cfg)  # drawn with the config's seed
    pool = set(lfw.load_manifest("lfw_train_pool")["path"])
    assert set(paths) <= pool


def test_batches_are_full_and_draw_no_image_twice_in_an_epoch():
    batches = IndexBatches(10, 3, seed=0, epoch=1)
    drawn = np.concatenate(list(batches))
    assert len(batches) == 3 and len(drawn) == 9 and len(set(drawn.tolist())) == 9  # drop_last
    assert T._Batches is IndexBatches  # the name deidkit.train.detail imports
