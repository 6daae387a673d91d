"""Winograd F(2x2, 3x3) convolution for wide 3x3 layers at CPU inference.

PyTorch's CPU convolutions (oneDNN) use Winograd only on AVX-512 machines; on AVX2 CPUs a 3x3
convolution costs 9 multiply-adds per input channel per output pixel. Winograd's minimal
filtering algorithm F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016) computes each 2x2 output tile from a 4x4 input tile with 16 instead of 36
products per channel pair, i.e. 2.25x fewer multiply-adds, as 16 independent matrix products:

    Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A

with the fixed matrices ``B^T`` (4x4), ``G`` (4x3) and ``A^T`` (2x4) below. The filter transform
``U = G g G^T`` is computed once (in float64) when a convolution is converted; per call the
input tiles are transformed with one (16, 16) product, multiplied by ``U`` in one batched
matrix product (16, tiles, C) @ (16, C, K), and transformed back with one (4, 16) product.

It computes the same function as the convolution up to float32 rounding (max abs error about
2e-6 against a float64 reference on unit-scale activations, smaller than the direct fp32
convolution's own error); ``tests/test_winograd.py`` checks it. It pays off for wide layers
(hundreds of channels) at small spatial sizes, where the product dominates the transforms: the
1024-wide blocks of the ASAP LR stream and of the pix2pixHD / SPADE bottlenecks. The transformed
filters take 16/9 of the original weights' memory.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["winograd_filter", "winograd_conv3x3", "WinogradConv2d", "convert_winograd"]

_BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
_G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)
# Row-major vec(B^T d B) = kron(B^T, B^T) vec(d), and likewise for the output transform.
_KB = torch.kron(_BT, _BT)  # (16, 16)
_KA = torch.kron(_AT, _AT)  # (4, 16)


def winograd_filter(weight: torch.Tensor) -> torch.Tensor:
    """Transform 3x3 filters for :func:`winograd_conv3x3`.

    Args:
        weight: (K, C, 3, 3) convolution weight (any float dtype).

    Returns:
        (16, C, K) float tensor ``G g G^T`` per (output, input) channel pair, the 4x4 tile
        flattened row-major, in ``weight``'s dtype (computed in float64).

    Raises:
        ValueError: ``weight`` is not (K, C, 3, 3).
    """
    if weight.dim() != 4 or weight.shape[-2:] != (3, 3):
        raise ValueError(f"expected a (K, C, 3, 3) weight, got {tuple(weight.shape)}")
    g = _G.to(weight.device)
    u = torch.einsum("ai,kcij,bj->abck", g, weight.detach().double(), g)
    return u.reshape(16, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     padding: int = 1) -> torch.Tensor:
    """3x3 convolution, stride 1, zero padding ``padding``, by Winograd F(2x2, 3x3).

    Args:
        x: (N, C, H, W) float input.
        u: (16, C, K) transformed filters from :func:`winograd_filter`.
        bias: optional (K,) bias.
        padding: zero padding on every side (0 or 1; use 0 after an explicit reflection pad).

    Returns:
        (N, K, H + 2 padding - 2, W + 2 padding - 2), the same values as
        ``F.conv2d(x, weight, bias, padding=padding)`` up to float32 rounding.

    Raises:
        ValueError: channel mismatch between ``x`` and ``u``, or an output smaller than 1x1.
    """
    n, c, h, w = x.shape
    if u.shape[1] != c:
        raise ValueError(f"input has {c} channels, the filters expect {u.shape[1]}")
    k = u.shape[2]
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}x{w} with padding {padding} is too small for a 3x3 convolution")
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    # Zero-pad so that every 2x2 output tile has its full 4x4 input tile; channels last so that
    # each tile position is a contiguous run of C values.
    xp = F.pad(x, (padding, padding + 2 * tw - wo, padding, padding + 2 * th - ho))
    xp = xp.permute(0, 2, 3, 1).contiguous()  # (N, 2th+2, 2tw+2, C)
    d = xp.unfold(1, 4, 2).unfold(2, 4, 2)  # (N, th, tw, C, 4, 4) view
    d = d.permute(4, 5, 0, 1, 2, 3).reshape(16, -1)  # (16, N*th*tw*C)
    v = (_KB.to(x) @ d).view(16, n * th * tw, c)  # input transform B^T d B
    m = torch.bmm(v, u)  # (16, tiles, K): the 16 element-wise products summed over C
    y = (_KA.to(x) @ m.view(16, -1)).view(4, n * th * tw, k)  # output transform A^T m A
    if bias is not None:
        y = y + bias  # broadcast over the trailing K
    y = y.view(2, 2, n, th, tw, k).permute(2, 5, 3, 0, 4, 1).reshape(n, k, 2 * th, 2 * tw)
    if 2 * th != ho or 2 * tw != wo:
        y = y[:, :, :ho, :wo]
    return y.contiguous()


class WinogradConv2d(nn.Module):
    """Inference-only replacement of a 3x3, stride-1, zero-padded ``nn.Conv2d``.

    Holds the transformed filters (16, C, K) as a buffer (no trainable parameters); forward
    maps (N, C, H, W) -> (N, K, H + 2p - 2, W + 2p - 2) like the original convolution (see
    :func:`winograd_conv3x3`).
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not is_winograd_compatible(conv, min_channels=1):
            raise ValueError(f"not a 3x3 stride-1 zero-padded ungrouped convolution: {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.padding = int(conv.padding[0])
        self.register_buffer("u", winograd_filter(conv.weight))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return winograd_conv3x3(x, self.u, self.bias, self.padding)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, padding={self.padding}, F(2x2,3x3)"


def is_winograd_compatible(m: nn.Module, min_channels: int = 256) -> bool:
    """True for a plain ``nn.Conv2d`` (no parametrisation, no forward hooks such as the old-style
    spectral norm) with a 3x3 kernel, stride 1, dilation 1, groups 1, zero padding 0 or 1 on both
    axes and at least ``min_channels`` input and output channels."""
    # ``type(m) is nn.Conv2d`` also rules out parametrised convs (their class is a generated subclass)
    return (type(m) is nn.Conv2d and not m._forward_pre_hooks
            and not m._forward_hooks and m.kernel_size == (3, 3)
            and m.stride == (1, 1) and m.dilation == (1, 1) and m.groups == 1 and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple) and m.padding[0] == m.padding[1] and m.padding[0] in (0, 1)
            and min(m.in_channels, m.out_channels) >= min_channels)


def convert_winograd(model: nn.Module, min_channels: int = 256) -> nn.Module:
    """Replace, in place, every 3x3 stride-1 convolution of ``model`` with at least
    ``min_channels`` input and output channels by a :class:`WinogradConv2d` (inference only;
    call after :func:`asapnet.inference.optimize.prepare_for_inference` so that spectral norm is
    folded). Narrow convolutions stay: for them the tile transforms cost more than the products
    they save. Returns ``model``.
    """
    for name, child in list(model.named_children()):
        if is_winograd_compatible(child, min_channels):
            setattr(model, name, WinogradConv2d(child))
        else:
            convert_winograd(child, min_channels)
    return model
