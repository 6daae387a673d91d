"""Building blocks the baseline generators share: input checks and padding to a multiple of the
downsampling factor."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> Tuple[torch.Tensor, int, int]:
    """Replicate-pad (N, C, H, W) on the bottom/right so H and W are multiples of ``multiple``.

    Returns:
        (padded tensor, original H, original W); crop the output back with ``y[..., :H, :W]``.
    """
    H, W = x.shape[-2:]
    ph, pw = (-H) % multiple, (-W) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, H, W


def check_input(x: torch.Tensor, in_channels: int, name: str) -> None:
    """Raise ValueError unless ``x`` is (N, in_channels, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"{name} expects (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{name} expects {in_channels} input channels, got {x.shape[1]}")
