"""Trainer variants beyond the SPADE-style hinge GAN of :class:`asapnet.training.trainer.Trainer`: DeblurGAN's
WGAN-GP optimisation (:class:`WGANGPTrainer`) and the MSG U-Net's multi-scale hinge GAN (:class:`MSGTrainer`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from ..config import DiscriminatorConfig, TrainConfig
from ..data.io import PathLike
from ..losses.perceptual import VGGContentLoss
from ..losses.gan import feature_matching_loss, hinge_d_loss, hinge_g_loss, gradient_penalty
from ..models.deblurgan import PatchCritic
from ..models.msg_unet import MSGDiscriminator, MSGUNet, pyramid
from .trainer import Trainer, pixel_losses
from .batches import _random_region


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
    """:class:`asapnet.training.trainer.Trainer` with DeblurGAN's WGAN-GP critic and content loss.

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
            loss_g = loss_g + pixel_losses(fake, real, self.gp.lambda_l1, logs=logs)
        return self.finish_g_step(loss_g, logs, cond, fake, real)


class MSGTrainer(Trainer):
    """:class:`asapnet.training.trainer.Trainer` for :class:`~asapnet.models.msg_unet.MSGUNet`: the hinge GAN
    of :mod:`asapnet.training` with one PatchGAN per output scale (MSG U-Net §2.2-2.3): every scale's
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
