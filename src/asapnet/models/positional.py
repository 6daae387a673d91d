"""Sinusoidal positional encoding of the HR stream's per-pixel MLPs (ASAP-Net paper §3.3)."""
from __future__ import annotations

import functools
import math
from typing import Tuple

import torch

# ---------------------------------------------------------------------------------------------
# §3.3 positional encoding
# ---------------------------------------------------------------------------------------------


def _axis_encoding(n: int, k: int, scale: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """sin and cos of 2 pi x / 2^k at the n pixel centres of one axis (float64): the integer
    positions x = j for scale 1; for scale r > 1 the values at the training-scale pixels around
    each fine pixel centre u = (j + 0.5) / r - 0.5, interpolated linearly in u."""
    if scale == 1:
        f = 2 * math.pi * torch.arange(n, dtype=torch.float64) / 2 ** k
        return torch.sin(f), torch.cos(f)
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / scale - 0.5
    lo = torch.floor(u)
    w = u - lo
    f0, f1 = 2 * math.pi * lo / 2 ** k, 2 * math.pi * (lo + 1) / 2 ** k
    return (1 - w) * torch.sin(f0) + w * torch.sin(f1), (1 - w) * torch.cos(f0) + w * torch.cos(f1)


@functools.lru_cache(maxsize=32)
def _positional_encoding_cached(height: int, width: int, num_frequencies: int, device: str,
                                dtype: torch.dtype, scale: int = 1) -> torch.Tensor:
    chans = []
    for k in range(1, num_frequencies + 1):
        sx, cx = _axis_encoding(width, k, scale)
        sy, cy = _axis_encoding(height, k, scale)
        chans += [sx[None, :].expand(height, width), cx[None, :].expand(height, width),
                  sy[:, None].expand(height, width), cy[:, None].expand(height, width)]
    if not chans:
        return torch.zeros(1, 0, height, width, dtype=dtype, device=device)
    pe = torch.stack(chans)[None]  # (1, 4K, H, W)
    return pe.to(device=device, dtype=dtype).contiguous()


def positional_encoding(height: int, width: int, num_frequencies: int,
                        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                        scale: int = 1) -> torch.Tensor:
    """Sinusoidal encoding of pixel positions (paper §3.3).

    For k = 1..``num_frequencies`` the channels are, in this order,
    sin(2*pi*x/2^k), cos(2*pi*x/2^k), sin(2*pi*y/2^k), cos(2*pi*y/2^k),
    with x the column and y the row index of the pixel (0-based, in pixels).

    With ``scale`` r > 1 the grid is r times finer than the one the model was trained on (a
    model trained at 256x512 translating 1024x2048): every fine pixel gets the encoding of the
    training-scale pixels around its centre u = (j + 0.5) / r - 0.5, interpolated linearly
    between floor(u) and floor(u) + 1 (r = 1 gives x = j). The per-pixel MLPs only ever saw the
    encoding at integer positions: evaluating the sinusoids at u itself gives the k = 1
    channels (period 2 pixels) values they never took in training (sin(pi u) = +-1 between
    pixels where it was always 0), which paints a dotted pattern of period 2r pixels; the
    interpolated encoding does not (docs/translation.md, full resolution).

    Returns:
        Tensor of shape (1, 4 * num_frequencies, height, width), values in [-1, 1]. It is cached
        per (height, width, num_frequencies, device, dtype, scale); treat it as read-only.
    """
    return _positional_encoding_cached(int(height), int(width), int(num_frequencies), str(torch.device(device)), dtype,
                                       int(scale))
