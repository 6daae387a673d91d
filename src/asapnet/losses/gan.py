"""GAN losses: hinge (generator and discriminator), discriminator feature matching, WGAN gradient penalty."""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): E[(||∇_x̂ D(x̂)||_2 - 1)^2] at x̂ = a real + (1 - a) fake,
    a ~ U[0, 1] per sample, the norm over all of a sample's pixels and channels."""
    a = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    xh = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    out = critic(xh)
    (g,) = torch.autograd.grad(out.sum(), xh, create_graph=True)
    return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
