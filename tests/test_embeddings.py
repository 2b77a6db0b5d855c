"""The content-addressed embedding cache: the same crops are embedded once, across calls and processes."""

from __future__ import annotations

import numpy as np

from deidkit.eval.embeddings import EmbeddingCache, embed_cached, recognizer_key


class CountingRecognizer:
    name = "counting"
    dim = 3

    def __init__(self) -> None:
        self.seen = 0

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.seen += len(crops)
        return crops.reshape(len(crops), -1)[:, :3].astype(np.float32) + 1.0


def test_embed_cached_embeds_each_content_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    rec = CountingRecognizer()
    crops = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    first = embed_cached(rec, crops)
    assert rec.seen == 5 and np.array_equal(first, rec.embed(crops))
    rec.seen = 0
    again = embed_cached(rec, crops[[4, 0]])  # same contents, another order: nothing recomputed
    assert rec.seen == 0 and np.array_equal(again, first[[4, 0]])
    changed = crops.copy()
    changed[1, 0, 0, 0] ^= 1
    embed_cached(rec, changed)
    assert rec.seen == 1  # one pixel differs: only that crop is embedded
    assert recognizer_key(rec) == "counting"


def test_saves_from_two_caches_merge(tmp_path):
    a, b = EmbeddingCache("r", "t", root=tmp_path), EmbeddingCache("r", "t", root=tmp_path)
    a.put(["x"], np.ones((1, 2)))
    b.put(["y"], np.zeros((1, 2)))
    a.save()
    b.save()  # b never saw x: the save merges it back instead of dropping it
    c = EmbeddingCache("r", "t", root=tmp_path)
    assert "x" in c and "y" in c


def test_originals_are_saved_chunk_by_chunk(tmp_path, monkeypatch):
    """An interrupted embedding of originals keeps the chunks it finished."""
    import pytest

    from deidkit.eval.embeddings import embed_originals

    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    rec = CountingRecognizer()
    shas = [f"s{i}" for i in range(600)]
    crops = np.random.default_rng(0).integers(0, 255, (600, 4, 4, 3), dtype=np.uint8)

    def load(idx):
        if idx[0] >= 512:
            raise KeyboardInterrupt  # killed during the second chunk
        return crops[idx]

    with pytest.raises(KeyboardInterrupt):
        embed_originals(rec, shas, load, "t")
    rec.seen = 0
    embed_originals(rec, shas, lambda idx: crops[idx], "t")
    assert rec.seen == 600 - 512  # only the unfinished chunk is embedded again


def test_quality_is_measured_once_per_content(tmp_path):
    """The content-keyed quality cache: the same pixels are measured once; other pixels, another detector or
    another subset are measured anew."""
    from deidkit.cache import cached_quality, content_digest

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    out = crops.copy()
    calls = []

    def measure(value: float = 0.5):
        calls.append(value)
        return {"ssim": value}

    key = content_digest(crops, out, extra="yunet")
    assert cached_quality(key, measure, root=tmp_path) == {"ssim": 0.5}
    assert cached_quality(key, lambda: measure(0.9), root=tmp_path) == {"ssim": 0.5}  # kept, not recomputed
    assert calls == [0.5]
    changed = out.copy()
    changed[0, 0, 0, 0] ^= 1
    others = {content_digest(crops, changed, extra="yunet"), content_digest(crops, out, extra="mtcnn"),
              content_digest(crops, out.reshape(3, 8, 24), extra="yunet"), content_digest(crops, extra="yunet")}
    assert key not in others and len(others) == 4
    (tmp_path / f"{key}.json").write_text("{")  # a torn file is recomputed, not trusted
    assert cached_quality(key, lambda: measure(0.7), root=tmp_path) == {"ssim": 0.7}
    # in the same order whether measured or read back (the columns of a report's table do not depend on the cache)
    two = {"psnr": 30.0, "detection_rate": 1.0}
    assert list(cached_quality("k2", lambda: two, root=tmp_path)) == list(cached_quality("k2", dict, root=tmp_path))


class CountingDeidentifier:
    """Deterministic, with an option and a weight that decide its outputs."""

    name = "counting_deid"

    def __init__(self, shift: int = 7) -> None:
        import torch

        self.shift = shift
        self.weight = torch.ones(2)
        self.calls = 0

    def deidentify(self, crops: np.ndarray) -> np.ndarray:
        self.calls += 1
        return (crops.astype(np.int64) + self.shift + int(self.weight.sum())).clip(0, 255).astype(np.uint8)


def test_a_deidentifiers_outputs_are_not_recomputed_for_cached_embeddings(tmp_path, monkeypatch):
    """What a de-identifier gave a batch is remembered by content key, so an evaluation that only needs the outputs'
    embeddings does not run it again; any change of option or weight is another de-identifier."""
    from deidkit.cache import deidentifier_fingerprint
    from deidkit.eval.embeddings import DeidentifiedBatch, embed_deidentified

    monkeypatch.setenv("DEIDKIT_CACHE", str(tmp_path))
    crops = np.random.default_rng(1).integers(0, 200, (6, 8, 8, 3), dtype=np.uint8)
    rec, deid = CountingRecognizer(), CountingDeidentifier()
    first = embed_deidentified(rec, DeidentifiedBatch(deid, crops))
    assert deid.calls == 1 and np.array_equal(first, rec.embed(deid.deidentify(crops)))
    deid.calls = 0
    again = embed_deidentified(rec, DeidentifiedBatch(deid, crops))
    assert deid.calls == 0 and np.array_equal(again, first)
    other = CountingDeidentifier(shift=8)  # another option
    heavier = CountingDeidentifier()
    heavier.weight[0] = 2.0  # another weight
    prints = {deidentifier_fingerprint(d) for d in (deid, other, heavier)}
    assert len(prints) == 3 and None not in prints
    for d in (other, heavier):
        out = embed_deidentified(rec, DeidentifiedBatch(d, crops))
        assert d.calls == 1 and np.array_equal(out, rec.embed(d.deidentify(crops)))
    # other crops: run again; a de-identifier that cannot be fingerprinted (a closure) is never memoised
    embed_deidentified(rec, DeidentifiedBatch(deid, crops[:3]))
    assert deid.calls == 1
    seed = 3
    deid.hook = lambda x: x + seed
    assert deidentifier_fingerprint(deid) is None
    deid.calls = 0
    embed_deidentified(rec, DeidentifiedBatch(deid, crops))
    embed_deidentified(rec, DeidentifiedBatch(deid, crops))
    assert deid.calls == 2


def test_a_deidentifiers_fingerprint_covers_the_code_it_runs_not_the_whole_kit(monkeypatch):
    """The source part of a fingerprint is the kit modules the de-identifier's classes come from plus everything
    they import (also inside functions), so an edit of the evaluation, the CLI or the trainers keeps memoised
    outputs, and an edit of the network's or a helper's module does not."""
    import deidkit.cache as cache
    from deidkit.baselines import get_deidentifier
    from deidkit.configs import FaDeNetConfig
    from deidkit.deidentifiers.fadenet import FaDeNetDeidentifier, build_unet

    blur_code = cache.kit_imports(["deidkit.baselines"])
    assert {"deidkit.baselines", "deidkit.data.images", "deidkit.eval.quality"} <= blur_code
    assert not blur_code & {"deidkit.cli", "deidkit.train.fadenet", "deidkit.eval.benchmark", "deidkit.reports"}
    fadenet_code = cache.kit_imports(["deidkit.deidentifiers.fadenet"])
    # imported only inside a function (load_fadenet_deidentifier): still part of the code it may run
    assert {"deidkit.models.unet", "deidkit.deidentifiers.colour", "deidkit.pretrained"} <= fadenet_code
    assert "deidkit.train.fadenet" not in fadenet_code  # inference imports no trainer

    asked = []
    real = cache.source_digest
    monkeypatch.setattr(cache, "source_digest", lambda modules=None: asked.append(modules) or real(modules))
    blur = get_deidentifier("blur_sigma8")
    first = cache.deidentifier_fingerprint(blur)
    assert asked == [frozenset({"deidkit.baselines"})]
    cfg = FaDeNetConfig.profile("tiny", input_sigma=2.0)
    cache.deidentifier_fingerprint(FaDeNetDeidentifier.from_network(cfg, build_unet(cfg), name="t"))
    assert {"deidkit.deidentifiers.fadenet", "deidkit.models.unet", "deidkit.configs"} <= asked[-1]
    # the same code, options and weights: the same fingerprint; other source: another one
    assert cache.deidentifier_fingerprint(get_deidentifier("blur_sigma8")) == first
    monkeypatch.setattr(cache, "source_digest", lambda modules=None: real(None) + "edited")
    assert cache.deidentifier_fingerprint(blur) != first
