"""Gaussian denoising data: Train400 training patches and deterministic noisy test sets.

Value convention (all denoising code in asapnet):

* images are gray float32 tensors (1, H, W) in **[0, 1]** (8-bit value / 255);
* the noise level ``sigma`` is always given on the **0-255 scale** (σ = 25 means a standard
  deviation of 25/255 on the [0, 1] scale), as in the DnCNN paper and its tables;
* noise is additive white Gaussian, added in float and **not clipped**, so noisy inputs may
  lie outside [0, 1] (DnCNN protocol, Zhang et al. TIP 2017 §IV-A);
* PSNR/SSIM are measured on the 0-255 scale after clipping the output to [0, 255]
  (see :func:`asapnet.tasks.denoise.evaluate.evaluate_denoiser`).

Items are dicts ``{"input": noisy (1, H, W), "target": clean (1, H, W), "name": str,
"sigma": float (0-255 scale)}``.

Training patches follow DnCNN (TIP 2017 §IV-A and its reference code ``generate_patches``):
the 400 180x180 BSD images rescaled by 1, 0.9, 0.8, 0.7 (bicubic), random crops, one of the 8
flips/rotations, then noise of a fixed σ (DnCNN-S) or σ ~ U[10, 55] per patch (blind, DnCNN-B).
"""
from __future__ import annotations

import random
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .io import DataError, PathLike, list_images, read_image

#: DnCNN's multi-scale training augmentation (reference code ``scales = [1, 0.9, 0.8, 0.7]``).
DNCNN_SCALES: Tuple[float, ...] = (1.0, 0.9, 0.8, 0.7)
#: Noise range of blind training (DnCNN-B, TIP 2017 §IV-A): σ ~ U[10, 55] on the 0-255 scale.
BLIND_SIGMA_RANGE: Tuple[float, float] = (10.0, 55.0)


def read_gray(path: PathLike) -> torch.Tensor:
    """Read an image as gray float32 (1, H, W) in [0, 1] (colour images are converted to luminance).

    Raises:
        DataError: missing, empty or corrupt file (the message names the file).
    """
    arr = read_image(path, channels=1)  # uint8 (H, W, 1)
    return torch.from_numpy(arr[..., 0].astype(np.float32) / 255.0)[None]


def augment8(x: torch.Tensor, mode: int) -> torch.Tensor:
    """One of the 8 dihedral transforms of (..., H, W): ``mode`` 0..7 = rot90 by ``mode % 4``
    quarter turns, then a vertical flip when ``mode >= 4``. Mode 0 is the identity."""
    if not 0 <= mode < 8:
        raise ValueError(f"augmentation mode must be in 0..7, got {mode}")
    x = torch.rot90(x, mode % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-2,)) if mode >= 4 else x


def add_noise(clean: torch.Tensor, sigma: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``clean + sigma/255 * n``, n ~ N(0, 1) i.i.d., not clipped.

    Args:
        clean: float tensor in [0, 1], any shape.
        sigma: noise standard deviation on the 0-255 scale (>= 0).
        generator: torch RNG to draw n from (``None``: the global RNG).

    Raises:
        ValueError: negative sigma.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 (0-255 scale), got {sigma}")
    n = torch.randn(clean.shape, generator=generator, dtype=torch.float32)
    return clean + (sigma / 255.0) * n.to(clean.dtype)


def noise_seed(name: str, sigma: float, seed: int = 0) -> int:
    """Stable seed of the test noise of image ``name`` at ``sigma`` (0-255 scale) and ``seed``:
    CRC-32 of ``"name|sigma|seed"`` (independent of Python's hash randomisation and of the file's
    folder, so the same image gets the same noise wherever it is stored)."""
    return zlib.crc32(f"{name}|{float(sigma):g}|{int(seed)}".encode("utf-8"))


def deterministic_noisy(clean: torch.Tensor, name: str, sigma: float, seed: int = 0) -> torch.Tensor:
    """Noisy version of ``clean`` ([0, 1]) whose noise depends only on (name, sigma, seed)."""
    g = torch.Generator().manual_seed(noise_seed(name, sigma, seed))
    return add_noise(clean, sigma, g)


class DenoisePatchDataset(Dataset):
    """Random noisy/clean gray training patches (DnCNN protocol).

    Args:
        folder: folder of training images (e.g. ``<data-root>/denoise/Train400``); colour
            images are converted to gray.
        patch_size: side of the square patches in pixels (DnCNN: 40 for σ-specific models).
        sigma: fixed noise level on the 0-255 scale; ``None`` for blind training.
        sigma_range: (low, high) of the uniform noise level of blind training (0-255 scale).
        scales: rescaling factors applied to every image (bicubic), one picked per patch.
        patches_per_image: epoch length = number of images x this.
        augment: apply one of the 8 flips/rotations (uniformly) to each patch.

    Randomness comes from Python's ``random`` (scale, image position, flip) and torch's global RNG
    (noise), both of which :class:`asapnet.training.trainer.Trainer` checkpoints, so a resumed run continues
    the same stream.

    Raises:
        DataError: missing/empty folder, unreadable image, or an image smaller than the patch at
            the smallest scale.
        ValueError: negative sigma or a bad sigma range.
    """

    def __init__(self, folder: PathLike, patch_size: int = 40, sigma: Optional[float] = 25.0,
                 sigma_range: Tuple[float, float] = BLIND_SIGMA_RANGE, scales: Sequence[float] = DNCNN_SCALES,
                 patches_per_image: int = 64, augment: bool = True):
        if sigma is not None and sigma < 0:
            raise ValueError(f"sigma must be >= 0 (0-255 scale), got {sigma}")
        if not (0 <= sigma_range[0] <= sigma_range[1]):
            raise ValueError(f"sigma_range must satisfy 0 <= low <= high, got {sigma_range}")
        self.files = list_images(folder)
        self.patch_size, self.sigma, self.sigma_range = int(patch_size), sigma, tuple(sigma_range)
        self.scales, self.patches_per_image, self.augment = tuple(scales), int(patches_per_image), augment
        # every image at every scale, uint8 (H, W): 400 x 180^2 x (1 + .81 + .64 + .49) = 37 MB
        self.images: List[List[np.ndarray]] = []
        for f in self.files:
            img = Image.fromarray(read_image(f, channels=1)[..., 0])
            per_scale = []
            for s in self.scales:
                h, w = int(img.height * s), int(img.width * s)
                if min(h, w) < self.patch_size:
                    raise DataError(f"{f}: {img.width}x{img.height} at scale {s} is smaller than the "
                                    f"{self.patch_size}x{self.patch_size} training patch")
                per_scale.append(np.asarray(img if s == 1 else img.resize((w, h), Image.BICUBIC)))
            self.images.append(per_scale)

    def __len__(self) -> int:
        return len(self.files) * self.patches_per_image

    def sample_sigma(self) -> float:
        """The fixed σ, or σ ~ U[sigma_range] for blind training (0-255 scale)."""
        return float(self.sigma) if self.sigma is not None else random.uniform(*self.sigma_range)

    def __getitem__(self, i: int) -> Dict[str, object]:
        k = i % len(self.files)
        img = self.images[k][random.randrange(len(self.scales))]
        p = self.patch_size
        top, left = random.randint(0, img.shape[0] - p), random.randint(0, img.shape[1] - p)
        clean = torch.from_numpy(img[top:top + p, left:left + p].astype(np.float32) / 255.0)[None]
        if self.augment:
            clean = augment8(clean, random.randrange(8)).contiguous()
        sigma = self.sample_sigma()
        return {"input": add_noise(clean, sigma), "target": clean, "name": self.files[k].stem, "sigma": sigma}


class NoisyTestDataset(Dataset):
    """Whole test images with deterministic noise (one item per image, in file-name order).

    The noise of an image depends only on (file stem, sigma, seed), see :func:`noise_seed`,
    so every model is evaluated on exactly the same noisy inputs, run after run.

    Args:
        folder: folder of test images (e.g. BSD68, Set12); colour images are converted to gray.
        sigma: noise level on the 0-255 scale.
        seed: noise seed (change it to draw another noise realisation).
        files: explicit image files instead of the whole folder.

    Raises:
        DataError: missing/empty folder or unreadable image.
    """

    def __init__(self, folder: Optional[PathLike], sigma: float, seed: int = 0,
                 files: Optional[Sequence[PathLike]] = None):
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0 (0-255 scale), got {sigma}")
        self.files = [Path(f) for f in files] if files is not None else list_images(folder)
        self.sigma, self.seed = float(sigma), int(seed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Dict[str, object]:
        f = self.files[i]
        clean = read_gray(f)
        noisy = deterministic_noisy(clean, f.stem, self.sigma, self.seed)
        return {"input": noisy, "target": clean, "name": f.stem, "sigma": self.sigma}
