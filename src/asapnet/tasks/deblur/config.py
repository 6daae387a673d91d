"""Deblurring data and defaults: the train / validation / test images (:func:`default_split`), the training
data (:class:`DeblurDataConfig`) and the defaults of ``asapnet train --task deblur``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ...data.blur_kernels import BlurConfig
from ...data.datasets import data_root
from ...data.io import DataError, PathLike, list_images


@dataclass
class DeblurSplit:
    """Sharp images of the synthetic deblurring benchmark, with a resize factor per file."""

    train: List[Path]
    train_scales: List[float]
    test: List[Path]
    test_scales: List[float]


def default_split(root: Optional[PathLike] = None, cityscapes_scale: float = 0.5, kodak_test: int = 4) -> DeblurSplit:
    """The synthetic benchmark on the shared data (``<root>`` = :func:`data_root`):

    * train: Cityscapes sample photos 1-6 (at ``cityscapes_scale``, 1024x512) + the 68 CBSD68
      colour BSD photos (481x321);
    * test (held out): Cityscapes photos 7-8 (at ``cityscapes_scale``) + the first ``kodak_test``
      Kodak24 photos (768x512).

    Raises:
        DataError: a folder is missing.
    """
    base = data_root(root)
    cs = list_images(base / "cityscapes_samples" / "train_img")
    if len(cs) < 3:
        raise DataError(f"{base / 'cityscapes_samples' / 'train_img'}: need at least 3 photos, found {len(cs)}")
    bsd = list_images(base / "denoise_color" / "CBSD68")
    kodak = list_images(base / "denoise_color" / "Kodak24")[:kodak_test]
    train = cs[:-2] + bsd
    test = cs[-2:] + kodak
    return DeblurSplit(train, [cityscapes_scale] * (len(cs) - 2) + [1.0] * len(bsd),
                       test, [cityscapes_scale] * 2 + [1.0] * len(kodak))


@dataclass
class DeblurDataConfig:
    """Training data of :func:`train_deblur`.

    Attributes:
        crop: side of the square training crops (pixels).
        crops_per_image: epoch length per image.
        blur: blur parameters of the synthetic data.
        gopro: folder of real GoPro-style pairs (``blur/`` + ``sharp/``) instead of synthetic blur.
        sharp_dir: folder of sharp photos to blur synthetically instead of :func:`default_split`'s
            training photos.
        val_images: number of held-out test images scored at every checkpoint (0 = none).
        seed: blur seed of the held-out set.
    """

    crop: int = 128
    crops_per_image: int = 16
    blur: BlurConfig = field(default_factory=BlurConfig)
    gopro: Optional[str] = None
    sharp_dir: Optional[str] = None
    val_images: int = 0
    seed: int = 0


@dataclass
class DeblurTrainOptions:
    """Options of ``asapnet train --task deblur``; the defaults are the command's. The fields are the
    command-line options without their dashes; ``out`` None: ``runs/deblur-<model>``."""

    batch_size: int = 1
    checkpoint_every: int = 100
    critic_iters: int = 5
    critic_ndf: int = 64
    crop_size: int = 128
    crops_per_image: int = 16
    data_root: Optional[str] = None
    device: str = 'cpu'
    gopro: Optional[str] = None
    gp_lambda: float = 10.0
    hr_window: Optional[int] = None
    lambda_content: float = 100.0
    lambda_l1: float = 0.0
    lr_d: float = 0.0001
    lr_g: float = 0.0001
    lr_norm: Optional[str] = None
    model: str = 'deblurgan'
    n_blocks: Optional[int] = None
    ngf: Optional[int] = None
    no_gan: bool = False
    no_vgg: bool = False
    out: Optional[str] = None
    overwrite: bool = False
    precision: str = 'fp32'
    quiet: bool = False
    resume: bool = False
    sample_every: int = 100
    seed: int = 0
    sharp_dir: Optional[str] = None
    steps: int = 100000
    threads: Optional[int] = None
    time_budget: Optional[float] = None
    val_images: Optional[int] = None


@dataclass
class DeblurRunOptions:
    """Options of ``asapnet deblur``; the defaults are the command's. The fields are the command-line options
    without their dashes (``inputs``: the files, ``out``: the output folder)."""

    inputs: List[str]
    out: str
    checkpoint: Optional[str] = None
    blur_seed: Optional[int] = None
    on_error: str = "stop"
    device: str = "cpu"
    threads: Optional[int] = None


@dataclass
class DeblurEvaluateOptions:
    """Options of ``asapnet evaluate --task deblur``; the defaults are the command's. The fields are the command-line
    options without their dashes; ``checkpoint``: ``[NAME=]PATH`` specs; ``data``: folders of sharp test images
    (default: the held-out split)."""

    checkpoint: List[str]
    data: Optional[List[str]] = None
    data_root: Optional[str] = None
    seed: int = 0
    scale: float = 1.0
    fid: bool = False
    fid_weights: Optional[str] = None
    json: bool = False
    device: str = "cpu"
    threads: Optional[int] = None
