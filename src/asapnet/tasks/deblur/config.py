"""Deblurring data and defaults: the train / validation / test images (:func:`default_split`), the training
data (:class:`DeblurDataConfig`) and the defaults of ``asapnet train --task deblur``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

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


#: Defaults of the shared ``asapnet train`` options with ``--task deblur`` (used when the parsed
#: value is ``None``).
DEBLUR_TRAIN_DEFAULTS: Dict[str, Any] = {"model": "deblurgan", "steps": 100000, "batch_size": 1, "lr_g": 1e-4,
                                         "lr_d": 1e-4, "out": None, "sample_every": 100, "checkpoint_every": 100,
                                         "lambda_l1": 0.0}
