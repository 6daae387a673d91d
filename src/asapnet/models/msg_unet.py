"""Multi-Scale Gradient U-Net (Laxman, Dubey, Kalyan, Kojjarapu, "Efficient High-Resolution
Image-to-Image Translation using Multi-Scale Gradient U-Net", 2021, §2; after MSG-GAN, Karnewar &
Wang, CVPR 2020).

Generator (§2.1, Fig. 1): a U-Net whose encoder receives the source image again at every
scale (the resized input is concatenated to the strided-conv output and fused by a 1x1 conv
block) and whose decoder emits an image at every one of its top ``num_outputs`` scales (a 1x1
conv + tanh branch per scale), so the discriminators' gradients reach the intermediate layers
directly. Blocks are Conv-BatchNorm-LeakyReLU(0.2); downsampling is a 4x4 stride-2 conv,
upsampling a 4x4 stride-2 transposed conv whose output is *added* to the encoder skip and
followed by a stride-1 conv block.

Discriminator (§2.2, Fig. 3): one PatchGAN (pix2pix / pix2pixHD, see
:class:`~asapnet.models.discriminator.PatchDiscriminator`) per output scale, each fed
[source at that scale, image at that scale].

Deviations: the stride-1 encoder/decoder convs are 3x3 (the paper's 4x4 stride-1 convs need
asymmetric padding); the depth and widths are parameters (the paper goes from 2048x1024 down to
8x4 with 5 output scales, 2048x1024 .. 128x64).

Shapes: input (N, in_channels, H, W) float - one-hot labels in {0, 1} or an image in [-1, 1];
outputs (N, out_channels, ceil(H / 2^s), ceil(W / 2^s)) in [-1, 1] for s = 0 .. num_outputs-1.
Any H, W: the input is replicate-padded to a multiple of 2^n_down and every output cropped back.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .discriminator import PatchDiscriminator
from .registry import register_model


def _block(cin: int, cout: int, k: int, stride: int, norm: str) -> nn.Sequential:
    pad = (k - 1) // 2 if stride == 1 else 1
    layers: List[nn.Module] = [nn.Conv2d(cin, cout, k, stride, pad, bias=norm == "none")]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    elif norm == "instance":
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    elif norm != "none":
        raise ValueError(f"norm must be batch|instance|none, got {norm!r}")
    layers.append(nn.LeakyReLU(0.2, True))
    return nn.Sequential(*layers)


def pyramid(x: torch.Tensor, levels: int) -> List[torch.Tensor]:
    """[x, x/2, x/4, ...] (``levels`` entries) by repeated 2x2 average pooling (ceil mode) of
    (N, C, H, W); one-hot label maps become soft label maps at coarse scales."""
    out = [x]
    for _ in range(levels - 1):
        out.append(F.avg_pool2d(out[-1], 2, ceil_mode=True))
    return out


class MSGUNet(nn.Module):
    """MSG U-Net generator.

    Args:
        in_channels: source channels (36 for Cityscapes labels + instance edges, 3 for images).
        out_channels: output image channels.
        ngf: width at full resolution; it doubles per level up to ``max_width``.
        max_width: widest layer.
        n_down: number of stride-2 levels (the bottleneck is 2^n_down times smaller).
        num_outputs: decoder scales that emit an image (1 = a plain U-Net), <= n_down + 1.
        input_scales: encoder levels that receive the resized source (default ``num_outputs``).
        norm: ``"batch"`` (paper) | ``"instance"`` | ``"none"``.

    Raises:
        ValueError: inconsistent depths, or an input with the wrong channel count.
    """

    def __init__(self, in_channels: int = 36, out_channels: int = 3, ngf: int = 32, max_width: int = 256,
                 n_down: int = 6, num_outputs: int = 4, input_scales: int | None = None, norm: str = "batch"):
        super().__init__()
        input_scales = num_outputs if input_scales is None else input_scales
        if n_down < 1 or not 1 <= num_outputs <= n_down + 1 or not 1 <= input_scales <= n_down + 1:
            raise ValueError(f"need n_down >= 1 and 1 <= num_outputs, input_scales <= n_down + 1; got "
                             f"n_down={n_down}, num_outputs={num_outputs}, input_scales={input_scales}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.n_down, self.num_outputs, self.input_scales = n_down, num_outputs, input_scales
        w = [min(ngf * 2 ** i, max_width) for i in range(n_down + 1)]
        self.enc0 = nn.Sequential(_block(in_channels, w[0], 3, 1, norm), _block(w[0], w[0], 3, 1, norm))
        self.down = nn.ModuleList(_block(w[i - 1], w[i], 4, 2, norm) for i in range(1, n_down + 1))
        self.fuse = nn.ModuleList(_block(w[i] + in_channels, w[i], 1, 1, norm) for i in range(1, input_scales))
        self.up = nn.ModuleList()
        for i in range(n_down):  # up[i]: level i+1 -> level i
            layers: List[nn.Module] = [nn.ConvTranspose2d(w[i + 1], w[i], 4, 2, 1, bias=norm == "none")]
            if norm == "batch":
                layers.append(nn.BatchNorm2d(w[i]))
            elif norm == "instance":
                layers.append(nn.InstanceNorm2d(w[i], affine=True))
            layers.append(nn.LeakyReLU(0.2, True))
            self.up.append(nn.Sequential(*layers))
        self.dec = nn.ModuleList(_block(w[i], w[i], 3, 1, norm) for i in range(n_down))
        self.to_img = nn.ModuleList(nn.Conv2d(w[i], out_channels, 1) for i in range(num_outputs))

    def forward_multiscale(self, x: torch.Tensor) -> List[torch.Tensor]:
        """All outputs, finest first: [(N, out, H, W), (N, out, ceil(H/2), ceil(W/2)), ...]."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MSGUNet expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        m = 2 ** self.n_down
        ph, pw = (-H) % m, (-W) % m
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        srcs = pyramid(xp, self.input_scales)
        feats = [self.enc0(xp)]
        for i, down in enumerate(self.down, start=1):
            h = down(feats[-1])
            if i < self.input_scales:
                h = self.fuse[i - 1](torch.cat([h, srcs[i]], 1))
            feats.append(h)
        d = feats[-1]
        outs: List[torch.Tensor] = [None] * self.num_outputs  # type: ignore[list-item]
        for i in range(self.n_down - 1, -1, -1):
            d = self.dec[i](self.up[i](d) + feats[i])
            if i < self.num_outputs:
                s = 2 ** i
                outs[i] = torch.tanh(self.to_img[i](d))[..., : -(-H // s), : -(-W // s)]
        if self.num_outputs == self.n_down + 1:  # the bottleneck emits an image too
            s = 2 ** self.n_down
            outs[-1] = torch.tanh(self.to_img[-1](feats[-1]))[..., : -(-H // s), : -(-W // s)]
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The full-resolution output (N, out_channels, H, W) in [-1, 1]."""
        return self.forward_multiscale(x)[0]


class MSGDiscriminator(nn.Module):
    """One PatchGAN per output scale (MSG U-Net §2.2).

    ``forward(sources, images)`` takes the source pyramid and the image pyramid (finest first,
    same lengths, see :func:`pyramid`) and returns one feature list per scale, the same format as
    :class:`~asapnet.models.discriminator.MultiscaleDiscriminator`, so the hinge and
    feature-matching losses of :mod:`asapnet.losses` apply unchanged.
    """

    def __init__(self, in_channels: int, num_scales: int, ndf: int = 64, n_layers: int = 3,
                 spectral_norm: bool = True):
        super().__init__()
        self.num_scales = num_scales
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers, spectral_norm)
                                    for _ in range(num_scales))

    def forward(self, sources: Sequence[torch.Tensor], images: Sequence[torch.Tensor]) -> List[List[torch.Tensor]]:
        if len(sources) != self.num_scales or len(images) != self.num_scales:
            raise ValueError(f"MSGDiscriminator expects {self.num_scales} scales, got {len(sources)} sources "
                             f"and {len(images)} images")
        return [d(torch.cat([s, im], 1)) for d, s, im in zip(self.scales, sources, images)]


@register_model("msg_unet")
def msg_unet(in_channels: int = 36, out_channels: int = 3, ngf: int = 32, max_width: int = 256, n_down: int = 6,
             num_outputs: int = 4, input_scales: int | None = None, norm: str = "batch") -> MSGUNet:
    """MSG U-Net generator (label->photo with 36 input channels, or image->image with 3)."""
    return MSGUNet(in_channels, out_channels, ngf, max_width, n_down, num_outputs, input_scales, norm)
