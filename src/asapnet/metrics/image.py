"""PSNR and SSIM through torchmetrics."""
from __future__ import annotations

from typing import Tuple

import torch


def to_255(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> [0, 255] float (clamped)."""
    return ((x.float() + 1) * 127.5).clamp(0, 255)


def psnr_ssim(fake: torch.Tensor, real: torch.Tensor, value_range: str = "-1,1") -> Tuple[float, float]:
    """Mean PSNR (dB) and SSIM over a batch of images (N, C, H, W).

    Images are given in [-1, 1] (``value_range="-1,1"``) or 0-255 (``"0,255"``); both metrics are
    computed on the 0-255 scale (data_range 255), PSNR per image then averaged.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if value_range == "-1,1":
        fake, real = to_255(fake), to_255(real)
    elif value_range != "0,255":
        raise ValueError(f"value_range must be '-1,1' or '0,255', got {value_range!r}")
    psnr = peak_signal_noise_ratio(fake, real, data_range=255.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(fake, real, data_range=255.0)
    return float(psnr.mean()), float(ssim)
