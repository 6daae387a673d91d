"""SADNet: Spatial-Adaptive Network for single image denoising (Chang, Li, Feng, Xu, ECCV 2020;
replication: Mentesh et al., "[Re] Spatial-Adaptive Network for Single Image Denoising", Table 1;
layout of the authors' ``model/sadnet.py``).

U-Net of width ``n_channel`` (32) doubling over three 2x2 stride-2 levels:

* encoder: ResBlock (x + conv3x3(LReLU(conv3x3(x)))), down-conv 2x2/2 + LReLU, x3, ResBlock;
* bottleneck: **context block** - 1x1 reduction, four parallel 3x3 convs with dilations 1, 2, 3,
  4 (+ LReLU), 1x1 fusion, residual;
* decoder, per level: **offset block** (conv3x3s + LReLU predicting offset features from the
  decoder features and the 2x-upsampled offset features of the coarser level, Eq. (2)), then a
  **residual spatial-adaptive block** (RSAB, Eq. (3)): x + conv3x3(LReLU(DCN(x))), with DCN a
  modulated deformable 3x3 convolution (Deformable ConvNets v2, 8 deformable groups) whose
  offsets and masks come from the offset features; then a 2x2/2 transposed conv, concatenation
  with the encoder skip and a 1x1 conv;
* output: conv3x3 to the image channels plus the input (residual learning).

The deformable convolution is ``torchvision.ops.deform_conv2d``; its offset/mask predictor
starts at zero (all offsets 0, masks 0.5), as in the authors' code. Weights are Xavier-uniform
initialised with zero biases (authors' code).

Shapes and values: input (N, C, H, W) float, C = 1 (gray) or 3 (colour), in the scale the model
was trained on (asapnet's denoisers use [0, 1], noise σ on the 0-255 scale); output the same
shape and scale, not clipped. Any H, W: reflect-padded to a multiple of 8 and cropped back.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model

_lrelu = nn.LeakyReLU(0.2, inplace=True)


class ModulatedDeformConv(nn.Module):
    """3x3 modulated deformable convolution (DCNv2) with offsets/masks predicted from a separate
    feature map: ``forward(x (N, cin, H, W), feat (N, offset_channels, H, W)) -> (N, cout, H, W)``.

    The predictor is a 3x3 conv giving 3 * groups * 9 channels: (dy, dx) pairs for each kernel tap
    (torchvision's layout), then mask logits (sigmoid -> [0, 1]).
    """

    def __init__(self, cin: int, cout: int, offset_channels: int, groups: int = 8):
        super().__init__()
        if cin % groups:
            raise ValueError(f"input channels {cin} must be divisible by the {groups} deformable groups")
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.xavier_uniform_(self.weight)
        self.offset_mask = nn.Conv2d(offset_channels, groups * 3 * 9, 3, 1, 1)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        # imported here, not at module level: torchvision.ops pulls in torch._dynamo (about a
        # second), which every `import asapnet.models` would otherwise pay
        from torchvision.ops import deform_conv2d

        om = self.offset_mask(feat)
        n_off = self.groups * 2 * 9
        offset, mask = om[:, :n_off], torch.sigmoid(om[:, n_off:])
        return deform_conv2d(x, offset, self.weight, self.bias, padding=(1, 1), mask=mask)


class ResBlock(nn.Module):
    """x' + conv3x3(LReLU(conv3x3(x'))), x' = x or conv1x1(x) when the widths differ."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.conv1 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


class RSABlock(nn.Module):
    """Residual spatial-adaptive block, Eq. (3): x + conv3x3(LReLU(DCN(x; offsets(feat))))."""

    def __init__(self, ch: int, offset_channels: int, groups: int = 8):
        super().__init__()
        self.dcn = ModulatedDeformConv(ch, ch, offset_channels, groups)
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x: torch.Tensor, offset_feat: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.leaky_relu(self.dcn(x, offset_feat), 0.2))


class OffsetBlock(nn.Module):
    """Offset features of one decoder level, Eq. (2): from x and the coarser level's offset
    features (bilinearly upsampled x2 and doubled, as offsets are in pixels)."""

    def __init__(self, cin: int, offset_channels: int, has_coarser: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, offset_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(2 * offset_channels, offset_channels, 3, 1, 1) if has_coarser else None
        self.conv3 = nn.Conv2d(offset_channels, offset_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, coarser: Optional[torch.Tensor] = None) -> torch.Tensor:
        o = F.leaky_relu(self.conv1(x), 0.2)
        if self.conv2 is not None:
            if coarser is None:
                raise ValueError("this offset block needs the coarser level's offset features")
            up = F.interpolate(coarser, size=o.shape[-2:], mode="bilinear", align_corners=False)
            o = F.leaky_relu(self.conv2(torch.cat([o, 2 * up], 1)), 0.2)
        return F.leaky_relu(self.conv3(o), 0.2)


class ContextBlock(nn.Module):
    """Multi-dilation context block: x + fuse(cat_d LReLU(conv3x3_dilation d(reduce(x)))), d = 1..4."""

    def __init__(self, ch: int, reduced: int, dilations=(1, 2, 3, 4)):
        super().__init__()
        self.reduce = nn.Conv2d(ch, reduced, 1)
        self.branches = nn.ModuleList(nn.Conv2d(reduced, reduced, 3, 1, d, d) for d in dilations)
        self.fuse = nn.Conv2d(len(dilations) * reduced, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reduce(x)
        return x + self.fuse(torch.cat([F.leaky_relu(b(r), 0.2) for b in self.branches], 1))


class SADNet(nn.Module):
    """SADNet denoiser (see the module docstring).

    Args:
        in_channels: image channels, 1 (gray) or 3 (colour).
        out_channels: output channels (default = in_channels; the residual connection to the
            input is used only when they are equal).
        n_channel: width at full resolution (32); 64, 128, 256 on the coarser levels.
        offset_channel: width of the offset features (32).
        groups: deformable groups of the DCNs (8); every level width must be divisible by it.

    Raises:
        ValueError: an input that is not (N, in_channels, H, W), or widths not divisible by groups.
    """

    def __init__(self, in_channels: int = 1, out_channels: Optional[int] = None, n_channel: int = 32,
                 offset_channel: int = 32, groups: int = 8):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.residual = in_channels == out_channels
        c = [n_channel * 2 ** i for i in range(4)]
        self.res = nn.ModuleList([ResBlock(in_channels, c[0])] + [ResBlock(c[i], c[i]) for i in range(1, 4)])
        self.down = nn.ModuleList(nn.Conv2d(c[i], c[i + 1], 2, 2) for i in range(3))
        self.context = ContextBlock(c[3], c[1])
        self.offset = nn.ModuleList(OffsetBlock(c[i], offset_channel, i < 3) for i in range(4))
        self.rsab = nn.ModuleList(RSABlock(c[i], offset_channel, groups) for i in range(4))
        self.up = nn.ModuleList(nn.ConvTranspose2d(c[i + 1], c[i], 2, 2) for i in range(3))
        self.merge = nn.ModuleList(nn.Conv2d(2 * c[i], c[i], 1) for i in range(3))
        self.out = nn.Conv2d(c[0], out_channels, 3, 1, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and not any(
                    m is d.dcn.offset_mask for d in self.rsab):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise (N, C, H, W) -> (N, out_channels, H, W) (input + predicted residual)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SADNet expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        ph, pw = (-H) % 8, (-W) % 8
        mode = "reflect" if (ph < H and pw < W) else "replicate"
        xp = F.pad(x, (0, pw, 0, ph), mode=mode) if (ph or pw) else x
        skips = [self.res[0](xp)]
        for i in range(3):
            skips.append(self.res[i + 1](F.leaky_relu(self.down[i](skips[-1]), 0.2)))
        d = self.context(skips[3])
        off = self.offset[3](d)
        d = self.rsab[3](d, off)
        for i in (2, 1, 0):
            d = self.merge[i](torch.cat([self.up[i](d), skips[i]], 1))
            off = self.offset[i](d, off)
            d = self.rsab[i](d, off)
        y = self.out(d)[..., :H, :W]
        return x + y if self.residual else y


@register_model("sadnet")
def sadnet(in_channels: int = 1, out_channels: Optional[int] = None, n_channel: int = 32, offset_channel: int = 32,
           groups: int = 8) -> SADNet:
    """SADNet; gray by default (``in_channels=3`` for colour). With more than 3 input channels
    (e.g. label maps in ``asapnet bench``) the output defaults to 3 channels."""
    if out_channels is None and in_channels > 3:
        out_channels = 3
    return SADNet(in_channels, out_channels, n_channel, offset_channel, groups)
