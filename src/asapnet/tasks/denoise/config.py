"""Denoising training data (:class:`DenoiseDataConfig`) and the defaults of ``asapnet train --task denoise``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

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


@dataclass
class DenoiseTrainOptions:
    """Options of ``asapnet train --task denoise``; the defaults are the command's. The fields are the
    command-line options without their dashes; ``out`` None: ``runs/denoise-<model>-<sigma or blind>``."""

    batch_size: int = 16
    blind: bool = False
    checkpoint_every: int = 100
    data_root: Optional[str] = None
    depth: Optional[int] = None
    device: str = 'cpu'
    init: Optional[str] = None
    loss: str = 'l2'
    lr_g: float = 0.001
    model: str = 'asap'
    out: Optional[str] = None
    overwrite: bool = False
    patch_size: Optional[int] = None
    patches_per_image: int = 64
    precision: str = 'fp32'
    preset: str = 'denoise-gray'
    quiet: bool = False
    resume: bool = False
    sample_every: int = 500
    seed: int = 0
    sigma: Optional[float] = None
    steps: int = 3000
    threads: Optional[int] = None
    time_budget: Optional[float] = None
    val_images: Optional[int] = None


@dataclass
class DenoiseRunOptions:
    """Options of ``asapnet denoise``; the defaults are the command's. The fields are the command-line options
    without their dashes (``inputs``: the files, ``out``: the output folder)."""

    inputs: List[str]
    out: str
    checkpoint: Optional[str] = None
    sigma: Optional[float] = None
    seed: int = 0
    on_error: str = "stop"
    device: str = "cpu"
    threads: Optional[int] = None


@dataclass
class DenoiseEvaluateOptions:
    """Options of ``asapnet evaluate --task denoise``; the defaults are the command's. The fields are the command-
    line options without their dashes; ``data``: folders of clean test images."""

    checkpoint: str
    data: List[str]
    sigma: List[float] = field(default_factory=lambda: [15.0, 25.0, 50.0])
    seed: int = 0
    json: bool = False
    device: str = "cpu"
    threads: Optional[int] = None
