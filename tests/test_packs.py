"""Crop packs (training data for a machine without LFW): round trip against the alignment cache, subsets, bad
files named in one-line errors, and a live config that trains from a pack reads the same images as from LFW."""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest

from deidkit.data.lfw import aligned_crops, load_manifest
from deidkit.data.packs import pack_error, read_crop_pack, write_crop_pack
from deidkit.train import live as T


@pytest.fixture(scope="module")
def pool_paths() -> list[str]:
    return list(load_manifest("lfw_train_pool")["path"][:6])


@pytest.fixture(scope="module")
def pack(tmp_path_factory, pool_paths):
    out = tmp_path_factory.mktemp("pack") / "pool.npz"
    info = write_crop_pack(pool_paths, out, size=80, show_progress=False)
    assert info["images"] == 6 and info["bytes"] == out.stat().st_size
    return out


def test_pack_round_trip_is_close_to_the_cache(pack, pool_paths):
    names, crops = read_crop_pack(pack)
    assert names == pool_paths
    assert crops.shape == (6, 80, 80, 3) and crops.dtype == np.uint8
    cached = np.stack([cv2.resize(c, (80, 80), interpolation=cv2.INTER_AREA) for c in aligned_crops(pool_paths)])
    err = np.abs(crops.astype(int) - cached.astype(int)).mean(axis=(1, 2, 3))
    assert (err < 4).all() and (err > 0).any()  # JPEG: close, not identical
    assert pack_error(pack, n=6) == pytest.approx(err.mean(), abs=1e-9)
    # the channel order survives (a BGR/RGB mix-up would swap red and blue means)
    assert np.allclose(crops[..., 0].mean(), cached[..., 0].mean(), atol=2)
    assert np.allclose(crops[..., 2].mean(), cached[..., 2].mean(), atol=2)


def test_pack_subset_keeps_the_order_asked_for(pack, pool_paths):
    names, crops = read_crop_pack(pack, [pool_paths[3], pool_paths[0]])
    _, everything = read_crop_pack(pack)
    assert names == [pool_paths[3], pool_paths[0]]
    assert np.array_equal(crops, everything[[3, 0]])


def test_bad_packs_are_named_in_the_error(pack, pool_paths, tmp_path):
    with pytest.raises(ValueError, match=r"pool\.npz: 1 of the 1 images asked for are not in the pack"):
        read_crop_pack(pack, ["images/Nobody/Nobody_0001.jpg"])
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(pack.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"truncated\.npz: not a readable crop pack"):
        read_crop_pack(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ValueError, match=r"foreign\.npz: not a crop pack \(missing format"):
        read_crop_pack(foreign)
    pickled = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pack) as z:
        arrays = {n[:-4]: np.load(z.open(n)) for n in z.namelist()}
    arrays["paths"] = np.asarray(pool_paths, dtype=object)  # an object array needs pickle: refused
    np.savez(pickled, **arrays)
    with pytest.raises(ValueError, match=r"pickled\.npz: not a readable crop pack"):
        read_crop_pack(pickled)
    with pytest.raises(ValueError, match="pack size"):
        write_crop_pack(pool_paths, tmp_path / "x.npz", size=8)


def test_live_config_trains_from_a_pack_on_the_same_images(tmp_path):
    cfg = T.LiveConfig.profile("tiny", device="cpu", max_images=5)
    paths = T.training_paths(cfg)
    assert len(paths) == 5
    packed = tmp_path / "tiny.npz"
    write_crop_pack(paths, packed, size=cfg.canonical_size, show_progress=False)
    from_cache = T.load_training_images(cfg)
    from_pack = T.load_training_images(T.LiveConfig.profile("tiny", device="cpu", max_images=5,
                                                            crop_pack=str(packed)))
    assert from_pack.shape == from_cache.shape == (5, cfg.canonical_size, cfg.canonical_size, 3)
    assert np.abs(from_pack.astype(int) - from_cache.astype(int)).mean() < 4


def test_fadenet_data_from_a_pack_match_lfw(tmp_path):
    """FaDeNet and its critic read the critic identities' crops from a pack (``FaDeNetConfig.crop_pack``): same
    identities, labels and splits as from the alignment cache, pixels within JPEG error."""
    from deidkit.train.critic import load_train_pool

    from_cache = load_train_pool(64, max_identities=6, seed=0)
    pool = load_manifest("lfw_train_pool")
    packed = tmp_path / "critic.npz"
    write_crop_pack(list(pool[pool["critic_split"].isin(["train", "heldout"])]["path"]), packed, size=96,
                    show_progress=False)
    from_pack = load_train_pool(64, max_identities=6, seed=0, crop_pack=packed)
    assert from_pack.identities == from_cache.identities and len(from_cache.identities) == 6
    assert from_pack.train_paths == from_cache.train_paths and from_pack.heldout_paths == from_cache.heldout_paths
    assert np.array_equal(from_pack.train_labels, from_cache.train_labels)
    assert from_pack.train_images.shape == from_cache.train_images.shape
    assert np.abs(from_pack.train_images.astype(int) - from_cache.train_images.astype(int)).mean() < 4
    too_small = tmp_path / "one.npz"  # a pack without the critic's images: named in the error
    write_crop_pack(list(pool["path"][:1]), too_small, size=64, show_progress=False)
    with pytest.raises(ValueError, match="one.npz: .* not in the pack"):
        load_train_pool(64, max_identities=6, seed=0, crop_pack=too_small)
