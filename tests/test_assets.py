import pytest

from deidkit.assets import ASSETS, AssetError, asset_path, cache_dir, shared_dirs, using_cache, verify_sha256


def test_shared_assets_verify():
    for name in ("yunet", "mobilefacenet-ms1m", "lfw-pairs"):
        assert asset_path(name).is_file()


def test_wrong_checksum_names_file(tmp_path):
    p = tmp_path / "fake.onnx"
    p.write_bytes(b"not the model")
    with pytest.raises(AssetError, match="fake.onnx.*checksum mismatch"):
        asset_path("yunet", p)
    with pytest.raises(AssetError, match="checksum mismatch"):
        verify_sha256(p, "0" * 64)


def test_missing_weights_say_where_they_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIDKIT_SHARED", str(tmp_path / "elsewhere"))
    # The default ../shared still holds the file, so ask for an explicit path that does not exist.
    with pytest.raises(AssetError) as e:
        asset_path("mobilefacenet-casia", tmp_path / "missing.ckpt")
    msg = str(e.value)
    assert "missing.ckpt" in msg and ASSETS["mobilefacenet-casia"].origin in msg


def test_env_shared_first(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIDKIT_SHARED", str(tmp_path))
    assert shared_dirs()[0] == tmp_path


def test_using_cache(tmp_path):
    before = cache_dir()
    with using_cache(tmp_path / "c"):
        assert cache_dir() == tmp_path / "c"
    assert cache_dir() == before
