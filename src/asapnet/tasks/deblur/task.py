"""Motion deblurring with DeblurGAN, ASAP-Net and the MSG U-Net.

Library functions:

* :class:`WGANGPTrainer` - DeblurGAN's optimisation (CVPR 2018 §3.1): a PatchGAN critic trained
  with the Wasserstein loss and gradient penalty (λ_GP = 10, 5 critic steps per generator step),
  the generator with -E[D(G(x))] + λ_content * MSE(VGG19 conv3_3) (λ 100) (+ optional L1); Adam
  lr 1e-4, betas (0.5, 0.999). It is a :class:`asapnet.train.Trainer`, so checkpoints are the
  atomic safetensors files of :mod:`asapnet.checkpoint` and ``train(..., resume=True)`` resumes.
* :class:`MSGTrainer` - MSG U-Net training (hinge GAN with one PatchGAN per output scale,
  feature matching, optional VGG/L1), for label->photo and image->image.
* :func:`train_deblur` - train a generator on synthetic blur (:mod:`asapnet.data.blur`) or on
  GoPro-style pairs, optionally within a wall-clock budget.
* :func:`evaluate_deblur` - PSNR/SSIM (and FID when its weights exist) on a held-out set with
  deterministic blur, for several models side by side (the blurred input is the first row).
* :func:`deblur_files`, :func:`time_models`.

Value convention: images are float32 (N, 3, H, W) in [-1, 1] inside the models; metrics are on
the 0-255 scale (data_range 255) after rounding outputs to 8 bits, PSNR per image then averaged,
SSIM with torchmetrics' 11x11 Gaussian window.

CLI glue (wired into :mod:`asapnet.cli` by the lead): :func:`add_train_deblur_args`,
:func:`cmd_train_deblur`, :func:`add_evaluate_deblur_args`, :func:`cmd_evaluate_deblur`,
:func:`add_deblur_parser`, :func:`cmd_deblur`. Stand-alone:
``python -m asapnet.deblur {train,evaluate,deblur} ...``.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ...config import ASAPConfig, DiscriminatorConfig, TrainConfig
from ...console import progress as _progress, quiet as _quiet
from ...data.blur import (BlurConfig, BlurTestDataset, PairedBlurDataset, SyntheticBlurDataset, load_rgb, quantize,
                        deterministic_blur, to_uint8_image)
from ...data.datasets import data_root
from ...data.io import DataError, PathLike, list_images
from ...losses.perceptual import PretrainedWeightsUnavailable, feature_matching_loss, hinge_d_loss, hinge_g_loss
from ...models import create_model
from ...models.deblurgan import PatchCritic
from ...models.msg_unet import MSGDiscriminator, MSGUNet, pyramid
# the CLI's argument builders live in asapnet.parsers (no torch); re-exported here
from ..restore import restore_files
from ...training.trainer import Trainer, _random_region, prepare_run_dir, train

logger = logging.getLogger(__name__)

#: ASAP-Net for RGB deblurring: S = 4 (the LR stream sees the image at full resolution), instance
#: norm, no spectral norm, residual output (input + per-pixel MLP output), no tanh.
ASAP_DEBLUR_PRESET: Dict[str, Any] = dict(in_channels=3, out_channels=3, s1=1, s2=4, lr_width=32, lr_max_width=128,
                                          lr_depth=4, hr_width=32, hr_depth=4, norm="instance", spectral_norm=False,
                                          output_activation="none", residual=True, first_norm=False, hr_slope=0.2)
#: Small DeblurGAN of the CPU comparison (the paper's is ngf=64, 9 blocks: ``create_model("deblurgan")``).
DEBLURGAN_CPU: Dict[str, Any] = dict(ngf=16, n_blocks=9, dropout=0.0)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------


class VGGContentLoss(nn.Module):
    """DeblurGAN's perceptual ("content") loss: MSE between VGG19 conv3_3 feature maps (before
    the ReLU, layer index 14 of torchvision's ``vgg19().features``) of the restored and sharp images.

    Inputs (N, 3, H, W) in [-1, 1], mapped to ImageNet-normalised [0, 1] (the reference code feeds
    [-1, 1] directly). Uses torchvision's ``VGG19_Weights.IMAGENET1K_V1`` unless ``features`` (any
    module taking (N, 3, H, W)) is injected, e.g. a small random net in tests.

    Raises:
        PretrainedWeightsUnavailable: standard weights cannot be loaded (offline); train with
            ``lambda_content=0`` (``--no-vgg``) instead.
    """

    LAYER = 14  # conv3_3

    def __init__(self, features: Optional[nn.Module] = None):
        super().__init__()
        if features is None:
            from torchvision.models import VGG19_Weights, vgg19
            try:
                features = vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features[: self.LAYER + 1]
            except Exception as e:  # network errors come in many types
                raise PretrainedWeightsUnavailable(
                    f"cannot load the VGG19 ImageNet weights ({type(e).__name__}: {e}); "
                    "connect to the internet once to cache them, or train with --no-vgg") from None
        self.features = features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        f = self.features(((fake + 1) / 2 - self.mean) / self.std)
        with torch.no_grad():
            r = self.features(((real + 1) / 2 - self.mean) / self.std)
        return F.mse_loss(f, r)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): E[(||∇_x̂ D(x̂)||_2 - 1)^2] at x̂ = a real + (1 - a) fake,
    a ~ U[0, 1] per sample, the norm over all of a sample's pixels and channels."""
    a = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    xh = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    out = critic(xh)
    (g,) = torch.autograd.grad(out.sum(), xh, create_graph=True)
    return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


# ---------------------------------------------------------------------------------------------
# trainers
# ---------------------------------------------------------------------------------------------


@dataclass
class WGANGPConfig:
    """DeblurGAN's adversarial setup (CVPR 2018 §3.1, reference ``train_options.py``).

    Attributes:
        critic_iters: critic updates per generator update (5).
        gp_lambda: gradient-penalty weight (10).
        lambda_adv: weight of the generator's adversarial term (1).
        lambda_content: weight of the VGG19 conv3_3 MSE (100); 0 turns the VGG loss off.
        lambda_l1: optional L1 reconstruction weight (0 in the paper).
        ndf, n_layers, norm: critic width, depth (3 = 70x70 PatchGAN) and normalisation.
        conditional: feed [blurred, image] to the critic (DeblurGAN's critic sees the image only).
        beta1, beta2: Adam betas (0.5, 0.999); the learning rates are ``TrainConfig.lr_g/lr_d``.
    """

    critic_iters: int = 5
    gp_lambda: float = 10.0
    lambda_adv: float = 1.0
    lambda_content: float = 100.0
    lambda_l1: float = 0.0
    ndf: int = 64
    n_layers: int = 3
    norm: str = "instance"
    conditional: bool = False
    beta1: float = 0.5
    beta2: float = 0.999


class WGANGPTrainer(Trainer):
    """:class:`asapnet.train.Trainer` with DeblurGAN's WGAN-GP critic and content loss.

    ``cfg.gan`` must be True and ``cfg.lambda_vgg`` 0 (the content loss lives in ``gp``).
    ``cfg.lr_g``/``cfg.lr_d`` are the Adam learning rates (DeblurGAN: 1e-4 both), betas come
    from ``gp``. Checkpoints hold G, the critic (as ``D``), both optimisers and the RNG states.

    Args:
        content: content-loss module (default :class:`VGGContentLoss` when
            ``gp.lambda_content > 0``).

    Raises:
        ValueError: ``cfg.gan`` False or ``cfg.lambda_vgg`` > 0.
        PretrainedWeightsUnavailable: VGG19 weights needed but not available.
    """

    def __init__(self, generator: nn.Module, model_name: str, model_config: Dict[str, Any], cfg: TrainConfig,
                 gp: WGANGPConfig, out_dir: PathLike, content: Optional[nn.Module] = None,
                 extra_meta: Optional[Dict[str, Any]] = None, in_channels: int = 3, out_channels: int = 3):
        if not cfg.gan or cfg.lambda_vgg > 0:
            raise ValueError("WGANGPTrainer needs cfg.gan=True and cfg.lambda_vgg=0 (content loss: gp.lambda_content)")
        # the base class builds a (tiny, discarded) multi-scale discriminator; the critic replaces it
        super().__init__(generator, model_name, model_config, DiscriminatorConfig(in_channels=1, ndf=1, n_layers=1,
                         num_scales=1, spectral_norm=False), cfg, out_dir, extra_meta=extra_meta)
        self.gp = gp
        c_in = in_channels + out_channels if gp.conditional else out_channels
        self.D = PatchCritic(c_in, gp.ndf, gp.n_layers, gp.norm).to(self.device)
        self.D_train = self.D
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(gp.beta1, gp.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(gp.beta1, gp.beta2))
        if gp.lambda_content > 0 and content is None:
            content = VGGContentLoss()
        self.content = content.to(self.device) if (content is not None and gp.lambda_content > 0) else None

    def meta(self) -> Dict[str, Any]:
        m = super().meta()
        m.pop("discriminator", None)
        m["critic"] = asdict(self.gp)
        return m

    def _critic_in(self, cond: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        return torch.cat([cond, img], 1) if self.gp.conditional else img

    def train_step(self, batch: Dict[str, Any]) -> Dict[str, float]:
        """``critic_iters`` critic steps on one generated batch, then one generator step."""
        self.G.train()
        self.D.train()
        x = batch["input"].to(self.device)
        y = batch["target"].to(self.device)
        with self.autocast():
            fake, cond, real = self._forward(x, y)
        logs: Dict[str, float] = {}
        real_in, fake_in = self._critic_in(cond, real), self._critic_in(cond, fake.detach())
        for _ in range(self.gp.critic_iters):
            with self.autocast():
                w_dist = (self.D(real_in).mean() - self.D(fake_in).mean()).float()
            # the penalty's input gradient in float32, outside autocast: a double backward
            # through reduced precision (and, with fp16, an unscaled inner gradient) is not worth it
            pen = gradient_penalty(self.D, real_in.float(), fake_in.float())
            loss_d = -w_dist + self.gp.gp_lambda * pen
            self.optimize(self.opt_d, loss_d)
        logs["D/wasserstein"], logs["D/gp"] = w_dist.item(), pen.item()
        for p in self.D.parameters():
            p.requires_grad_(False)
        with self.autocast():
            adv = -self.D(self._critic_in(cond, fake)).mean()
        for p in self.D.parameters():
            p.requires_grad_(True)
        with self.autocast():
            loss_g = self.gp.lambda_adv * adv
            logs["G/adv"] = adv.item()
            if self.content is not None:
                c = self.content(fake, real)
                logs["G/content"] = c.item()
                loss_g = loss_g + self.gp.lambda_content * c
            if self.gp.lambda_l1 > 0:
                l1 = (fake - real).abs().mean()
                logs["G/l1"] = l1.item()
                loss_g = loss_g + self.gp.lambda_l1 * l1
        return self.finish_g_step(loss_g, logs, cond, fake, real)


class MSGTrainer(Trainer):
    """:class:`asapnet.train.Trainer` for :class:`~asapnet.models.msg_unet.MSGUNet`: the hinge GAN
    of :mod:`asapnet.train` with one PatchGAN per output scale (MSG U-Net §2.2-2.3): every scale's
    discriminator sees [source, image] at that scale; the generator gets the hinge loss and
    ``cfg.lambda_feat`` x feature matching summed over scales, plus ``cfg.lambda_vgg`` x VGG on the
    finest output and ``cfg.lambda_l1`` x L1 on every scale.

    Training crops (``cfg.crop``) are aligned to 2^n_down so the pyramids line up.

    Args:
        in_channels: source channels (36 for Cityscapes labels + edges, 3 for images).
        ndf, n_layers: width and depth of each scale's PatchGAN.

    Raises:
        ValueError: ``generator`` is not an MSGUNet or ``cfg.gan`` is False.
    """

    def __init__(self, generator: MSGUNet, model_name: str, model_config: Dict[str, Any], cfg: TrainConfig,
                 out_dir: PathLike, in_channels: int, ndf: int = 64, n_layers: int = 3,
                 vgg: Optional[nn.Module] = None, num_classes: Optional[int] = None,
                 extra_meta: Optional[Dict[str, Any]] = None):
        if not isinstance(generator, MSGUNet) or not cfg.gan:
            raise ValueError("MSGTrainer trains an MSGUNet with cfg.gan=True")
        super().__init__(generator, model_name, model_config, DiscriminatorConfig(in_channels=1, ndf=1, n_layers=1,
                         num_scales=1, spectral_norm=False), cfg, out_dir, vgg=vgg, num_classes=num_classes,
                         extra_meta=extra_meta)
        self.msg_d = {"in_channels": in_channels + generator.out_channels, "num_scales": generator.num_outputs,
                      "ndf": ndf, "n_layers": n_layers}
        self.D = MSGDiscriminator(**self.msg_d).to(self.device)
        self.D_train = self.D
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))

    def meta(self) -> Dict[str, Any]:
        m = super().meta()
        m["discriminator"] = self.msg_d
        return m

    def train_step(self, batch: Dict[str, Any]) -> Dict[str, float]:
        """One step of all discriminators, then one generator step."""
        self.G.train()
        self.D.train()
        x = batch["input"].to(self.device)
        y = batch["target"].to(self.device)
        align = 2 ** self.G.n_down
        t, l, h, w = _random_region(x.shape[-2], x.shape[-1], self.cfg.crop, align)
        x, y = x[..., t:t + h, l:l + w], y[..., t:t + h, l:l + w]
        n = self.G.num_outputs
        with self.autocast():
            fakes = self.G.forward_multiscale(x)
        conds, reals = pyramid(x, n), pyramid(y, n)
        logs: Dict[str, float] = {}
        with self.autocast():
            d_real = self.D(conds, reals)
            d_fake = self.D(conds, [f.detach() for f in fakes])
            loss_d = hinge_d_loss(d_real, d_fake)
        self.optimize(self.opt_d, loss_d)
        logs["D/hinge"] = loss_d.item()
        for p in self.D.parameters():
            p.requires_grad_(False)
        with self.autocast():
            g_fake = self.D(conds, fakes)
        for p in self.D.parameters():
            p.requires_grad_(True)
        with self.autocast():
            loss_g = hinge_g_loss(g_fake)
            logs["G/hinge"] = loss_g.item()
            if self.cfg.lambda_feat > 0:
                fm = feature_matching_loss([[f.detach() for f in s] for s in d_real], g_fake)
                logs["G/feat"] = fm.item()
                loss_g = loss_g + self.cfg.lambda_feat * fm
            if self.vgg is not None:
                v = self.vgg(fakes[0], reals[0])
                logs["G/vgg"] = v.item()
                loss_g = loss_g + self.cfg.lambda_vgg * v
            if self.cfg.lambda_l1 > 0:
                l1 = sum((f - r).abs().mean() for f, r in zip(fakes, reals)) / n
                logs["G/l1"] = l1.item()
                loss_g = loss_g + self.cfg.lambda_l1 * l1
        return self.finish_g_step(loss_g, logs, x, fakes[0], y)


# ---------------------------------------------------------------------------------------------
# models and data
# ---------------------------------------------------------------------------------------------


def build_deblur_model(name: str = "deblurgan", **overrides: Any) -> Tuple[nn.Module, Dict[str, Any]]:
    """Create an RGB->RGB deblurring generator and its JSON-able config (stored in checkpoints).

    ``"deblurgan"``: :data:`DEBLURGAN_CPU` + overrides (``create_model("deblurgan")`` is the
    paper's size); ``"asap"``: :data:`ASAP_DEBLUR_PRESET` + overrides, with the near-identity
    hypernetwork initialisation of :func:`asapnet.models.asap.init_asap_hypernetwork`;
    ``"msg_unet"``: 3 -> 3 channels, ``ngf=16, n_down=4, num_outputs=3`` + overrides.

    Raises:
        ValueError: unknown name.
    """
    if name == "deblurgan":
        kw = {**DEBLURGAN_CPU, "in_channels": 3, "out_channels": 3, **overrides}
        return create_model("deblurgan", **kw), kw
    if name == "asap":
        from ...models.asap import init_asap_hypernetwork
        cfg = ASAPConfig(**{**ASAP_DEBLUR_PRESET, **overrides})
        net = create_model("asap", cfg=cfg)
        init_asap_hypernetwork(net)
        return net, cfg.to_dict()
    if name == "msg_unet":
        kw = {"in_channels": 3, "out_channels": 3, "ngf": 16, "n_down": 4, "num_outputs": 3, "norm": "instance",
              **overrides}
        return create_model("msg_unet", **kw), kw
    raise ValueError(f"deblurring model must be deblurgan, asap or msg_unet, got {name!r}")


@dataclass
class DeblurSplit:
    """Sharp images of the synthetic deblurring benchmark, with a resize factor per file."""

    train: List[Path]
    train_scales: List[float]
    test: List[Path]
    test_scales: List[float]


def default_split(root: Optional[PathLike] = None, cityscapes_scale: float = 0.5, kodak_test: int = 4) -> DeblurSplit:
    """The synthetic benchmark on the shared data (``<root>`` = :func:`data_root`):

    * train: Cityscapes sample photos 1-6 (at ``cityscapes_scale``, 1024x512) + the 68 CBSD68
      colour BSD photos (481x321);
    * test (held out): Cityscapes photos 7-8 (at ``cityscapes_scale``) + the first ``kodak_test``
      Kodak24 photos (768x512).

    Raises:
        DataError: a folder is missing.
    """
    base = data_root(root)
    cs = list_images(base / "cityscapes_samples" / "train_img")
    if len(cs) < 3:
        raise DataError(f"{base / 'cityscapes_samples' / 'train_img'}: need at least 3 photos, found {len(cs)}")
    bsd = list_images(base / "denoise_color" / "CBSD68")
    kodak = list_images(base / "denoise_color" / "Kodak24")[:kodak_test]
    train = cs[:-2] + bsd
    test = cs[-2:] + kodak
    return DeblurSplit(train, [cityscapes_scale] * (len(cs) - 2) + [1.0] * len(bsd),
                       test, [cityscapes_scale] * 2 + [1.0] * len(kodak))


@dataclass
class DeblurDataConfig:
    """Training data of :func:`train_deblur`.

    Attributes:
        crop: side of the square training crops (pixels).
        crops_per_image: epoch length per image.
        blur: blur parameters of the synthetic data.
        gopro: folder of real GoPro-style pairs (``blur/`` + ``sharp/``) instead of synthetic blur.
        sharp_dir: folder of sharp photos to blur synthetically instead of :func:`default_split`'s
            training photos.
        val_images: number of held-out test images scored at every checkpoint (0 = none).
        seed: blur seed of the held-out set.
    """

    crop: int = 128
    crops_per_image: int = 16
    blur: BlurConfig = field(default_factory=BlurConfig)
    gopro: Optional[str] = None
    sharp_dir: Optional[str] = None
    val_images: int = 0
    seed: int = 0


def train_deblur(model: nn.Module, model_name: str, model_config: Dict[str, Any], data: DeblurDataConfig,
                 cfg: TrainConfig, gp: Optional[WGANGPConfig], out_dir: PathLike, root: Optional[PathLike] = None,
                 resume: bool = False, progress: bool = True, time_budget_s: Optional[float] = None,
                 content: Optional[nn.Module] = None) -> Trainer:
    """Train a deblurring generator with DeblurGAN's losses (``gp``), for an MSG U-Net with
    :class:`MSGTrainer` (``gp`` ignored), or, with ``cfg.gan=False``, with the reconstruction
    losses of ``cfg`` only (``lambda_l1``/``lambda_l2``; plain :class:`asapnet.train.Trainer`).

    Data: synthetic blur on :func:`default_split`'s training photos (or on ``data.sharp_dir``), or
    ``data.gopro`` pairs. Validation (``data.val_images``) uses :func:`default_split`'s test photos.
    With ``time_budget_s`` training stops at the first step past the budget (wall clock of this
    call) and writes a final checkpoint; ``cfg.steps`` is the upper bound.

    Raises:
        DataError: missing data. PretrainedWeightsUnavailable: VGG needed but unavailable.
    """
    if data.gopro:
        train_set = PairedBlurDataset(data.gopro, crop=data.crop)
    elif data.sharp_dir:
        train_set = SyntheticBlurDataset(list_images(data.sharp_dir), data.crop, data.blur, 1.0, data.crops_per_image)
    else:
        split = default_split(root)
        train_set = SyntheticBlurDataset(split.train, data.crop, data.blur, split.train_scales, data.crops_per_image)
    val_set = None
    if data.val_images > 0:
        split = default_split(root)
        k = data.val_images
        val_set = BlurTestDataset(split.test[:k], data.seed, data.blur, split.test_scales[:k])
    extra = {"task": "deblur", "value_range": "-1,1",
             "deblur_data": {k: (asdict(v) if k == "blur" else v) for k, v in vars(data).items()}}
    if not cfg.gan:
        trainer: Trainer = Trainer(model, model_name, model_config, DiscriminatorConfig(in_channels=6), cfg, out_dir,
                                   extra_meta=extra)
    elif isinstance(model, MSGUNet):
        trainer = MSGTrainer(model, model_name, model_config, cfg, out_dir, in_channels=model.in_channels,
                                      extra_meta=extra, vgg=content)
    else:
        trainer = WGANGPTrainer(model, model_name, model_config, cfg, gp or WGANGPConfig(), out_dir, content=content,
                                extra_meta=extra)
    train(trainer, train_set, val_set, resume=resume, progress=progress, time_budget_s=time_budget_s)
    return trainer


# ---------------------------------------------------------------------------------------------
# evaluation and inference
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def run_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> the model's output (N, 3, H, W), in eval mode, unclipped."""
    model.eval()
    return model(x)


def measure(output: torch.Tensor, sharp: torch.Tensor) -> Tuple[float, float]:
    """PSNR (dB) and SSIM of one restored image (3, H, W) or (1, 3, H, W) in [-1, 1] against the
    sharp one, after rounding the output to 8 bits (0-255 scale, data_range 255)."""
    from ...metrics import psnr_ssim

    fake = quantize(output.detach().cpu().float().reshape(1, *output.shape[-3:]))
    real = sharp.detach().cpu().float().reshape(1, *sharp.shape[-3:])
    return psnr_ssim(fake, real)


def evaluate_deblur(models: Dict[str, nn.Module], dataset: BlurTestDataset, fid: bool = False,
                    fid_weights: Optional[PathLike] = None, device: Optional[torch.device | str] = None
                    ) -> List[Dict[str, Any]]:
    """Score deblurring models on a held-out set with deterministic blur.

    The first row is the blurred input itself (``"blurred input"``). For every model: mean PSNR
    (dB) and SSIM over the images (see :func:`measure`), mean forward time in ms (current torch
    thread setting), and FID (torchmetrics, standard InceptionV3) when ``fid`` is set and its
    weights can be loaded, else ``None`` (with ``fid_note``). FID of a handful of images is
    strongly biased; compare it only at equal set sizes.

    ``device``: where the blurred inputs go (default: each model's own device; move the models
    there first); outputs come back to the CPU for the metrics.

    Returns:
        one dict per row: ``{"model", "psnr", "ssim", "ms", "images", "fid"}``.
    """
    from ...inference.optimize import model_device, synchronize

    rows: List[Dict[str, Any]] = []
    items = [dataset[i] for i in range(len(dataset))]
    fid_note = None
    fid_fn = None
    if fid:
        try:
            from ...metrics.fid import compute_fid
            fid_fn = compute_fid
        except ImportError as e:  # pragma: no cover
            fid_note = f"FID unavailable: {e}"
    bar = _progress(total=len(items) * len(models), desc="deblur", unit="img")
    for name, model in [("blurred input", None), *models.items()]:
        ps, ss, ms, outs = [], [], [], []
        dev = None if model is None else (model_device(model) if device is None else device)
        for it in items:
            x = it["input"][None]
            t0 = time.perf_counter()
            if model is None:
                y = x
            else:
                y = run_model(model, x.to(dev))
                synchronize(y.device)
            ms.append((time.perf_counter() - t0) * 1e3)
            y = y.cpu()
            if model is not None:
                bar.update(1)
            p, s = measure(y, it["target"])
            ps.append(p)
            ss.append(s)
            outs.append(quantize(y.float()))
        row = {"model": name, "psnr": statistics.fmean(ps), "ssim": statistics.fmean(ss),
               "ms": statistics.fmean(ms) if model is not None else 0.0, "images": len(items), "fid": None}
        if fid_fn is not None and fid_note is None:
            try:
                row["fid"] = float(fid_fn([it["target"][None] for it in items], outs, weights_path=fid_weights))
            except Exception as e:  # FIDUnavailable, or sizes FID cannot handle
                fid_note = f"FID unavailable: {e}"
        rows.append(row)
    bar.close()
    if fid_note:
        for r in rows:
            r["fid_note"] = fid_note
    return rows


def save_rgb(x: torch.Tensor, path: Path) -> None:
    """Write a (3, H, W) [-1, 1] image (clipped, rounded) as an 8-bit RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8_image(x)).save(path)


def deblur_files(model: nn.Module, inputs: Sequence[PathLike], out_dir: PathLike, blur_seed: Optional[int] = None,
                 blur_cfg: BlurConfig = BlurConfig(), device: Optional[torch.device | str] = None
                 ) -> List[Dict[str, Any]]:
    """Deblur image files into ``out_dir/<stem>.png`` (RGB 8-bit).

    Without ``blur_seed`` the inputs are taken as blurred photos. With it they are taken as sharp:
    the deterministic blur of (stem, seed) is applied first, the blurred input is saved as
    ``<stem>_blurred.png``, and PSNRs against the sharp file are returned.

    ``device``: where the inputs go (default: the device of ``model``'s weights); outputs come
    back to the CPU to be saved and measured. One INFO log line per file.

    Returns:
        one dict per file: ``{"input", "output", "ms"}`` (+ ``"psnr_blurred"``, ``"psnr"`` in dB).

    Raises:
        DataError: unreadable input (the message names the file).
    """
    def degrade(sharp: torch.Tensor, f: Path) -> torch.Tensor:
        return deterministic_blur(sharp, f.stem, blur_seed, blur_cfg)[0]

    return restore_files(model, inputs, out_dir, read=load_rgb,
                         degrade=degrade if blur_seed is not None else None, run=run_model, save=save_rgb,
                         measure=measure, degraded_suffix="_blurred", psnr_key="psnr_blurred", desc="deblur",
                         logger=logger, device=device)


@torch.no_grad()
def time_models(models: Dict[str, nn.Module], size: Tuple[int, int] = (720, 1280), repeats: int = 5,
                warmup: int = 1) -> Dict[str, Dict[str, float]]:
    """Batch-1 forward time of each model on a random (1, 3, H, W) image in [-1, 1].

    Models are prepared for inference (eval, folded spectral norm) and timed *interleaved*
    (one pass of each model per round, ``repeats`` rounds) so that load changes on a shared
    machine hit all of them alike. Returns ``{name: {"ms": median, "ms_min", "ms_max"}}``.
    """
    from ...inference.optimize import prepare_for_inference

    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for m in models.values():
        prepare_for_inference(m)
        for _ in range(warmup):
            m(x)
    times: Dict[str, List[float]] = {n: [] for n in models}
    for _ in range(repeats):
        for n, m in models.items():
            t0 = time.perf_counter()
            m(x)
            times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: {"ms": statistics.median(t), "ms_min": min(t), "ms_max": max(t)} for n, t in times.items()}


# ---------------------------------------------------------------------------------------------
# CLI glue
# ---------------------------------------------------------------------------------------------

#: Defaults of the shared ``asapnet train`` options with ``--task deblur`` (used when the parsed
#: value is ``None``).
DEBLUR_TRAIN_DEFAULTS: Dict[str, Any] = {"model": "deblurgan", "steps": 100000, "batch_size": 1, "lr_g": 1e-4,
                                         "lr_d": 1e-4, "out": None, "sample_every": 100, "checkpoint_every": 100,
                                         "lambda_l1": 0.0}


def _opt(a: argparse.Namespace, name: str) -> Any:
    v = getattr(a, name, None)
    return DEBLUR_TRAIN_DEFAULTS[name] if v is None else v


def cmd_train_deblur(a: argparse.Namespace) -> int:
    """``asapnet train --task deblur --model deblurgan|asap|msg_unet [--no-vgg] [--time-budget MIN]``."""
    from ...options import check_precision

    check_precision(getattr(a, "precision", "fp32") or "fp32", getattr(a, "device", "cpu") or "cpu", training=True)
    if getattr(a, "threads", None):
        torch.set_num_threads(a.threads)
    name = _opt(a, "model")
    over = {k: v for k, v in (("ngf", a.ngf), ("n_blocks", a.n_blocks)) if v is not None}
    if name == "asap" and over:
        raise ValueError("--ngf/--n-blocks apply to deblurgan and msg_unet")
    asap_over = {k: v for k, v in (("hr_window", a.hr_window), ("norm", a.lr_norm)) if v is not None}
    if name != "asap" and asap_over:
        raise ValueError("--hr-window/--lr-norm apply to asap")
    over.update(asap_over)
    if name == "msg_unet":
        over.pop("n_blocks", None)
    model, mcfg = build_deblur_model(name, **over)
    no_vgg = getattr(a, "no_vgg", False)
    gp = WGANGPConfig(critic_iters=a.critic_iters, gp_lambda=a.gp_lambda,
                      lambda_content=0.0 if no_vgg else a.lambda_content, lambda_l1=_opt(a, "lambda_l1"),
                      ndf=a.critic_ndf)
    is_msg = name == "msg_unet"
    cfg = TrainConfig(steps=_opt(a, "steps"), batch_size=_opt(a, "batch_size"), crop=None, lr_g=_opt(a, "lr_g"),
                      lr_d=_opt(a, "lr_d"), beta1=0.5 if not is_msg else 0.0, beta2=0.999 if not is_msg else 0.9,
                      lambda_vgg=0.0, lambda_l1=_opt(a, "lambda_l1"), gan=not getattr(a, "no_gan", False), flip=True,
                      seed=getattr(a, "seed", 0) or 0, num_threads=getattr(a, "threads", None),
                      sample_every=_opt(a, "sample_every"), checkpoint_every=_opt(a, "checkpoint_every"),
                      device=getattr(a, "device", "cpu") or "cpu", precision=getattr(a, "precision", "fp32") or "fp32")
    data = DeblurDataConfig(crop=a.crop_size, crops_per_image=a.crops_per_image, gopro=a.gopro,
                            sharp_dir=a.sharp_dir,
                            val_images=a.val_images or 0)
    out = Path(_opt(a, "out") or f"runs/deblur-{name}")
    prepare_run_dir(out, a.resume, getattr(a, "overwrite", False))  # refuses a run folder without --resume/--overwrite
    logger.info(f"training {name} for deblurring -> {out}")
    budget = a.time_budget * 60 if a.time_budget else None
    trainer = train_deblur(model, name, mcfg, data, cfg, gp, out, getattr(a, "data_root", None), resume=a.resume,
                           progress=not (getattr(a, "quiet", False) or _quiet()), time_budget_s=budget)
    logger.info(f"done: step {trainer.step}, checkpoint {out / 'generator.safetensors'}")
    return 0


def _named_checkpoints(specs: Sequence[str]) -> List[Tuple[str, Path]]:
    out = []
    for s in specs:
        name, _, path = s.partition("=") if "=" in s else (None, "", s)
        out.append((name or Path(path).parent.name or Path(path).stem, Path(path)))
    return out


def _as_list(v: Any) -> List[str]:
    return [] if v is None else [v] if isinstance(v, (str, Path)) else list(v)


def cmd_evaluate_deblur(a: argparse.Namespace) -> int:
    """``asapnet evaluate --task deblur --checkpoint [NAME=]PATH... [--data DIR...] [--json]``."""
    from ...checkpoint import load_generator

    if getattr(a, "threads", None):
        torch.set_num_threads(a.threads)
    seed = getattr(a, "seed", 0) or 0
    data = _as_list(getattr(a, "data", None))
    if data:
        files = [f for d in data for f in list_images(d)]
        ds = BlurTestDataset(files, seed, scale=getattr(a, "scale", 1.0))
    else:
        split = default_split(getattr(a, "data_root", None))
        ds = BlurTestDataset(split.test, seed, scale=split.test_scales)
    ckpts = _as_list(a.checkpoint)
    if not ckpts:
        raise ValueError("give --checkpoint [NAME=]PATH (a deblurring generator)")
    device = getattr(a, "device", "cpu") or "cpu"
    models = {name: load_generator(path)[0].to(device) for name, path in _named_checkpoints(ckpts)}
    rows = evaluate_deblur(models, ds, fid=getattr(a, "fid", False), fid_weights=getattr(a, "fid_weights", None),
                           device=device)
    if getattr(a, "json", False):
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"{len(ds)} held-out images, deterministic motion blur (seed {seed})")  # the table's heading
    w = max(16, *(len(r["model"]) + 2 for r in rows))
    print(f"{'model':<{w}}{'PSNR (dB)':>11}{'SSIM':>8}{'ms/img':>10}{'FID':>8}")
    for r in rows:
        fid = "-" if r["fid"] is None else f"{r['fid']:.1f}"
        print(f"{r['model']:<{w}}{r['psnr']:>11.2f}{r['ssim']:>8.4f}{r['ms']:>10.1f}{fid:>8}")
    if rows and rows[0].get("fid_note"):
        print(rows[0]["fid_note"])
    return 0


def cmd_deblur(a: argparse.Namespace) -> int:
    """``asapnet deblur INPUT... -o OUTDIR --checkpoint PATH [--blur-seed S]``."""
    from ...checkpoint import load_generator

    if a.threads:
        torch.set_num_threads(a.threads)
    device = getattr(a, "device", "cpu") or "cpu"
    model, meta = load_generator(a.checkpoint)
    model.to(device)
    logger.info(f"model: {a.checkpoint} ({meta['model']}, step {meta.get('step', '?')}"
                + (f", {device})" if device != "cpu" else ")"))
    deblur_files(model, a.inputs, a.out, a.blur_seed, device=device)  # logs a line per file
    return 0
