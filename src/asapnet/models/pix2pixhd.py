"""pix2pixHD global generator G1 (Wang et al., "High-Resolution Image Synthesis and Semantic
Manipulation with Conditional GANs", CVPR 2018, §3.2, Fig. 3), a baseline of the ASAP-Net paper.

Faithful to ``GlobalGenerator`` of the reference code (NVIDIA/pix2pixHD ``models/networks.py``)
with its Cityscapes defaults ``--netG global --ngf 64 --n_downsample_global 4
--n_blocks_global 9 --norm instance``: 182.5 M parameters with 35 labels + 1 instance-edge channel.
``n_local_enhancers > 0`` adds the reference's ``LocalEnhancer`` (``--netG local``), the
architecture of the released Cityscapes 1024x2048 model.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import CITYSCAPES_NUM_CLASSES
from .registry import register_model
from .layers import check_input, pad_to_multiple


class ResnetBlock(nn.Module):
    """x + [reflect-pad, 3x3 conv, instance norm, ReLU, reflect-pad, 3x3 conv, instance norm](x).

    Shape-preserving: (N, dim, H, W) -> (N, dim, H, W).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim, affine=False), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class Pix2PixHDGenerator(nn.Module):
    """pix2pixHD generator: the global generator G1, optionally inside local enhancers G2.

    G1 (``n_local_enhancers = 0``, the default): reflect-pad 3, 7x7 conv (ngf) ->
    ``n_downsampling`` x [3x3 stride-2 conv, doubling width] -> ``n_blocks`` :class:`ResnetBlock`
    at ngf * 2^n -> ``n_downsampling`` x [3x3 stride-2 transposed conv, halving width] ->
    reflect-pad 3, 7x7 conv -> tanh. Every conv but the last is followed by instance norm (no
    affine) and ReLU.

    With ``n_local_enhancers = L > 0`` (the reference's ``--netG local``, pix2pixHD §3.2): G1 of
    width ngf * 2^L without its output conv runs on the input average-pooled L times (3x3, stride
    2); enhancer k = 1..L (width ngf * 2^(L-k)) adds its front end ``model{k}_1`` (7x7 conv, 3x3
    stride-2 conv) of the input pooled L-k times to the previous output and runs ``model{k}_2``
    (``n_blocks_local`` residual blocks, a transposed conv; the last enhancer ends with the 7x7
    conv and tanh). Module names are the reference's, so its state dicts load as they are.

    Input: (N, in_channels, H, W) float, e.g. one-hot labels + instance edges in {0, 1}. Any H, W:
    the input is replicate-padded to multiples of 2^(n_downsampling + L) and the output cropped
    back. Output: (N, out_channels, H, W) in [-1, 1].

    Raises:
        ValueError: non-4D input or wrong channel count; negative ``n_local_enhancers``.
    """

    def __init__(self, in_channels: int = CITYSCAPES_NUM_CLASSES + 1, out_channels: int = 3, ngf: int = 64,
                 n_downsampling: int = 4, n_blocks: int = 9, n_local_enhancers: int = 0, n_blocks_local: int = 3):
        super().__init__()
        if n_local_enhancers < 0:
            raise ValueError(f"n_local_enhancers must be >= 0, got {n_local_enhancers}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.n_local_enhancers = n_local_enhancers
        self.multiple = 2 ** (n_downsampling + n_local_enhancers)
        act = nn.ReLU(True)
        g = ngf * 2 ** n_local_enhancers  # width of the global generator
        layers: List[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, g, 7),
                                   nn.InstanceNorm2d(g, affine=False), act]
        for i in range(n_downsampling):
            c = g * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c, affine=False), act]
        width = g * 2 ** n_downsampling
        layers += [ResnetBlock(width) for _ in range(n_blocks)]
        for i in range(n_downsampling):
            c = g * 2 ** (n_downsampling - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(c // 2, affine=False), act]
        if n_local_enhancers == 0:
            layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        for k in range(1, n_local_enhancers + 1):
            c = ngf * 2 ** (n_local_enhancers - k)
            front = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, c, 7), nn.InstanceNorm2d(c, affine=False), act,
                     nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c, affine=False), act]
            back: List[nn.Module] = [ResnetBlock(2 * c) for _ in range(n_blocks_local)]
            back += [nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1),
                     nn.InstanceNorm2d(c, affine=False), act]
            if k == n_local_enhancers:
                back += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
            setattr(self, f"model{k}_1", nn.Sequential(*front))
            setattr(self, f"model{k}_2", nn.Sequential(*back))
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate (N, in_channels, H, W) -> (N, out_channels, H, W) in [-1, 1]."""
        check_input(x, self.in_channels, type(self).__name__)
        xp, H, W = pad_to_multiple(x, self.multiple)
        L = self.n_local_enhancers
        pyramid = [xp]  # pyramid[j]: the input average-pooled j times
        for _ in range(L):
            pyramid.append(F.avg_pool2d(pyramid[-1], 3, stride=2, padding=1, count_include_pad=False))
        y = self.model(pyramid[L])
        for k in range(1, L + 1):
            y = getattr(self, f"model{k}_2")(getattr(self, f"model{k}_1")(pyramid[L - k]) + y)
        return y[..., :H, :W]


def _init_weights(m: nn.Module) -> None:
    # pix2pixHD ``weights_init``: conv weights ~ N(0, 0.02); biases keep PyTorch's default.
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)


@register_model("pix2pixhd")
def pix2pixhd(**kwargs) -> Pix2PixHDGenerator:
    """``create_model("pix2pixhd", in_channels=36)``; kwargs go to :class:`Pix2PixHDGenerator`."""
    return Pix2PixHDGenerator(**kwargs)
