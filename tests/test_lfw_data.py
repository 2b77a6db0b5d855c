import pandas as pd
import pytest

from deidkit.data import lfw
from deidkit.data.prep import check_manifests
from deidkit.data.protocols import (
    identification_protocol,
    import_folder,
    parse_pairs,
    protocol_subset,
    train_pool,
)


def test_lfw_root_search_order(tmp_path, monkeypatch, lfw_dir):
    monkeypatch.delenv("DEIDKIT_DATA", raising=False)
    assert lfw.lfw_root() == lfw_dir
    explicit = tmp_path / "mine"
    (explicit / "images" / "Someone").mkdir(parents=True)
    monkeypatch.setenv("DEIDKIT_DATA", str(tmp_path / "env"))
    assert lfw.lfw_root(explicit) == explicit  # explicit beats the environment


def test_missing_lfw_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIDKIT_DATA", str(tmp_path / "nodata"))
    monkeypatch.setenv("DEIDKIT_SHARED", str(tmp_path / "noshared"))
    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(lfw, "shared_dirs", lambda: [tmp_path / "noshared"])
    with pytest.raises(lfw.DataNotFoundError) as e:
        lfw.lfw_root()
    msg = str(e.value)
    assert "nodata" in msg and "noshared" in msg and "cache" in msg and "DEIDKIT_DATA" in msg


def test_committed_manifests_are_consistent():
    assert check_manifests() == []


def test_files_match_manifest_sample(lfw_dir):
    assert lfw.verify_files(lfw.load_manifest("lfw_files"), lfw_dir, sample=200) == []


def test_changed_file_is_reported(tmp_path):
    (tmp_path / "images" / "A").mkdir(parents=True)
    (tmp_path / "images" / "A" / "A_0001.jpg").write_bytes(b"changed")
    man = pd.DataFrame({"path": ["images/A/A_0001.jpg", "images/A/A_0002.jpg"], "identity": ["A", "A"],
                        "sha256": ["0" * 64, "0" * 64]})
    problems = lfw.verify_files(man, tmp_path)
    assert any("A_0001.jpg: sha256 differs" in p for p in problems)
    assert any("A_0002.jpg: missing" in p for p in problems)


def test_official_pairs():
    pairs = parse_pairs().to_frame()
    assert pairs["path1"].str.startswith("images/").all()
    assert len(pairs) == 6000 and pairs["same"].sum() == 3000 and pairs["fold"].nunique() == 10


def test_malformed_pairs(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("1 1\nA 1 2\nB 1 C\n")
    with pytest.raises(ValueError, match="pairs.txt: line 3"):
        parse_pairs(bad)


def _synthetic(n_ids=20, per=10):
    rows = [(f"images/P{i}/P{i}_{j:04d}.jpg", f"P{i}", f"{i:032d}{j:032d}") for i in range(n_ids)
            for j in range(per - (i % 5))]
    return pd.DataFrame(rows, columns=["path", "identity", "sha256"])


def test_identification_protocol_is_seeded_and_balanced():
    files = _synthetic()
    a = identification_protocol(files, 5, seed=3)
    b = identification_protocol(files, 5, seed=3)
    c = identification_protocol(files, 5, seed=4)
    assert a.equals(b) and not a.equals(c)
    assert a["identity"].nunique() == 5 and len(a) == 40
    for col in [f"rep{r}" for r in range(5)]:
        assert (a.groupby("identity")[col].apply(lambda s: (s == "probe").sum()) == 4).all()
    assert set(files.groupby("identity").size().loc[lambda s: s >= 8].index) >= set(a["identity"])
    sub = protocol_subset(a, 2, seed=0)
    assert sub["identity"].nunique() == 2 and set(sub["path"]) <= set(a["path"])


def test_train_pool_is_disjoint():
    files = _synthetic()
    test_ids = {"P0", "P1"}
    pool = train_pool(files, test_ids, seed=0)
    assert not set(pool["identity"]) & test_ids
    held = pool[pool["critic_split"] == "heldout"].groupby("identity").size()
    assert (held == 1).all()


def test_generic_folder_importer(tmp_path, lfw_dir):
    for ident in ("Alice", "Bob"):
        (tmp_path / ident).mkdir()
        for k in range(3):
            src = next((lfw_dir / "images" / "Aaron_Eckhart").glob("*.jpg"))
            (tmp_path / ident / f"{k}.jpg").write_bytes(src.read_bytes())
    (tmp_path / "Alice" / "notes.txt").write_text("ignored")
    man = import_folder(tmp_path)
    assert len(man) == 6 and set(man["identity"]) == {"Alice", "Bob"}
    with pytest.raises(FileNotFoundError, match="no images"):
        import_folder(tmp_path / "Alice")


def test_aligned_crops_use_cache(protocol_small, crops_small, monkeypatch):
    # A second request must not detect again: make detection impossible and ask for the same crops.
    from deidkit.data import alignment

    def boom(*a, **k):
        raise AssertionError("detector called although the crops are cached")

    monkeypatch.setattr(alignment.YuNetDetector, "detect", boom)
    again = lfw.aligned_crops(protocol_small["path"])
    assert (again == crops_small).all()
    rec = lfw.alignment_record(protocol_small["path"][0])
    assert rec["status"] == "yunet" and len(rec["matrix"]) == 2
