"""The fine-tuned attacker (``adapted_finetune``): a judge's last blocks trained to see through one de-identifier.

A linear head on a frozen embedding can only undo what is linear in the embedding. This attacker goes one level
deeper: it copies a torch recogniser (the MobileFaceNets; dlib's ResNet runs outside torch and cannot be
fine-tuned) and trains its last stage so that the embedding of a de-identified face lands on the frozen original
recogniser's embedding of the same face before de-identification.

Recipe (:class:`FinetuneConfig`, ``quick`` profile):

- **What trains**: the bottleneck blocks from ``first_block`` on (12: the last stage, its stride-2 block and the two
  7x7 blocks), the 1x1 expansion to 512 channels, the global depthwise convolution and the linear embedding layer
  (about 0.4 M of MobileFaceNet's 1 M weights). BatchNorm keeps its running statistics (the few thousand images
  cannot re-estimate them); its scale and shift train. The frozen trunk's features are computed once per image
  (and its mirror image, for the CASIA judge, which embeds both), so an epoch costs only the last stage.
- **Loss**: ``1 - cos(tuned(de-identified), original judge(original))`` on the judge's full embedding, plus
  ``anchor_weight`` times the same term for the original image itself, so that the tuned judge still embeds
  originals where the original judge did (either can then embed the gallery).
- **Data**: the ``train`` role of ``lfw_attack_split`` (see :mod:`deidkit.eval.attack`), de-identified by the model
  under attack; Adam, ``lr`` 3e-4, batch 32, up to 4 epochs.
- **Early stopping and gallery**: after every epoch (and before the first) the split's held-out identities are
  identified, their de-identified later images against their first original embedded once by the original judge
  and once by the tuned one; the epoch with the best held-out Rank-1 (ties: higher mean cosine to the originals)
  is kept, and training ends after ``patience`` epochs without a better one. The gallery judge that did better
  there is the one the attack uses on the test protocol. Epoch 0 is the unchanged judge: fine-tuning that does not
  help is not used.

The run is cached and resumable like every training run of the kit (``cache_dir()/runs/attack-finetune-<judge>-
<de-identifier>-<hash>``, the hash covering the recipe, the judge's weights and the pixels it learns from).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deidkit.eval.embeddings import DeidentifiedBatch, recognizer_key
from deidkit.eval.identification import heldout_gallery, heldout_rank1

#: Files of a finished run: the kept weights and what was measured on the held-out identities.
BEST_NAME = "best.pt"
RESULT_NAME = "finetuned.json"


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuned attacker's recipe (see the module docstring). ``quick``: the CPU default; ``tiny``: tests;
    ``long``: more epochs and patience, for a GPU or a night."""

    first_block: int = 12
    epochs: int = 4
    batch_size: int = 32
    lr: float = 3e-4
    anchor_weight: float = 0.5
    patience: int = 2
    seed: int = 0

    @classmethod
    def profile(cls, name: str = "quick", **overrides: object) -> FinetuneConfig:
        presets = {"tiny": dict(epochs=1, batch_size=8), "quick": {}, "long": dict(epochs=12, patience=3)}
        if name not in presets:
            raise ValueError(f"unknown fine-tune profile {name!r}; choose from {sorted(presets)}")
        return cls(**{**presets[name], **overrides})


@dataclass
class FinetuneResult:
    """The kept network (a tuned copy of the judge's, in eval mode) and how it was chosen."""

    network: nn.Module
    weights_sha256: str
    best_epoch: int
    gallery_judge: str
    history: list[dict]
    run_dir: Path
    config: FinetuneConfig


class _Head(nn.Module):
    """The trainable end of a MobileFaceNet: trunk features (N, C, H, W) -> raw embedding (N, 128)."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)


def split_network(network: nn.Module, first_block: int) -> tuple[nn.Sequential, _Head]:
    """(frozen trunk, trainable head) of a MobileFaceNet (CASIA or MS1M layout), sharing its modules: training the
    head changes ``network``. The head starts at bottleneck block ``first_block`` (0-14)."""
    if hasattr(network, "blocks") and hasattr(network, "linear1"):  # CASIA (Xiaoccer)
        blocks = network.blocks
        trunk = [network.conv1, network.dw_conv1]
        end = [network.conv2, network.linear7, network.linear1]
    elif hasattr(network, "features") and hasattr(network, "conv3"):  # MS1M (foamliu)
        blocks = network.features
        trunk = [network.conv1, network.dw_conv]
        end = [network.conv2, network.gdconv, network.conv3, network.bn]
    else:
        raise ValueError(f"{type(network).__name__}: only the kit's MobileFaceNets can be fine-tuned")
    if not 0 <= first_block <= len(blocks):
        raise ValueError(f"first_block must be within 0-{len(blocks)}, got {first_block}")
    return nn.Sequential(*trunk, *blocks[:first_block]), _Head([*blocks[first_block:], *end])


def finetunable(recognizer: object) -> bool:
    """Whether ``recognizer`` is a torch network this attacker can fine-tune (the MobileFaceNets; not dlib)."""
    net = getattr(recognizer, "network", None)
    if not isinstance(net, nn.Module) or not hasattr(recognizer, "preprocess"):
        return False
    try:
        split_network(net, 0)
    except ValueError:
        return False
    return True


@torch.no_grad()
def trunk_features(recognizer, trunk: nn.Module, crops: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """The frozen trunk's output for every crop and, when the recogniser embeds the mirror image too, for its
    mirror image: (N, views, C, H, W) float16 on the CPU (half the memory; the head computes in float32)."""
    device = next(trunk.parameters()).device
    out = []
    for s in range(0, len(crops), batch_size):
        x = recognizer.preprocess(crops[s:s + batch_size]).to(device)
        views = [x, torch.flip(x, dims=[3])] if getattr(recognizer, "flip", False) else [x]
        out.append(torch.stack([trunk(v) for v in views], 1).half().cpu())
    return torch.cat(out)


#: The trunk's features of original crops, by (judge, first block, crops): the same for every de-identifier
#: attacked in one call, so that a sweep over many de-identifiers computes them once.
_ORIGINAL_FEATURES: dict[tuple[str, int, str], torch.Tensor] = {}


def _original_features(recognizer, trunk: nn.Module, first_block: int, crops: np.ndarray) -> torch.Tensor:
    from deidkit.cache import content_digest

    key = (recognizer_key(recognizer), first_block, content_digest(crops))
    if key not in _ORIGINAL_FEATURES:
        while len(_ORIGINAL_FEATURES) >= 4:  # the training and held-out crops of two judges
            _ORIGINAL_FEATURES.pop(next(iter(_ORIGINAL_FEATURES)))
        _ORIGINAL_FEATURES[key] = trunk_features(recognizer, trunk, crops)
    return _ORIGINAL_FEATURES[key]


def head_embedding(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The judge's embedding from trunk features (N, views, C, H, W): each view through the head, concatenated,
    L2-normalised (what the recogniser's ``embed`` returns)."""
    device = next(head.parameters()).device
    x = features.to(device, torch.float32)
    return F.normalize(torch.cat([head(x[:, v]) for v in range(x.shape[1])], 1), dim=1)


def _state_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, shapes, types and values (the tuned judge's identity in caches and records)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous().reshape(-1)
        h.update(f"{key} {tuple(t.shape)} {t.dtype};".encode())
        h.update(memoryview(t.view(torch.uint8).numpy()).cast("B"))
    return h.hexdigest()


def _heldout_scores(head: nn.Module, deid: torch.Tensor, orig: torch.Tensor, target: torch.Tensor,
                    identities: Sequence[str]) -> dict[str, float]:
    """Held-out Rank-1 with the gallery embedded by the original judge and by the tuned one, and the mean cosine of
    de-identified embeddings to their originals' (original judge)."""
    with torch.no_grad():
        e_deid, e_orig = head_embedding(head, deid).cpu(), head_embedding(head, orig).cpu()
    ids = np.asarray(identities)
    gal, probes = heldout_gallery(ids.tolist())
    return {"rank1_gallery_original": heldout_rank1(e_deid[probes].numpy(), target[gal].numpy(), ids[probes], ids[gal]),
            "rank1_gallery_finetuned": heldout_rank1(e_deid[probes].numpy(), e_orig[gal].numpy(), ids[probes],
                                                     ids[gal]),
            "cosine": float((e_deid * target).sum(1).mean()) if len(ids) else float("nan")}


def _score(entry: dict) -> tuple[float, float]:
    """What early stopping maximises: the better gallery's held-out Rank-1, then the mean cosine (nan -> lowest)."""
    ranks = [v for v in (entry["rank1_gallery_original"], entry["rank1_gallery_finetuned"]) if v == v]
    cos = entry["cosine"]
    return (max(ranks) if ranks else -1.0, cos if cos == cos else -1.0)


def _gallery_judge(entry: dict) -> str:
    """The held-out's better gallery judge; the original judge on a tie (the unchanged recogniser)."""
    a, b = entry["rank1_gallery_original"], entry["rank1_gallery_finetuned"]
    return "finetuned" if b == b and (a != a or b > a) else "original"


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_json(obj: object, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class _IndexBatches:
    """Shuffled index batches over ``n`` items; the order depends on (seed, epoch) only."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int) -> None:
        self.order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        self.batch_size = batch_size

    def __len__(self) -> int:
        return max(1, -(-len(self.order) // self.batch_size))

    def __iter__(self):
        for b in range(len(self)):
            yield self.order[b * self.batch_size:(b + 1) * self.batch_size]


def _run_dir(recognizer, deidentifier, config: FinetuneConfig, train: np.ndarray, heldout: np.ndarray,
             train_batch: DeidentifiedBatch, heldout_batch: DeidentifiedBatch | None,
             heldout_identities: Sequence[str]) -> Path:
    """One run per judge (and its weights), de-identifier outputs, recipe and data."""
    from deidkit.cache import content_digest
    from deidkit.checkpoints import runs_dir

    h = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    h.update(recognizer_key(recognizer).encode())
    h.update(content_digest(train, heldout).encode())
    h.update("|".join(train_batch.keys).encode())
    h.update("|".join(heldout_batch.keys if heldout_batch is not None else []).encode())
    h.update("|".join(heldout_identities).encode())
    return runs_dir() / f"attack-finetune-{recognizer.name}-{deidentifier.name}-{h.hexdigest()[:12]}"


def train_finetune(recognizer, deidentifier, train_crops: np.ndarray, heldout_crops: np.ndarray,
                   heldout_identities: Sequence[str], config: FinetuneConfig | None = None,
                   run_dir: str | os.PathLike | None = None, progress: bool = True,
                   train_batch: DeidentifiedBatch | None = None,
                   heldout_batch: DeidentifiedBatch | None = None) -> FinetuneResult:
    """Fine-tune a copy of ``recognizer``'s last blocks against ``deidentifier`` (train, resume, or load the
    finished run). ``train_crops`` / ``heldout_crops``: canonical crops of the attacker's training and held-out
    images (``heldout_identities`` names the latter's people); the batches, when given, hold the de-identifier's
    outputs on them (computed only if the run is not finished). Returns the kept network and its record."""
    from deidkit.train.loop import TrainingRun

    config = config or FinetuneConfig()
    train_batch = train_batch or DeidentifiedBatch(deidentifier, train_crops)
    if heldout_batch is None and len(heldout_crops):
        heldout_batch = DeidentifiedBatch(deidentifier, heldout_crops)
    if len(heldout_identities) != len(heldout_crops):
        raise ValueError(f"{len(heldout_crops)} held-out crops but {len(heldout_identities)} identities")
    run_dir = Path(run_dir) if run_dir is not None else _run_dir(
        recognizer, deidentifier, config, train_crops, heldout_crops, train_batch, heldout_batch, heldout_identities)
    run_dir.mkdir(parents=True, exist_ok=True)
    network = copy.deepcopy(recognizer.network).eval()
    result_path, best_path = run_dir / RESULT_NAME, run_dir / BEST_NAME
    if result_path.is_file() and best_path.is_file():  # finished: nothing to compute
        done = json.loads(result_path.read_text())
        network.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
        return FinetuneResult(network.eval(), done["weights_sha256"], done["best_epoch"], done["gallery_judge"],
                              done["history"], run_dir, config)

    torch.manual_seed(config.seed)
    trunk, head = split_network(network, config.first_block)
    for p in network.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    # the trunk never changes: its features are computed once, for the originals and the de-identified images
    feats = {"train_orig": _original_features(recognizer, trunk, config.first_block, train_crops),
             "train_deid": trunk_features(recognizer, trunk, train_batch.outputs)}
    held = heldout_batch is not None
    if held:
        feats["held_orig"] = _original_features(recognizer, trunk, config.first_block, heldout_crops)
        feats["held_deid"] = trunk_features(recognizer, trunk, heldout_batch.outputs)
    with torch.no_grad():  # the targets: the untouched judge's embeddings of the originals
        target = head_embedding(head, feats["train_orig"]).cpu()
        held_target = head_embedding(head, feats["held_orig"]).cpu() if held else None
    opt = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=config.lr)
    run = TrainingRun(run_dir, {"head": head}, {"adam": opt}, seed=config.seed,
                      config={**asdict(config), "judge": recognizer_key(recognizer), "deidentifier": deidentifier.name},
                      show_progress=progress)

    def make_loader(epoch: int) -> _IndexBatches:
        return _IndexBatches(len(train_crops), config.batch_size, config.seed, epoch)

    def step(idx: torch.Tensor, epoch: int, global_step: int) -> dict[str, float]:
        head.eval()  # BatchNorm keeps the judge's running statistics
        t = target[idx].to(next(head.parameters()).device)
        pull = 1 - (head_embedding(head, feats["train_deid"][idx]) * t).sum(1).mean()
        loss = pull
        if config.anchor_weight:
            anchor = 1 - (head_embedding(head, feats["train_orig"][idx]) * t).sum(1).mean()
            loss = pull + config.anchor_weight * anchor
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach()), "pull": float(pull.detach())}

    history_path = run_dir / "heldout.json"
    history: list[dict] = json.loads(history_path.read_text()) if history_path.is_file() else []
    for epoch in range(config.epochs + 1):
        if epoch:
            run.fit(make_loader, step, epoch, desc=f"fine-tune {recognizer.name} vs {deidentifier.name}",
                    total_epochs=config.epochs)
            if run.stopped:  # a time limit (deidkit train's options): the next call resumes here
                from deidkit.train.limits import TimeLimitReached

                raise TimeLimitReached(f"{run_dir}: fine-tuning stopped at its time limit; run again to resume")
        if len(history) <= epoch:  # measured once per epoch, also across an interruption
            entry = {"epoch": epoch, **(_heldout_scores(head, feats["held_deid"], feats["held_orig"], held_target,
                                                        heldout_identities) if held else
                                        {"rank1_gallery_original": float("nan"),
                                         "rank1_gallery_finetuned": float("nan"), "cosine": float("nan")})}
            best_so_far = max((_score(e) for e in history), default=None)
            history.append(entry)
            if best_so_far is None or _score(entry) > best_so_far or not held:
                _atomic_save(network.state_dict(), best_path)  # without held-out images the last epoch is kept
            _atomic_json(history, history_path)
        best = max(range(len(history)), key=lambda e: (_score(history[e]), -e)) if held else len(history) - 1
        if held and epoch - best >= config.patience:
            break
    best = max(range(len(history)), key=lambda e: (_score(history[e]), -e)) if held else len(history) - 1
    network.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
    sha = _state_sha256(network.state_dict())
    judge = _gallery_judge(history[best]) if held else "original"
    _atomic_json({"best_epoch": best, "gallery_judge": judge, "history": history, "weights_sha256": sha,
                  "config": asdict(config)}, result_path)
    return FinetuneResult(network.eval(), sha, best, judge, history, run_dir, config)


def tuned_recognizer(recognizer, result: FinetuneResult):
    """``recognizer`` with the fine-tuned network: the same crop, normalisation and mirror image, its own name
    (``<judge>_finetuned``) and weights hash, so that its embeddings are cached apart from the judge's."""
    tuned = copy.copy(recognizer)
    tuned.network = result.network.to(getattr(recognizer, "device", "cpu")).eval()
    tuned.name = f"{recognizer.name}_finetuned"
    tuned.weights_sha256 = result.weights_sha256
    return tuned


__all__ = ["BEST_NAME", "RESULT_NAME", "FinetuneConfig", "FinetuneResult", "finetunable", "head_embedding",
           "split_network", "train_finetune", "trunk_features", "tuned_recognizer"]
