"""FaDeNet's configuration: :class:`FaDeNetConfig` and the profiles a user runs. The recipes that were tried, and
the fine-tuning chains the shipped models come from, are data in :mod:`deidkit.configs.experiments`;
:meth:`FaDeNetConfig.profile` resolves those names too."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from deidkit.configs._base import SpeedOptions, resolve
from deidkit.configs.critic import CriticConfig
from deidkit.configs.experiments import FADENET_EXPERIMENTS
from deidkit.data.templates import CANONICAL_ZOOM

#: The critic backbone's low-level maps that FaDeNet's feature term ties to the original's (``feature_layers=()``).
DEFAULT_FEATURE_LAYERS = ("dw_conv", "stage1")

#: The critic backbone's mid-level maps that FaDeNet's push term moves off the original's (``push_layers=()``).
DEFAULT_PUSH_LAYERS = ("stage2", "stage3")

# CPU hours, the base of every shipped FaDeNet: 96-pixel crops (the critic's own side), a wider residual U-Net, the
# critic's loss averaged over random views of the output (only changes that survive resampling pay off) and capped at
# ln(393) ~ 6 nats (chance for the critic's 393 identities), a squared edge term, a small LSGAN discriminator, the
# correction smoothed by 1.5 px, the face box seen blurred (3 px: the U-Net paints detail of its own instead of
# keeping the input's), the critic's embedding pushed below a cosine of 0.1, its low-level maps kept and a small term
# that keeps the face detectable. The measurements behind each number: deidkit.configs.experiments, "standard".
_STANDARD: dict[str, Any] = dict(
    image_size=96, unet_width=24, unet_depth=3, residual=True, out_activation="tanh", lam=0.03, ce_cap=6.0,
    edge_weight=3.0, critic_views=2, adv_weight=0.1, smooth_sigma=1.5, input_sigma=3.0, embed_weight=0.5,
    embed_margin=0.1, feature_weight=0.05, detect_weight=0.05, lr=1e-3, batch_size=8, epochs=8, critic_profile="quick")

PRESETS: dict[str, dict[str, Any]] = {
    # Seconds, for tests and notebook smoke runs.
    "tiny": dict(image_size=64, unet_width=8, unet_depth=2, residual=True, out_activation="tanh",
                 lam=0.03, lr=2e-3, batch_size=8, epochs=1, critic_profile="tiny"),
    # CPU minutes; deidkit.train.fadenet's docstring has the measurements behind lambda, lr and the tanh output.
    "quick": dict(image_size=64, unet_width=16, unet_depth=3, residual=True, out_activation="tanh",
                  lam=0.03, lr=2e-3, batch_size=8, epochs=6, critic_profile="quick"),
    "standard": _STANDARD,
    # A GPU's minutes (scripts/gpu_train_fadenet.py plans the epochs to a time budget; the crops travel in a pack):
    # the standard recipe from scratch, four times the batch, bf16, and the discriminator's weight tripled, since what
    # the CPU runs lacked was steps for the adversarial term to make the output a face (the live model went from
    # ghost-like on 2 CPU cores to natural faces on one H200). Not run yet.
    "gpu": {**_STANDARD, "batch_size": 32, "amp": True, "channels_last": True, "adv_weight": 0.3, "epochs": 100},
    # The paper: 224-pixel crops, a 4-level U-Net of width 64 with a linear output, lambda 1e-3, lr 1e-5, 40 epochs.
    "paper": dict(image_size=224, unet_width=64, unet_depth=4, residual=False, out_activation="none",
                  lam=1e-3, lr=1e-5, batch_size=32, epochs=40, critic_profile="paper", amp=True,
                  channels_last=True, workers=4),
}

#: The profile each shipped FaDeNet was trained with (deidkit/weights/manifest.json, ``config.profile_name``): a chain
#: of fine-tuning steps from "standard" (``init_from`` names the previous step's run), written out with its
#: measurements in :mod:`deidkit.configs.experiments`: subspace -> subspace_push_m -> subspace_shape (the standard
#: terms over a 64-component face-detail basis plus a warp along real faces' geometry, no discriminator, the critic's
#: stage-3 maps pushed off the original's). The recipes of the retired FaDeNets stay there too
#: (:data:`deidkit.shipped.RETIRED`).
SHIPPED = {"fadenet": "subspace_shape"}

#: Every name :meth:`FaDeNetConfig.profile` accepts (the tried and shipped recipes resolved from the experiments
#: module), in the order the CLI lists them.
FADENET_PROFILES = ("tiny", "quick", "standard", *FADENET_EXPERIMENTS, "gpu", "paper")


@dataclass
class FaDeNetConfig(SpeedOptions):
    """One FaDeNet experiment. Build with :meth:`profile` (``tiny``, ``quick``, ``paper``) plus overrides."""

    profile_name: str = "quick"
    image_size: int = 64
    unet_width: int = 16
    unet_depth: int = 3
    residual: bool = True  # not in the paper: learn a correction to the input (see deidkit.models.unet)
    out_activation: str = "tanh"  # the paper profile uses "none" (a plain 1x1 convolution)
    lam: float = 0.03
    ce_cap: float | None = None  # None: the paper's unbounded loss; a number: the bounded variant
    edge_weight: float = 0.0  # 0: the paper; > 0 penalises painted high-frequency patterns (see losses)
    critic_views: int = 0  # 0: the critic sees the output as is (paper); k: the mean CE over k random views
    adv_weight: float = 0.0  # 0: the paper; > 0: an LSGAN discriminator keeps the output a natural face
    smooth_sigma: float = 0.0  # 0: the paper; > 0: the U-Net's correction is Gaussian-smoothed (pixels)
    input_sigma: float = 0.0  # 0: the paper; > 0: the U-Net sees its input's face box Gaussian-blurred (pixels)
    input_region: float | None = None  # the blurred face box's side as a fraction of the crop; None: CANONICAL_ZOOM
    embed_weight: float = 0.0  # 0: the paper; > 0: the critic's embedding of the output is pushed off the input's
    embed_margin: float = 0.0  # cosine below which an image stops pushing (then only image quality pulls it)
    diversity_weight: float = 0.0  # 0: the paper; > 0: outputs of different people stay as far apart in the critic's
    # embedding as their originals are (not one change for every face; see losses.fadenet.output_collapse)
    feature_weight: float = 0.0  # 0: the paper; > 0: the critic's low-level feature maps stay the original's
    feature_layers: tuple[str, ...] = ()  # which backbone stages; (): DEFAULT_FEATURE_LAYERS
    push_weight: float = 0.0  # 0: the paper; > 0: the critic's mid-level feature maps are pushed off the input's
    push_layers: tuple[str, ...] = ()  # which backbone stages; (): DEFAULT_PUSH_LAYERS
    push_margin: float = 0.0  # cosine of the flattened maps below which an image stops pushing
    push_on_views: bool = False  # True: the push term also over the critic views (each paired with the same view
    # of the input), so that only map changes that survive resampling and misalignment pay off
    detect_weight: float = 0.0  # 0: the paper; > 0: MTCNN's ONet must still call the face box a face
    chroma_weight: float = 0.0  # 0: the paper; > 0: the output's smoothed colour (Cb, Cr) stays the input's
    luma_only: bool = False  # False: the paper; True: the U-Net changes luminance only (the input's chroma is kept)
    ssim_weight: float = 0.0  # 0: the paper; > 0: (1 - SSIM) of output and input, the evaluation's quality measure
    teacher: str | None = None  # None: the paper; a de-identifier's name ("live": the shipped one): the image terms
    # (unit-norm distance, edges, low-level maps) pull the output to that de-identifier's output instead of the input
    teacher_weight: float = 0.0  # > 0 (with a teacher): plus this times the mean absolute pixel difference to it
    detail_basis: int = 0  # 0: the paper; K > 0: the correction is K face-detail components (see models.unet.UNet)
    shape_warp: int = 0  # 0: the paper; G > 1 (with detail_basis): also a G x G smooth warp of the face box
    warp_px: float = 0.0  # the warp's largest displacement in pixels at image_size (with shape_warp)
    shape_basis: int = 0  # 0: the paper; K > 0 (with detail_basis): the warp moves the face along K modes of real
    # faces' geometry (see models.unet.UNet), its coefficients' length at most shape_bound standard deviations
    shape_bound: float = 0.0
    # not in the paper: the live defend recipe's online adaptive attacker (deidkit.train.adversary) on the critic's
    # embedding: the U-Net pays this weight times the cosine a freshly fitted linear head reads back above the
    # margin. Bank and ridge must be set with the term (0 = off by default, so runs and sweep hashes made before
    # these fields existed stay the same experiments).
    adversary_weight: float = 0.0
    adversary_margin: float = 0.0
    adversary_bank: int = 0
    adversary_ridge: float = 0.0
    lr: float = 2e-3
    batch_size: int = 8
    epochs: int = 3
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # > 0: a torch DataLoader with this many workers (and pinned memory on CUDA) augments
    critic_profile: str = "quick"  # the CriticConfig profile of the critic to train against
    critic_run: str = ""  # run directory name of the critic (default: that profile's default name)
    # not in the paper: a second frozen critic (a CriticConfig profile, e.g. "robust") whose embedding and mid-level
    # maps the embed and push terms also move (the mean over both): what moves two networks carries further
    extra_critic_profile: str = ""
    run_name: str = ""  # default: fadenet-<profile_name>
    init_from: str | None = None  # start from "pretrained:fadenet" (the shipped U-Net) or a run's epoch snapshot
    crop_pack: str | None = None  # train from this crop pack (deidkit data pack --critic-identities) instead of LFW

    @classmethod
    def profile(cls, name: str = "quick", **overrides: Any) -> FaDeNetConfig:
        """The named profile with ``overrides`` applied (papermill passes them as parameters)."""
        if name not in FADENET_PROFILES:
            raise ValueError(f"unknown FaDeNet profile {name!r}; choose from {sorted(FADENET_PROFILES)}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown FaDeNetConfig fields {sorted(unknown)}")
        cfg = cls(profile_name=name, **{**resolve(name, PRESETS, FADENET_EXPERIMENTS), **overrides})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.image_size < 32:
            raise ValueError(f"image_size {self.image_size} is too small for a face crop (>= 32)")
        if self.lam < 0:
            raise ValueError(f"lambda must be >= 0, got {self.lam}")
        if self.ce_cap is not None and self.ce_cap <= 0:
            raise ValueError(f"ce_cap must be positive or None, got {self.ce_cap}")
        if self.adversary_weight and (self.adversary_ridge <= 0 or self.adversary_bank < 2):
            raise ValueError(f"adversary: with adversary_weight, a ridge > 0 and a bank of >= 2 pairs, got "
                             f"{self.adversary_ridge}, {self.adversary_bank}")
        for margin in ("embed_margin", "push_margin", "adversary_margin"):
            if not -1.0 <= getattr(self, margin) < 1.0:
                raise ValueError(f"{margin} is a cosine in [-1, 1), got {getattr(self, margin)}")
        weights = dict(edge_weight=self.edge_weight, critic_views=self.critic_views, adv_weight=self.adv_weight,
                       embed_weight=self.embed_weight, input_sigma=self.input_sigma,
                       feature_weight=self.feature_weight, detect_weight=self.detect_weight,
                       chroma_weight=self.chroma_weight, push_weight=self.push_weight,
                       ssim_weight=self.ssim_weight, teacher_weight=self.teacher_weight,
                       adversary_weight=self.adversary_weight, diversity_weight=self.diversity_weight)
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise ValueError(f"these FaDeNet weights must be >= 0: {negative}")
        if self.extra_critic_profile and not (self.embed_weight or self.push_weight):
            raise ValueError("extra_critic_profile needs the embed or push term (embed_weight or push_weight > 0)")
        if self.extra_critic_profile:
            extra = CriticConfig.profile(self.extra_critic_profile)
            if extra.kind != "mobilefacenet" or extra.name == self.critic_config().name:
                raise ValueError(f"extra_critic_profile {self.extra_critic_profile!r}: a MobileFaceNet critic other "
                                 f"than the main one ({self.critic_config().name})")
        if self.teacher_weight and not self.teacher:
            raise ValueError(f"teacher_weight {self.teacher_weight} needs a teacher de-identifier (teacher=...)")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"bad schedule: epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}")
        if self.detail_basis < 0 or self.detail_basis and not (self.residual and self.out_activation == "tanh"
                                                               and self.input_sigma and not self.luma_only):
            raise ValueError("detail_basis needs residual=True, out_activation='tanh', input_sigma > 0 and no luma_only")
        if self.shape_warp < 0 or self.warp_px < 0 or bool(self.shape_warp) != bool(self.warp_px) or (
                self.shape_warp and (self.shape_warp < 2 or not self.detail_basis)):
            raise ValueError(f"shape_warp (a grid of >= 2) needs warp_px > 0 and a detail_basis, got "
                             f"{self.shape_warp}, {self.warp_px}")
        if self.shape_basis < 0 or self.shape_bound < 0 or bool(self.shape_basis) != bool(self.shape_bound) or (
                self.shape_basis and (self.shape_warp or not self.detail_basis)):
            raise ValueError(f"shape_basis needs shape_bound > 0, a detail_basis and no shape_warp, got "
                             f"{self.shape_basis}, {self.shape_bound}")

    @property
    def name(self) -> str:
        return self.run_name or f"fadenet-{self.profile_name}"

    @property
    def face_region(self) -> float:
        """The side of the face box the input blur covers, as a fraction of the crop."""
        return CANONICAL_ZOOM if self.input_region is None else float(self.input_region)

    def critic_config(self) -> CriticConfig:
        overrides = {"run_name": self.critic_run} if self.critic_run else {}
        return CriticConfig.profile(self.critic_profile, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

