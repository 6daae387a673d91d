"""Losses of the SPADE optimisation procedure used by ASAP-Net (paper §3.4):
adversarial hinge loss, discriminator feature matching and the VGG19 perceptual loss."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class PretrainedWeightsUnavailable(RuntimeError):
    """Standard pretrained weights (VGG19, InceptionV3) could not be loaded (e.g. offline)."""


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


class VGGContentLoss(nn.Module):
    """DeblurGAN's perceptual ("content") loss: MSE between VGG19 conv3_3 feature maps (before
    the ReLU, layer index 14 of torchvision's ``vgg19().features``) of the restored and sharp images.

    Inputs (N, 3, H, W) in [-1, 1], mapped to ImageNet-normalised [0, 1] (the reference code feeds
    [-1, 1] directly). Uses torchvision's ``VGG19_Weights.IMAGENET1K_V1`` unless ``features`` (any
    module taking (N, 3, H, W)) is injected, e.g. a small random net in tests.

    Raises:
        PretrainedWeightsUnavailable: standard weights cannot be loaded (offline); train with
            ``lambda_content=0`` (``--no-vgg``) instead.
    """

    LAYER = 14  # conv3_3

    def __init__(self, features: Optional[nn.Module] = None):
        super().__init__()
        if features is None:
            from torchvision.models import VGG19_Weights, vgg19
            try:
                features = vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features[: self.LAYER + 1]
            except Exception as e:  # network errors come in many types
                raise PretrainedWeightsUnavailable(
                    f"cannot load the VGG19 ImageNet weights ({type(e).__name__}: {e}); "
                    "connect to the internet once to cache them, or train with --no-vgg") from None
        self.features = features.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        f = self.features(((fake + 1) / 2 - self.mean) / self.std)
        with torch.no_grad():
            r = self.features(((real + 1) / 2 - self.mean) / self.std)
        return F.mse_loss(f, r)
