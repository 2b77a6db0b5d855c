"""The live model's detail stage's configuration: :class:`DetailConfig` and its profiles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DETAIL_PROFILES = ("tiny", "quick", "smooth", "gpu")


@dataclass
class DetailConfig:
    """The live model's detail stage (:class:`deidkit.models.detail.DetailNet`): a 2x super-resolution GAN
    trained on training-pool faces. Build with :meth:`profile`. The stage enlarges the live generator's
    ``size``-pixel face to ``2 * size``; it learns from real faces made smaller and softer (a Gaussian blur of
    up to ``blur_max`` output pixels before the reduction, as soft as the generator's faces)."""

    profile_name: str = "quick"
    size: int = 64  # the input side (the live generator's); the output is twice this
    crop_fraction: float = 0.8  # the part of the canonical crop the live generator sees
    channels: int = 48
    blocks: int = 6
    upsample: str = "nearest"  # the network's feature enlargement (deidkit.models.detail.DetailNet)
    input_filter: bool = False  # a binomial filter on the input first (DetailNet: no 4-pixel stripes)
    disc_channels: int = 32
    blur_max: float = 1.5
    # training on random square patches of this side of the real face (0: the whole face): a patch of 64
    # output pixels costs a quarter of the 128-pixel face and holds the same kinds of detail
    patch: int = 64
    feature_layers: tuple[str, ...] = ("conv1", "dw_conv", "stage1")
    # the feature term compares output and original shifted together by a random 0..feature_shift pixels, so that
    # no pattern hides at one alignment of the strided feature network (alone it left the 4-pixel stripes as they
    # were: they come from the generator's faces, see input_filter)
    feature_shift: int = 0
    # the live generator's faces carry a faint pattern at their finest period (alternate columns), which a stage
    # trained on real faces alone enlarges into 4-pixel stripes. With input_grid > 0 every training input gets such
    # patterns (smooth random envelopes, amplitudes up to this, in [-1, 1] units) while the target stays clean; tried
    # at 0.03, it removed the stripes but drew a diagonal line instead (input_filter removes both)
    input_grid: float = 0.0
    # adv 0.5 with the live generator's faces as unpaired inputs (teacher) drew stripes within 400 steps: those faces
    # have no sharp original to anchor their detail, and a stripe costs nothing in the low band
    weights: dict[str, float] = field(default_factory=lambda: {"l1": 0.1, "low": 1.0, "feat": 1.0, "adv": 0.1})
    manifest: str = "lfw_train_pool"
    max_images: int | None = None
    crop_pack: str | None = None  # a crop pack of the manifest (``deidkit data pack``): trains without LFW
    # a shipped live model whose generator's faces (raw, before blending) are also trained on, unpaired: they have
    # no sharp original, so they get only the keep-the-face and the look-real terms; the stage then learns the
    # generator's own softness, not only that of a reduced photo
    teacher: str | None = None
    batch_size: int = 16
    epochs: int = 10
    epoch_steps: int = 200
    lr: float = 1e-4
    disc_lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.99)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> DetailConfig:
        quick = dict(channels=32, blocks=4, feature_layers=("conv1", "dw_conv"), max_images=3000, epochs=4,
                     epoch_steps=200, blur_max=3.0)
        presets: dict[str, dict[str, Any]] = {
            "tiny": dict(channels=8, blocks=1, disc_channels=8, max_images=16, batch_size=4, epochs=2, patch=32,
                         epoch_steps=2),
            # 2 CPU cores: about 0.5 s a step
            "quick": quick,
            # quick without its 4-pixel stripes (faces shown large, HD video): the input filtered first and the
            # feature term read at random shifts; on the selection faces the stripes' spectral line falls from
            # 9.6 to 1.3 dB and the sharpness ratio from 0.49 to 0.46 (the whole difference lies in the stripes'
            # band), about 8 CPU minutes; use it as live+detail-smooth
            "smooth": dict(quick, input_filter=True, feature_shift=3),
            "gpu": dict(channels=64, blocks=12, disc_channels=64, batch_size=64, epochs=40, epoch_steps=250),
        }
        if name not in presets:
            raise ValueError(f"unknown profile {name!r}; choose one of {DETAIL_PROFILES}")
        cfg = cls(profile_name=name, **presets[name])
        for k, v in overrides.items():
            if not hasattr(cfg, k):
                raise ValueError(f"DetailConfig has no field {k!r}")
            setattr(cfg, k, tuple(v) if isinstance(v, list) else v)
        return cfg
