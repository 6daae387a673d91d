"""DnCNN: residual-learning denoising CNN (Zhang, Zuo, Chen, Meng, Zhang, "Beyond a Gaussian
Denoiser: Residual Learning of Deep CNN for Image Denoising", IEEE TIP 26(7), 2017, §III).

The baseline the ASAP denoiser is compared with (docs/denoising.md):

* DnCNN-S, known noise level: ``create_model("dncnn")`` (depth 17, 64 channels).
* DnCNN-B, blind: ``create_model("dncnn", depth=20)``.

Architecture (TIP paper Fig. 1): conv 3x3 + ReLU, then ``depth - 2`` x [conv 3x3 + BatchNorm +
ReLU], then conv 3x3 back to the image channels. The network predicts the noise ``R(y)`` and the
output is ``y - R(y)`` (residual learning, Eq. (1)). Zero padding keeps the size (§III-B).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn

from .registry import register_model


class DnCNN(nn.Module):
    """DnCNN denoiser.

    Args:
        depth: number of convolution layers (17 for DnCNN-S, 20 for DnCNN-B); >= 3.
        channels: width of the hidden layers (64 in the paper).
        in_channels: image channels (1 gray, 3 colour); the output has the same number.

    Input: noisy images (N, in_channels, H, W) float32, any H, W, in the value scale the model was
    trained on (asapnet's denoisers use [0, 1]). Output: the denoised images, same shape and
    scale, *not* clipped (clip before saving or measuring).

    Raises:
        ValueError: ``depth < 3``, or an input that is not (N, in_channels, H, W).
    """

    def __init__(self, depth: int = 17, channels: int = 64, in_channels: int = 1):
        super().__init__()
        if depth < 3:
            raise ValueError(f"DnCNN depth must be >= 3, got {depth}")
        self.depth, self.channels, self.in_channels = depth, channels, in_channels
        layers: List[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, in_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.modules():  # He init as in the paper (§IV-A, "the method in [He et al.]")
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # the last layer predicts a small residual: start it near zero (output ~= input)
        nn.init.normal_(self.body[-1].weight, std=1e-3)

    def noise(self, y: torch.Tensor) -> torch.Tensor:
        """The predicted noise R(y), (N, C, H, W)."""
        if y.dim() != 4 or y.shape[1] != self.in_channels:
            raise ValueError(f"DnCNN expects (N, {self.in_channels}, H, W), got shape {tuple(y.shape)}")
        return self.body(y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Denoise ``y`` (N, C, H, W): returns ``y - R(y)`` (Eq. (1))."""
        return y - self.noise(y)


@register_model("dncnn")
def dncnn(depth: int = 17, channels: int = 64, in_channels: int = 1) -> DnCNN:
    """DnCNN-S by default; ``depth=20`` gives DnCNN-B (blind Gaussian denoising)."""
    return DnCNN(depth=depth, channels=channels, in_channels=in_channels)
