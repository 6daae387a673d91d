"""Denoising training data (:class:`DenoiseDataConfig`) and the defaults of ``asapnet train --task denoise``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from ...data.denoise import BLIND_SIGMA_RANGE, DNCNN_SCALES


@dataclass
class DenoiseDataConfig:
    """Training data and schedule of :func:`train_denoiser`.

    Attributes:
        sigma: fixed noise level (0-255 scale), or ``None`` for blind training with σ ~ U[sigma_range].
        sigma_range: blind noise range (0-255 scale), DnCNN-B's [10, 55].
        patch_size: training patch side in pixels (a multiple of S for ASAP models).
        patches_per_image: patches per Train400 image and epoch.
        scales: multi-scale augmentation factors.
        val_images: number of Set12 images (first in name order) scored every checkpoint, 0 = none.
        val_sigma: σ of the validation noise (0-255 scale).
        lr_hold: fraction of the steps at the full learning rate before the cosine decay.
        lr_final: final learning rate as a fraction of the initial one.
    """

    sigma: Optional[float] = 25.0
    sigma_range: Tuple[float, float] = BLIND_SIGMA_RANGE
    patch_size: int = 40
    patches_per_image: int = 64
    scales: Tuple[float, ...] = DNCNN_SCALES
    val_images: int = 3
    val_sigma: float = 25.0
    lr_hold: float = 0.5
    lr_final: float = 0.05


#: Defaults of the shared ``asapnet train`` options when ``--task denoise`` (used when the parsed
#: value is ``None``; the GAN task keeps its own defaults).
DENOISE_TRAIN_DEFAULTS: Dict[str, Any] = {"model": "asap", "preset": "denoise-gray", "steps": 3000,
                                          "batch_size": 16, "lr_g": 1e-3, "out": None, "sample_every": 500,
                                          "checkpoint_every": 100, "lambda_l1": 0.0}
