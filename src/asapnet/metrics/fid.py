"""Fréchet Inception Distance (Heusel et al. 2017) through torchmetrics.

The standard score uses the 2048-d pool features of the TF-ported InceptionV3 of torch-fidelity
(``pt_inception-2015-12-05``), as in the paper's Fig. 6 and in SPADE / pix2pixHD. torchmetrics
downloads those weights on first use into ``~/.cache/torch/hub/checkpoints/`` (file
``weights-inception-2015-12-05-6726825d.pth``); without internet give the file explicitly
(``weights_path``). When they cannot be loaded, :class:`FIDUnavailable` says so; nothing falls
back silently to another network.

Any ``nn.Module`` mapping uint8 images (N, 3, H, W) in 0-255 to features (N, D) can be injected
instead (``feature=``), through the same code path; the tests do that with a small random conv net.
The numbers are then not comparable with published FIDs.

FID is a set statistic: it needs at least 2 images per set and is strongly biased for sets much
smaller than the feature dimension (2048), so FIDs of a handful of images are only comparable
with each other at equal set sizes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import torch
import torch.nn as nn

#: File name under which torchmetrics / torch-fidelity cache the standard InceptionV3 weights.
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


class FIDUnavailable(RuntimeError):
    """The standard InceptionV3 FID network cannot be built here (package or weights missing)."""


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float images (N, 3, H, W) in [-1, 1] -> uint8 in 0-255 (rounded, clamped)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def fid_metric(feature: Optional[nn.Module] = None, weights_path: Optional[str | Path] = None):
    """Build a torchmetrics ``FrechetInceptionDistance`` that takes uint8 (N, 3, H, W) images.

    Args:
        feature: custom feature extractor (uint8 0-255 images -> (N, D) features). If it has an
            int attribute ``num_features`` no dummy 299x299 pass is needed. ``None`` = the standard
            InceptionV3 with ``feature=2048``.
        weights_path: local copy of the standard InceptionV3 weights (``None``: torchmetrics'
            cache / download).

    Raises:
        FIDUnavailable: torch-fidelity is not installed, or the InceptionV3 weights can neither be
            read from ``weights_path`` / the cache nor downloaded. The message says which.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if feature is not None:
        return FrechetInceptionDistance(feature=feature, normalize=False)
    if weights_path is not None and not Path(weights_path).is_file():
        raise FIDUnavailable(f"FID: InceptionV3 weights file {weights_path} not found")
    try:
        return FrechetInceptionDistance(feature=2048, normalize=False,
                                        feature_extractor_weights_path=str(weights_path) if weights_path else None)
    except ModuleNotFoundError as e:
        raise FIDUnavailable(f"FID needs torch-fidelity (pip install 'asapnet[eval]'): {e}") from None
    except Exception as e:  # URLError, HTTPError, OSError, corrupt file ...
        raise FIDUnavailable(
            "FID: the standard InceptionV3 weights (torch-fidelity pt_inception-2015-12-05) could not be "
            f"loaded ({type(e).__name__}: {e}). They download automatically on a machine with internet; "
            f"otherwise copy {INCEPTION_WEIGHTS_FILE} to ~/.cache/torch/hub/checkpoints/ or pass its path "
            "(--fid-weights FILE).") from None


@torch.no_grad()
def compute_fid(real: Iterable[torch.Tensor], fake: Iterable[torch.Tensor], feature: Optional[nn.Module] = None,
                weights_path: Optional[str | Path] = None) -> float:
    """FID between two sets of images.

    Args:
        real, fake: iterables of float batches (N, 3, H, W) in [-1, 1] (sizes may differ between
            batches when the extractor resizes, as InceptionV3 does to 299x299).
        feature, weights_path: see :func:`fid_metric`.

    Returns:
        FID (>= 0 up to round-off; 0 for identical sets), in squared feature units.

    Raises:
        FIDUnavailable: see :func:`fid_metric`.
        ValueError: a set has fewer than 2 images.
    """
    metric = fid_metric(feature, weights_path)
    counts = {True: 0, False: 0}
    for is_real, batches in ((True, real), (False, fake)):
        for x in batches:
            if x.dim() != 4 or x.shape[1] != 3:
                raise ValueError(f"FID images must be (N, 3, H, W), got {tuple(x.shape)}")
            metric.update(to_uint8(x), real=is_real)
            counts[is_real] += x.shape[0]
    if min(counts.values()) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {counts[True]} real and {counts[False]} generated")
    return float(metric.compute())
