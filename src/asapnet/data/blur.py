"""Synthetic motion blur (camera shake) and blurred/sharp image pairs for deblurring.

Blur model (DeblurGAN, Kupyn et al. CVPR 2018 §4.1 "Motion blur generation", after Boracchi &
Foi, "Modeling the performance of image restoration from motion blur", IEEE TIP 21(8), 2012):

1. :func:`motion_trajectory` - a particle moves in the plane for ``iters`` steps of constant
   length; its velocity gets a Gaussian perturbation, an inertial pull back toward the start and,
   with a small probability, an impulsive reversal ("big shake"), then is renormalised. The
   result is a complex vector of positions (pixels, x = real, y = imag).
2. :func:`trajectory_kernel` - the positions within the first ``fraction`` of the exposure are
   splatted bilinearly on a ``canvas`` x ``canvas`` grid: the blur kernel (PSF).
3. :func:`blur` - the image is convolved (FFT, reflect padding) with the kernel.

Differences from DeblurGAN's script ``motion_blur/blur_image.py``, on purpose: the kernel is
normalised to **sum to 1** (DeblurGAN min-max normalises the kernel and the blurred image, which
also changes brightness and contrast), and it is cropped to its support and **centred on its
centre of mass**, so a blurred image is not shifted against its sharp version (a global shift
would dominate PSNR). The parameter ranges are DeblurGAN's: canvas 64, ``max_len`` 60, ``expl``
from {0.01 .. 0.001}, exposure fraction from {1/1000, 1/10, 1/2, 1} (1/1000 = almost no blur).

Value convention: images are float32 (C, H, W) in **[-1, 1]** (the GAN image convention of
:mod:`asapnet.data.datasets`); blurring is linear so the range is kept. Test inputs are rounded
to 8-bit values, as stored blurred photos would be. Kernels are float32 (k, k), non-negative,
summing to 1, k odd.

Items of the datasets are dicts ``{"input": blurred (3, H, W), "target": sharp (3, H, W),
"name": str}``.
"""
from __future__ import annotations

import random
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from .io import DataError, PathLike, list_images, read_image
from .blur_kernels import BlurConfig, random_kernel


def blur(image: torch.Tensor, kernel: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convolve every channel of ``image`` (C, H, W) or (N, C, H, W) float with ``kernel`` (k, k).

    True convolution (the kernel is the PSF), FFT-based, with reflect padding of k // 2 (so any
    k up to min(H, W) works); output has the input's shape and dtype.

    Raises:
        ValueError: a kernel with an even side, or larger than the image.
    """
    ker = torch.as_tensor(kernel, dtype=torch.float64)
    k = ker.shape[-1]
    if ker.dim() != 2 or ker.shape[0] != k or k % 2 == 0:
        raise ValueError(f"kernel must be square with an odd side, got shape {tuple(ker.shape)}")
    squeeze = image.dim() == 3
    x = image[None] if squeeze else image
    H, W = x.shape[-2:]
    r = k // 2
    if r >= min(H, W):
        raise ValueError(f"kernel {k}x{k} is too large for a {H}x{W} image")
    xp = F.pad(x.double(), (r, r, r, r), mode="reflect") if r else x.double()
    Hp, Wp = xp.shape[-2:]
    spec = torch.fft.rfft2(xp) * torch.fft.rfft2(ker, s=(Hp, Wp))
    y = torch.fft.irfft2(spec, s=(Hp, Wp))[..., 2 * r:, 2 * r:]  # full conv shifted by r; valid part
    y = y[..., :H, :W].to(image.dtype)
    return y[0] if squeeze else y


def blur_seed(name: str, seed: int = 0) -> int:
    """Stable seed of the test blur of image ``name`` (file stem): CRC-32 of ``"name|blur|seed"``."""
    return zlib.crc32(f"{name}|blur|{int(seed)}".encode("utf-8"))


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> the nearest 8-bit value, back in [-1, 1] (clipped)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def deterministic_blur(sharp: torch.Tensor, name: str, seed: int = 0,
                       cfg: BlurConfig = BlurConfig()) -> Tuple[torch.Tensor, np.ndarray]:
    """Blurred version of ``sharp`` (C, H, W) in [-1, 1] whose kernel (and noise) depend only on
    (``name``, ``seed``, ``cfg``); rounded to 8-bit values.

    Returns:
        (blurred (C, H, W) float32 in [-1, 1], kernel float32 (k, k)).
    """
    rng = np.random.default_rng(blur_seed(name, seed))
    kernel = random_kernel(rng, cfg)
    y = blur(sharp, kernel)
    if cfg.noise_sigma > 0:
        g = torch.Generator().manual_seed(blur_seed(name, seed) ^ 0x5EED)
        y = y + (2 * cfg.noise_sigma / 255.0) * torch.randn(y.shape, generator=g)
    return quantize(y), kernel


# ---------------------------------------------------------------------------------------------
# image loading
# ---------------------------------------------------------------------------------------------


def load_rgb(path: PathLike, scale: float = 1.0) -> torch.Tensor:
    """Read an RGB image as float32 (3, H, W) in [-1, 1], optionally resized by ``scale``
    (bicubic; gray files are replicated to 3 channels).

    Raises:
        DataError: missing, empty or corrupt file.
    """
    arr = read_image(path, channels=3)
    if scale != 1.0:
        h, w = max(1, round(arr.shape[0] * scale)), max(1, round(arr.shape[1] * scale))
        arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.BICUBIC))
    return torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [-1, 1] -> uint8 (H, W, 3), clipped and rounded."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def _per_file(scale: float | Sequence[float], n: int) -> List[float]:
    if isinstance(scale, (int, float)):
        return [float(scale)] * n
    scales = [float(v) for v in scale]
    if len(scales) != n:
        raise ValueError(f"got {len(scales)} scales for {n} files")
    return scales


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------


class SyntheticBlurDataset(Dataset):
    """Random crops of sharp photos blurred with a fresh random kernel per item (training).

    Only the crop plus a margin of ``canvas // 2`` pixels is blurred (cheap on 2048x1024 photos),
    so borders are real image content, not padding.

    Args:
        files: sharp RGB images.
        crop: side of the square crops (pixels, after ``scale``).
        cfg: blur parameters.
        scale: resize factor applied to every image once (e.g. 0.5 for Cityscapes at 1024x512),
            or one factor per file.
        crops_per_image: epoch length = len(files) x this.
        flip: random horizontal flip.

    Randomness comes from numpy's and Python's global RNGs (which
    :class:`asapnet.training.trainer.Trainer` checkpoints), so a resumed run continues the same stream.

    Raises:
        DataError: no files, unreadable file, or an image smaller than the crop.
    """

    def __init__(self, files: Sequence[PathLike], crop: int = 128, cfg: BlurConfig = BlurConfig(),
                 scale: float | Sequence[float] = 1.0, crops_per_image: int = 16, flip: bool = True):
        if not files:
            raise DataError("SyntheticBlurDataset: no image files")
        self.files = [Path(f) for f in files]
        self.crop, self.cfg, self.crops_per_image, self.flip = int(crop), cfg, int(crops_per_image), flip
        scales = _per_file(scale, len(self.files))
        self.images = [load_rgb(f, sc) for f, sc in zip(self.files, scales)]
        for f, im in zip(self.files, self.images):
            if min(im.shape[-2:]) < self.crop:
                raise DataError(f"{f}: {im.shape[-1]}x{im.shape[-2]} (after scaling) is smaller than "
                                f"the {self.crop}x{self.crop} crop")

    def __len__(self) -> int:
        return len(self.files) * self.crops_per_image

    def __getitem__(self, i: int) -> Dict[str, object]:
        k = i % len(self.files)
        img = self.images[k]
        H, W = img.shape[-2:]
        c = self.crop
        top, left = random.randint(0, H - c), random.randint(0, W - c)
        rng = np.random.default_rng(np.random.randint(0, 2 ** 31 - 1))
        kernel = random_kernel(rng, self.cfg)
        m = kernel.shape[0] // 2
        t0, l0 = max(0, top - m), max(0, left - m)
        region = img[:, t0: min(H, top + c + m), l0: min(W, left + c + m)]
        if min(region.shape[-2:]) <= 2 * m:  # tiny images: blur the whole image instead
            region, t0, l0 = img, 0, 0
        blurred = blur(region, kernel)[:, top - t0: top - t0 + c, left - l0: left - l0 + c]
        sharp = img[:, top: top + c, left: left + c]
        if self.cfg.noise_sigma > 0:
            blurred = blurred + (2 * self.cfg.noise_sigma / 255.0) * torch.randn(blurred.shape)
        blurred = quantize(blurred)
        if self.flip and random.random() < 0.5:
            blurred, sharp = blurred.flip(-1), sharp.flip(-1)
        return {"input": blurred.contiguous(), "target": sharp.contiguous(), "name": self.files[k].stem}


class BlurTestDataset(Dataset):
    """Whole images with deterministic blur (one item per file, in the given order).

    The kernel of an image depends only on (file stem, ``seed``, ``cfg``), see
    :func:`deterministic_blur`; every model is evaluated on exactly the same inputs.

    Args:
        files: sharp RGB images.
        seed: blur seed.
        scale: resize factor (bicubic) applied before blurring, or one per file.
        multiple: crop the bottom/right so H and W are multiples of this (1 = keep).

    Items also hold ``"kernel"`` (float32 (k, k)).

    Raises:
        DataError: no files, or an unreadable file (on access).
    """

    def __init__(self, files: Sequence[PathLike], seed: int = 0, cfg: BlurConfig = BlurConfig(),
                 scale: float | Sequence[float] = 1.0, multiple: int = 1):
        if not files:
            raise DataError("BlurTestDataset: no image files")
        self.files = [Path(f) for f in files]
        self.scales = _per_file(scale, len(self.files))
        self.seed, self.cfg, self.multiple = int(seed), cfg, int(multiple)
        self._cache: Dict[int, Dict[str, object]] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Dict[str, object]:
        if i in self._cache:
            return self._cache[i]
        f = self.files[i]
        sharp = load_rgb(f, self.scales[i])
        H, W = sharp.shape[-2:]
        sharp = sharp[:, : H - H % self.multiple, : W - W % self.multiple]
        blurred, kernel = deterministic_blur(sharp, f.stem, self.seed, self.cfg)
        item = {"input": blurred, "target": sharp, "name": f.stem, "kernel": torch.from_numpy(kernel)}
        self._cache[i] = item
        return item


def gopro_pairs(root: PathLike) -> List[Tuple[Path, Path]]:
    """(blurred, sharp) file pairs of a GoPro-style folder.

    Accepted layouts: ``root/blur/*`` + ``root/sharp/*``, or one such pair of folders per
    sequence, ``root/<sequence>/blur/*`` + ``root/<sequence>/sharp/*`` (the GoPro_Large layout).
    Files are matched by name.

    Raises:
        DataError: no blur/sharp folders, or a blurred file without its sharp partner.
    """
    root = Path(root)
    if (root / "blur").is_dir():
        seqs = [root]
    else:
        seqs = sorted(d for d in root.iterdir() if (d / "blur").is_dir()) if root.is_dir() else []
    if not seqs:
        raise DataError(f"{root}: no blur/ + sharp/ folders (GoPro layout) found")
    pairs = []
    for s in seqs:
        if not (s / "sharp").is_dir():
            raise DataError(f"{s / 'sharp'}: folder not found (every blur/ needs a sharp/ beside it)")
        sharp = {f.name: f for f in list_images(s / "sharp")}
        for b in list_images(s / "blur"):
            if b.name not in sharp:
                raise DataError(f"{b}: no sharp partner {s / 'sharp' / b.name}")
            pairs.append((b, sharp[b.name]))
    return pairs


class PairedBlurDataset(Dataset):
    """Real blurred/sharp pairs (GoPro layout, see :func:`gopro_pairs`), random aligned crops.

    Args:
        root: dataset folder.
        crop: side of square training crops, ``None`` = whole images.
        flip: random horizontal flip.

    Raises:
        DataError: bad layout; on access, unreadable files or pairs of different sizes.
    """

    def __init__(self, root: PathLike, crop: Optional[int] = 256, flip: bool = True):
        self.pairs = gopro_pairs(root)
        self.crop, self.flip = crop, flip

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Dict[str, object]:
        b, s = self.pairs[i]
        blurred, sharp = load_rgb(b), load_rgb(s)
        if blurred.shape != sharp.shape:
            raise DataError(f"{b}: size {tuple(blurred.shape[1:])} differs from its sharp image {s} "
                            f"{tuple(sharp.shape[1:])}")
        if self.crop is not None:
            H, W = sharp.shape[-2:]
            c = self.crop
            if min(H, W) < c:
                raise DataError(f"{b}: {W}x{H} is smaller than the {c}x{c} crop")
            t, l = random.randint(0, H - c), random.randint(0, W - c)
            blurred, sharp = blurred[:, t:t + c, l:l + c], sharp[:, t:t + c, l:l + c]
        if self.flip and random.random() < 0.5:
            blurred, sharp = blurred.flip(-1), sharp.flip(-1)
        return {"input": blurred.contiguous(), "target": sharp.contiguous(), "name": b.stem}
