"""pix2pix U-Net generator (Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017, §3.2.1 and appendix 6.1.1), a baseline of the ASAP-Net paper.

Faithful to ``UnetGenerator`` of the reference code (junyanz/pytorch-CycleGAN-and-pix2pix
``models/networks.py``) with its defaults ``--netG unet_256 --ngf 64 --norm batch`` and dropout
on: 8 downsamplings, encoder C64-C128-C256-C512-C512-C512-C512-C512, skip connections between
mirrored layers.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn

from ..config import CITYSCAPES_NUM_CLASSES
from .layers import check_input, pad_to_multiple
from .registry import register_model


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: x -> [down, submodule, up] (+ skip concat unless outermost).

    Down: LeakyReLU(0.2), 4x4 stride-2 conv, batch norm (no ReLU before the outermost conv, no
    norm after the innermost one). Up: ReLU, 4x4 stride-2 transposed conv, batch norm (tanh
    instead of norm for the outermost), optional Dropout(0.5). Convs followed by batch norm have
    no bias.

    The in-place LeakyReLU of the reference is kept, so the skip connection concatenates
    LeakyReLU(x) (and the module layout matches the reference's state-dict keys).

    Shapes: (N, input_channels, h, w) -> (N, input_channels + outer, h, w), or
    (N, outer, h, w) for the outermost block; h, w divisible by 2 at every level.
    """

    def __init__(self, outer: int, inner: int, input_channels: Optional[int] = None,
                 submodule: Optional[nn.Module] = None, outermost: bool = False, innermost: bool = False,
                 dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        cin = outer if input_channels is None else input_channels
        down = nn.Conv2d(cin, inner, 4, stride=2, padding=1, bias=False)
        if outermost:
            layers: List[nn.Module] = [down, submodule,
                                       nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1),
                                       nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down,
                      nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=False),
                      nn.BatchNorm2d(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, nn.BatchNorm2d(inner), submodule,
                      nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1, bias=False),
                      nn.BatchNorm2d(outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # As in the reference, the block's first LeakyReLU acts in place on x, so the skip
        # connection carries the activated features lrelu(x), not x.
        return torch.cat([x, self.model(x)], 1)


class Pix2PixUNet(nn.Module):
    """pix2pix U-Net with ``num_downs`` stride-2 levels (``unet_256``: 8).

    Widths ngf, 2 ngf, 4 ngf, then 8 ngf for the remaining levels; Dropout(0.5) in the decoder of
    the ``num_downs - 5`` levels just outside the innermost one, as in the reference with dropout
    on (pix2pix paper: dropout is the only noise source; in ``eval()`` mode it is off).

    Input: (N, in_channels, H, W) float (labels in {0, 1} or images in [-1, 1]). Any H, W: the
    input is replicate-padded to multiples of 2^num_downs (256 for unet_256) and the output
    cropped back. Output: (N, out_channels, H, W) in [-1, 1].

    Raises:
        ValueError: non-4D input, wrong channel count, or ``num_downs < 5``.
    """

    def __init__(self, in_channels: int = CITYSCAPES_NUM_CLASSES + 1, out_channels: int = 3, ngf: int = 64,
                 num_downs: int = 8, dropout: bool = True):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"Pix2PixUNet needs num_downs >= 5, got {num_downs}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.multiple = 2 ** num_downs
        block = UnetSkipConnectionBlock(8 * ngf, 8 * ngf, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(8 * ngf, 8 * ngf, submodule=block, dropout=dropout)
        block = UnetSkipConnectionBlock(4 * ngf, 8 * ngf, submodule=block)
        block = UnetSkipConnectionBlock(2 * ngf, 4 * ngf, submodule=block)
        block = UnetSkipConnectionBlock(ngf, 2 * ngf, submodule=block)
        self.model = UnetSkipConnectionBlock(out_channels, ngf, input_channels=in_channels, submodule=block,
                                             outermost=True)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate (N, in_channels, H, W) -> (N, out_channels, H, W) in [-1, 1]."""
        check_input(x, self.in_channels, type(self).__name__)
        xp, H, W = pad_to_multiple(x, self.multiple)
        return self.model(xp)[..., :H, :W]


def _init_weights(m: nn.Module) -> None:
    # pytorch-CycleGAN-and-pix2pix ``init_weights('normal', 0.02)``: conv weights ~ N(0, 0.02),
    # conv biases 0, batch-norm weights ~ N(1, 0.02), batch-norm biases 0.
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


@register_model("pix2pix")
def pix2pix(**kwargs) -> Pix2PixUNet:
    """``create_model("pix2pix", in_channels=36)``; kwargs go to :class:`Pix2PixUNet`."""
    return Pix2PixUNet(**kwargs)
