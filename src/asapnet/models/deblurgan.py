"""DeblurGAN (Kupyn, Budzan, Mykhailych, Mishkin, Matas, "DeblurGAN: Blind Motion Deblurring
Using Conditional Adversarial Networks", CVPR 2018, §3.2 and Fig. 3; reference code
``models/networks.py``).

* :class:`DeblurGANGenerator` - 7x7 conv, two stride-2 3x3 convs, ``n_blocks`` (9) ResBlocks
  [reflect pad, 3x3 conv, InstanceNorm, ReLU, dropout 0.5, reflect pad, 3x3 conv, InstanceNorm],
  two transposed convs, 7x7 conv, tanh, and the *global skip connection* ("ResOut"): the network
  learns the residual, output = clamp(input + tanh(...), -1, 1).
* :class:`PatchCritic` - the 70x70 PatchGAN of pix2pix (``n_layers`` 3, 4x4 convs, InstanceNorm,
  LeakyReLU 0.2) without a sigmoid: the Wasserstein critic trained with a gradient penalty
  (WGAN-GP, λ = 10, 5 critic steps per generator step; see :mod:`asapnet.tasks.deblur`).

Images are float (N, 3, H, W) in [-1, 1]. Any H, W: the generator reflect-pads to a multiple of 4
and crops back.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be instance|batch|none, got {kind!r}")


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, norm, ReLU, (dropout), pad, conv3x3, norm](x); shape preserving."""

    def __init__(self, ch: int, norm: str = "instance", dropout: float = 0.5):
        super().__init__()
        bias = norm != "batch"
        layers: List[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias), _norm(norm, ch),
                                   nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias), _norm(norm, ch)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class DeblurGANGenerator(nn.Module):
    """DeblurGAN ResNet generator (CVPR 2018 Fig. 3).

    Args:
        in_channels, out_channels: image channels (3 -> 3 for deblurring; other values, e.g.
            36 label channels in ``asapnet bench``, turn the global skip off).
        ngf: width of the first layer (64 in the paper); the ResBlocks run at 4 * ngf.
        n_blocks: number of ResBlocks (9).
        norm: ``"instance"`` (paper) | ``"batch"`` | ``"none"``.
        dropout: dropout probability inside the ResBlocks (0.5 in the reference code).
        residual: global skip connection; ``None`` = on when in_channels == out_channels.

    Input (N, in_channels, H, W) float in [-1, 1]; output (N, out_channels, H, W) in [-1, 1].

    Raises:
        ValueError: ``residual=True`` with in_channels != out_channels, bad norm, or an input
            with the wrong number of channels.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: float = 0.5, residual: Optional[bool] = None):
        super().__init__()
        if residual is None:
            residual = in_channels == out_channels
        if residual and in_channels != out_channels:
            raise ValueError("the global skip connection needs in_channels == out_channels")
        self.in_channels, self.out_channels, self.residual = in_channels, out_channels, residual
        bias = norm != "batch"
        layers: List[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias),
                                   _norm(norm, ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(2):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=bias), _norm(norm, ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch, norm, dropout) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       _norm(norm, ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        for m in self.modules():  # reference code: N(0, 0.02) conv weights, zero biases
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deblur ``x`` (N, C, H, W) in [-1, 1] -> (N, out_channels, H, W) in [-1, 1]."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DeblurGANGenerator expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        ph, pw = (-H) % 4, (-W) % 4
        xp = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
        y = self.model(xp)[..., :H, :W]
        if self.residual:
            y = torch.clamp(x + y, -1.0, 1.0)
        return y


class PatchCritic(nn.Module):
    """PatchGAN critic (pix2pix 70x70 for ``n_layers=3``) with a linear output, for WGAN-GP.

    Input (N, in_channels, H, W) images in [-1, 1] (DeblurGAN's critic sees only the restored or
    sharp image: in_channels = 3). Output (N, 1, H', W') unbounded patch scores.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        bias = norm != "batch"
        layers: List[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 1 if n == n_layers else 2
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 2, bias=bias), _norm(norm, ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 2))
        self.model = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_model("deblurgan")
def deblurgan(in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
              norm: str = "instance", dropout: float = 0.5, residual: Optional[bool] = None) -> DeblurGANGenerator:
    """DeblurGAN generator; defaults are the paper's (9 ResBlocks, ngf 64, global skip)."""
    return DeblurGANGenerator(in_channels, out_channels, ngf, n_blocks, norm, dropout, residual)
