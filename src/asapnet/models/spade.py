"""SPADE generator (Park et al., "Semantic Image Synthesis with Spatially-Adaptive
Normalization", CVPR 2019, §3, Fig. 2 and 4), a baseline of the ASAP-Net paper.

Faithful to ``SPADEGenerator`` of the reference code (NVlabs/SPADE ``models/networks/``) with its
Cityscapes defaults ``--ngf 64 --num_upsampling_layers normal --norm_G spectralspadesyncbatch3x3``
and no VAE: 93.0 M parameters with 35 labels + 1 instance-edge channel. Synchronized batch norm
is plain :class:`torch.nn.BatchNorm2d` here (identical on one device).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ..config import CITYSCAPES_NUM_CLASSES
from .pix2pixhd import check_input, pad_to_multiple
from .registry import register_model


class SPADE(nn.Module):
    """Spatially-adaptive denormalisation (SPADE paper Eq. (1)).

    out = BN(x) * (1 + gamma(seg)) + beta(seg), with BN a parameter-free batch norm and
    gamma, beta predicted by 3x3 convs from a shared 3x3 conv + ReLU (``hidden`` channels) on the
    label map resized (nearest) to the size of ``x``.

    Shapes: x (N, channels, h, w), seg (N, label_channels, H, W) -> (N, channels, h, w).
    """

    def __init__(self, channels: int, label_channels: int, hidden: int = 128, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.param_free_norm = nn.BatchNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, kernel_size, padding=pad), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Residual block with SPADE normalisation (SPADE paper Fig. 4, right).

    dx = conv_1(lrelu(SPADE_1(conv_0(lrelu(SPADE_0(x)))))), out = shortcut(x) + dx, where the
    3x3 convs are spectrally normalised, the middle width is min(fin, fout), leaky-ReLU slope 0.2,
    and the shortcut is SPADE + 1x1 conv (no bias) when fin != fout, identity otherwise.

    Shapes: x (N, fin, h, w), seg (N, label_channels, H, W) -> (N, fout, h, w).
    """

    def __init__(self, fin: int, fout: int, label_channels: int, hidden: int = 128, kernel_size: int = 3):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmid, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fmid, fout, 3, padding=1))
        self.norm_0 = SPADE(fin, label_channels, hidden, kernel_size)
        self.norm_1 = SPADE(fmid, label_channels, hidden, kernel_size)
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = SPADE(fin, label_channels, hidden, kernel_size)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """SPADE generator without the image encoder (``--use_vae`` off), 'normal' upsampling.

    The label map resized (nearest) to (H / 32, W / 32) goes through a 3x3 conv to 16 * ngf
    channels, then head_0 (16 ngf), up, G_middle_0, G_middle_1 (16 ngf), up, up_0 (8 ngf), up,
    up_1 (4 ngf), up, up_2 (2 ngf), up, up_3 (ngf), leaky-ReLU(0.2), 3x3 conv, tanh; ``up`` is
    2x nearest upsampling, every block a :class:`SPADEResnetBlock` fed the full label map.

    Size rule: the reference fixes the initial grid at construction from ``--crop_size`` and
    ``--aspect_ratio`` (8 x 16 for Cityscapes 256 x 512); here it is computed per call as
    (H / 2^5, W / 2^5), which gives the same network for the reference sizes. Any H, W work: the
    input is replicate-padded to multiples of 32 and the output cropped back.

    Input: (N, in_channels, H, W) float, one-hot labels + instance edges in {0, 1}.
    Output: (N, out_channels, H, W) in [-1, 1].

    Raises:
        ValueError: non-4D input or wrong channel count.
    """

    num_upsampling = 5  # 'normal'

    def __init__(self, in_channels: int = CITYSCAPES_NUM_CLASSES + 1, out_channels: int = 3, ngf: int = 64,
                 spade_hidden: int = 128):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        nf, lc, hid = ngf, in_channels, spade_hidden
        self.fc = nn.Conv2d(lc, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, lc, hid)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, lc, hid)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, lc, hid)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, lc, hid)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, lc, hid)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, lc, hid)
        self.up_3 = SPADEResnetBlock(2 * nf, nf, lc, hid)
        self.conv_img = nn.Conv2d(nf, out_channels, 3, padding=1)
        self.apply(_init_weights)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate (N, in_channels, H, W) -> (N, out_channels, H, W) in [-1, 1]."""
        check_input(x, self.in_channels, type(self).__name__)
        seg, H, W = pad_to_multiple(x, 2 ** self.num_upsampling)
        sh, sw = (s // 2 ** self.num_upsampling for s in seg.shape[-2:])
        h = self.fc(F.interpolate(seg, size=(sh, sw), mode="nearest"))
        h = self._up(self.head_0(h, seg))
        h = self.G_middle_1(self.G_middle_0(h, seg), seg)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            h = block(self._up(h), seg)
        y = torch.tanh(self.conv_img(F.leaky_relu(h, 0.2)))
        return y[..., :H, :W]


def _init_weights(m: nn.Module) -> None:
    # SPADE ``BaseNetwork.init_weights('xavier', 0.02)``: conv weights xavier-normal with gain 0.02
    # (for spectrally normalised convs, the un-normalised weight), biases 0.
    if isinstance(m, nn.Conv2d):
        weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
        with torch.no_grad():
            nn.init.xavier_normal_(weight, gain=0.02)
            if m.bias is not None:
                m.bias.zero_()


@register_model("spade")
def spade(**kwargs) -> SPADEGenerator:
    """``create_model("spade", in_channels=36)``; kwargs go to :class:`SPADEGenerator`."""
    return SPADEGenerator(**kwargs)
