"""Multi-scale PatchGAN discriminator (pix2pixHD, Wang et al. 2018; SPADE, Park et al. 2019).

The ASAP-Net paper trains with this discriminator unchanged (§3.4).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ..config import DiscriminatorConfig


class PatchDiscriminator(nn.Module):
    """70x70-style PatchGAN with ``n_layers`` 4x4 convolutions (SPADE's NLayerDiscriminator).

    Input (N, C, H, W) = [condition, image] concatenated on channels, images in [-1, 1].
    ``forward`` returns the list of intermediate features; the last entry is the
    (N, 1, H', W') patch score map (no activation; used with the hinge loss).
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 4, spectral_norm: bool = True):
        super().__init__()
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        blocks: List[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True))]
        nf = ndf
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            blocks.append(nn.Sequential(sn(nn.Conv2d(prev, nf, 4, stride, 2, bias=False)),
                                        nn.InstanceNorm2d(nf, affine=False), nn.LeakyReLU(0.2, True)))
        blocks.append(nn.Conv2d(nf, 1, 4, 1, 2))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``num_scales`` PatchGANs on the input and its 2x, 4x ... average-pooled versions.

    ``forward`` returns one feature list per scale (see :class:`PatchDiscriminator`).
    """

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        self.scales = nn.ModuleList(PatchDiscriminator(cfg.in_channels, cfg.ndf, cfg.n_layers, cfg.spectral_norm)
                                    for _ in range(cfg.num_scales))

    def forward(self, x: torch.Tensor) -> List[List[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x))
        return out
