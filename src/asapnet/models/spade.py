"""SPADE generator (Park et al., "Semantic Image Synthesis with Spatially-Adaptive
Normalization", CVPR 2019, §3, Fig. 2 and 4), a baseline of the ASAP-Net paper.

Faithful to ``SPADEGenerator`` of the reference code (NVlabs/SPADE ``models/networks/``); the
defaults are ``--ngf 64 --num_upsampling_layers normal --norm_G spectralspadesyncbatch3x3`` without
the VAE: 93.0 M parameters with 35 labels + 1 instance-edge channel. The other reference settings
(``num_upsampling_layers`` more/most, ``spadeinstance`` / kernel size, no spectral norm, the VAE
latent input ``--use_vae --z_dim``) are constructor options, so that the released checkpoints
convert (``asapnet convert --from spade``, docs/compatibility.md). Synchronized batch norm is plain
:class:`torch.nn.BatchNorm2d` here (identical on one device).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ..config import CITYSCAPES_NUM_CLASSES
from .layers import check_input, pad_to_multiple
from .registry import register_model

#: parameter-free normalisations of :class:`SPADE` (the reference's ``spadesyncbatch`` /
#: ``spadebatch`` are ``"batch"``, ``spadeinstance`` is ``"instance"``).
SPADE_NORMS = ("batch", "instance")

#: ``num_upsampling_layers`` of the reference -> number of 2x upsamplings.
NUM_UPSAMPLING = {"normal": 5, "more": 6, "most": 7}


class SPADE(nn.Module):
    """Spatially-adaptive denormalisation (SPADE paper Eq. (1)).

    out = N(x) * (1 + gamma(seg)) + beta(seg), with N a parameter-free batch norm (``norm="batch"``)
    or instance norm (``"instance"``) and gamma, beta predicted by k x k convs from a shared k x k
    conv + ReLU (``hidden`` channels) on the label map resized (nearest) to the size of ``x``.

    Shapes: x (N, channels, h, w), seg (N, label_channels, H, W) -> (N, channels, h, w).

    Raises:
        ValueError: unknown ``norm``.
    """

    def __init__(self, channels: int, label_channels: int, hidden: int = 128, kernel_size: int = 3,
                 norm: str = "batch"):
        super().__init__()
        pad = kernel_size // 2
        if norm not in SPADE_NORMS:
            raise ValueError(f"SPADE norm must be one of {'|'.join(SPADE_NORMS)}, got {norm!r}")
        self.param_free_norm = nn.BatchNorm2d(channels, affine=False) if norm == "batch" \
            else nn.InstanceNorm2d(channels, affine=False)
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
    3x3 convs are spectrally normalised (``spectral=True``), the middle width is min(fin, fout),
    leaky-ReLU slope 0.2, and the shortcut is SPADE + 1x1 conv (no bias) when fin != fout, identity
    otherwise. ``kernel_size`` and ``norm`` are those of the :class:`SPADE` layers.

    Shapes: x (N, fin, h, w), seg (N, label_channels, H, W) -> (N, fout, h, w).
    """

    def __init__(self, fin: int, fout: int, label_channels: int, hidden: int = 128, kernel_size: int = 3,
                 norm: str = "batch", spectral: bool = True):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        sn = spectral_norm if spectral else (lambda m: m)
        self.conv_0 = sn(nn.Conv2d(fin, fmid, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(fmid, fout, 3, padding=1))
        self.norm_0 = SPADE(fin, label_channels, hidden, kernel_size, norm)
        self.norm_1 = SPADE(fmid, label_channels, hidden, kernel_size, norm)
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = SPADE(fin, label_channels, hidden, kernel_size, norm)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """SPADE generator (reference ``SPADEGenerator``); defaults: no image encoder (``--use_vae``
    off), 'normal' upsampling.

    The label map resized (nearest) to (H / 2^n, W / 2^n) goes through a 3x3 conv to 16 * ngf
    channels, then head_0 (16 ngf), up, G_middle_0, [up if 'more'/'most'], G_middle_1 (16 ngf),
    up, up_0 (8 ngf), up, up_1 (4 ngf), up, up_2 (2 ngf), up, up_3 (ngf), [up, up_4 (ngf / 2) if
    'most'], leaky-ReLU(0.2), 3x3 conv, tanh; ``up`` is 2x nearest upsampling, every block a
    :class:`SPADEResnetBlock` fed the full label map. n = 5, 6, 7 for ``num_upsampling_layers``
    'normal', 'more', 'most'.

    With ``z_dim > 0`` (the reference's ``--use_vae``) the first activation is instead a linear map
    of a latent z (N, z_dim) to 16 ngf x ``latent_size``; z ~ N(0, 1) is drawn from torch's global
    generator when not given (as the reference does at test time), and the input must then be
    exactly latent_size * 2^n.

    Size rule: the reference fixes the initial grid at construction from ``--crop_size`` and
    ``--aspect_ratio`` (4 x 8 for Cityscapes 256 x 512 with 'more'); without the VAE it is computed
    here per call as (H / 2^n, W / 2^n), which gives the same network for the reference sizes. Any
    H, W work: the input is replicate-padded to multiples of 2^n and the output cropped back.

    Input: (N, in_channels, H, W) float, one-hot labels + instance edges in {0, 1}.
    Output: (N, out_channels, H, W) in [-1, 1].

    Raises:
        ValueError: non-4D input, wrong channel count, a VAE model given an input of another size
            than latent_size * 2^n or a z of the wrong shape; at construction, unknown
            ``num_upsampling_layers`` / ``spade_norm`` or ``z_dim > 0`` without ``latent_size``.
    """

    def __init__(self, in_channels: int = CITYSCAPES_NUM_CLASSES + 1, out_channels: int = 3, ngf: int = 64,
                 spade_hidden: int = 128, num_upsampling_layers: str = "normal", spade_norm: str = "batch",
                 spade_kernel: int = 3, spectral_norm: bool = True, z_dim: int = 0,
                 latent_size: Optional[Sequence[int]] = None):
        super().__init__()
        if num_upsampling_layers not in NUM_UPSAMPLING:
            raise ValueError(f"num_upsampling_layers must be one of {'|'.join(NUM_UPSAMPLING)}, "
                             f"got {num_upsampling_layers!r}")
        if z_dim and (latent_size is None or len(latent_size) != 2):
            raise ValueError("a SPADE generator with z_dim > 0 needs latent_size (height, width)")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_upsampling_layers = num_upsampling_layers
        self.num_upsampling = NUM_UPSAMPLING[num_upsampling_layers]
        self.ngf, self.z_dim = ngf, int(z_dim)
        self.latent_size = (int(latent_size[0]), int(latent_size[1])) if z_dim else None
        nf, lc = ngf, in_channels

        def block(fin: int, fout: int) -> SPADEResnetBlock:
            return SPADEResnetBlock(fin, fout, lc, spade_hidden, spade_kernel, spade_norm, spectral_norm)

        if self.z_dim:
            self.fc = nn.Linear(self.z_dim, 16 * nf * self.latent_size[0] * self.latent_size[1])
        else:
            self.fc = nn.Conv2d(lc, 16 * nf, 3, padding=1)
        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.up_0 = block(16 * nf, 8 * nf)
        self.up_1 = block(8 * nf, 4 * nf)
        self.up_2 = block(4 * nf, 2 * nf)
        self.up_3 = block(2 * nf, nf)
        final = nf
        if num_upsampling_layers == "most":
            self.up_4 = block(nf, nf // 2)
            final = nf // 2
        self.conv_img = nn.Conv2d(final, out_channels, 3, padding=1)
        self.apply(_init_weights)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Translate (N, in_channels, H, W) -> (N, out_channels, H, W) in [-1, 1].

        ``z`` (N, z_dim): the latent of a VAE model (``z_dim > 0``); ignored otherwise.
        """
        check_input(x, self.in_channels, type(self).__name__)
        n = self.num_upsampling
        if self.z_dim:
            lh, lw = self.latent_size
            if tuple(x.shape[-2:]) != (lh << n, lw << n):
                raise ValueError(f"{type(self).__name__} with a latent input takes {lh << n}x{lw << n} inputs, "
                                 f"got {x.shape[-2]}x{x.shape[-1]}")
            if z is None:
                z = torch.randn(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
            if tuple(z.shape) != (x.shape[0], self.z_dim):
                raise ValueError(f"z must be ({x.shape[0]}, {self.z_dim}), got {tuple(z.shape)}")
            seg, H, W = x, x.shape[-2], x.shape[-1]
            h = self.fc(z).view(x.shape[0], 16 * self.ngf, lh, lw)
        else:
            seg, H, W = pad_to_multiple(x, 2 ** n)
            sh, sw = (s // 2 ** n for s in seg.shape[-2:])
            h = self.fc(F.interpolate(seg, size=(sh, sw), mode="nearest"))
        h = self._up(self.head_0(h, seg))
        h = self.G_middle_0(h, seg)
        if n >= 6:  # 'more' / 'most': one more upsampling between the middle blocks
            h = self._up(h)
        h = self.G_middle_1(h, seg)
        blocks = [self.up_0, self.up_1, self.up_2, self.up_3] + ([self.up_4] if n == 7 else [])
        for blk in blocks:
            h = blk(self._up(h), seg)
        y = torch.tanh(self.conv_img(F.leaky_relu(h, 0.2)))
        return y[..., :H, :W]


def _init_weights(m: nn.Module) -> None:
    # SPADE ``BaseNetwork.init_weights('xavier', 0.02)``: conv (and the VAE's linear) weights
    # xavier-normal with gain 0.02 (for spectrally normalised convs, the un-normalised weight), biases 0.
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
        with torch.no_grad():
            nn.init.xavier_normal_(weight, gain=0.02)
            if m.bias is not None:
                m.bias.zero_()


@register_model("spade")
def spade(**kwargs) -> SPADEGenerator:
    """``create_model("spade", in_channels=36)``; kwargs go to :class:`SPADEGenerator`."""
    return SPADEGenerator(**kwargs)
