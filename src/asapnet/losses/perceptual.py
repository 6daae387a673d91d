"""Losses of the SPADE optimisation procedure used by ASAP-Net (paper §3.4):
adversarial hinge loss, discriminator feature matching and the VGG19 perceptual loss."""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F


class PretrainedWeightsUnavailable(RuntimeError):
    """Standard pretrained weights (VGG19, InceptionV3) could not be loaded (e.g. offline)."""


def hinge_d_loss(real: List[List[torch.Tensor]], fake: List[List[torch.Tensor]]) -> torch.Tensor:
    """Discriminator hinge loss, mean over scales: E[relu(1 - D(real))] + E[relu(1 + D(fake))].

    ``real``/``fake`` are the per-scale feature lists of
    :class:`~asapnet.models.discriminator.MultiscaleDiscriminator`; the last entry is the score map.
    """
    loss = sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake))
    return loss / len(real)


def hinge_g_loss(fake: List[List[torch.Tensor]]) -> torch.Tensor:
    """Generator hinge loss, mean over scales: -E[D(fake)]."""
    return sum(-f[-1].mean() for f in fake) / len(fake)


def feature_matching_loss(real: List[List[torch.Tensor]], fake: List[List[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD feature-matching loss: L1 between discriminator features of real and fake,
    averaged over scales, summed over layers (score maps excluded); real features are detached."""
    loss = 0.0
    for r, f in zip(real, fake):
        for rf, ff in zip(r[:-1], f[:-1]):
            loss = loss + F.l1_loss(ff, rf.detach())
    return loss / len(real)


class VGGPerceptualLoss(nn.Module):
    """VGG19 perceptual loss of SPADE / pix2pixHD: sum_i w_i * L1(phi_i(fake), phi_i(real)) on
    relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 with w = 1/32, 1/16, 1/8, 1/4, 1.

    Inputs (N, 3, H, W) in [-1, 1]; they are mapped to ImageNet-normalised [0, 1].
    Uses torchvision's standard ``VGG19_Weights.IMAGENET1K_V1`` (downloaded on first use).

    Raises:
        PretrainedWeightsUnavailable: the weights cannot be loaded (offline machine); train with
            ``--no-vgg`` (``lambda_vgg=0``) instead.
    """

    LAYERS = (1, 6, 11, 20, 29)  # indices of relu1_1 .. relu5_1 in torchvision's vgg19().features
    WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self, features: nn.Module = None):
        super().__init__()
        if features is None:
            from torchvision.models import VGG19_Weights, vgg19
            try:
                features = vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features
            except Exception as e:  # network errors come in many types
                raise PretrainedWeightsUnavailable(
                    f"cannot load the VGG19 ImageNet weights ({type(e).__name__}: {e}); "
                    "connect to the internet once to cache them, or train with --no-vgg") from None
        self.features = features[: self.LAYERS[-1] + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _feats(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.LAYERS:
                out.append(x)
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return sum(w * F.l1_loss(f, r.detach()) for w, f, r in zip(self.WEIGHTS, self._feats(fake), self._feats(real)))
