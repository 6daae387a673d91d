"""Denoising models: the shipped checkpoints, :func:`build_denoiser` (ASAP-Net, DnCNN, SADNet) and running one."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import torch
import torch.nn as nn

from ...config import asap_preset
from ...models import create_model
from ...models.asap import init_asap_hypernetwork
from ...options import (ASAP_DENOISE_CHECKPOINT as ASAP_CHECKPOINT, DNCNN_CHECKPOINT, SADNET_CHECKPOINT,  # noqa: F401
                        shipped_weights)


def shipped_checkpoint(name: str = ASAP_CHECKPOINT) -> Path:
    """Path of a denoiser shipped inside the package (``asapnet/weights/<name>``)."""
    return shipped_weights(name)


def build_denoiser(model: str = "asap", preset: str = "denoise-gray", depth: int = 17,
                   channels: int = 64) -> Tuple[nn.Module, Dict[str, Any]]:
    """Create a gray denoiser and the JSON-able config stored in its checkpoints.

    Args:
        model: ``"asap"`` (ASAP-Net generator with an ASAP preset, 1 -> 1 channels, residual,
            no output activation), ``"dncnn"`` (``depth`` 17 = DnCNN-S, 20 = DnCNN-B) or
            ``"sadnet"`` (Chang et al. 2020, gray, 32 base channels).

    Raises:
        ValueError: unknown model, or an ASAP preset that is not a 1-channel residual denoiser.
    """
    if model == "asap":
        cfg = asap_preset(preset, in_channels=1, out_channels=1, residual=True, output_activation="none")
        net = create_model("asap", cfg=cfg)
        init_asap_hypernetwork(net)
        return net, cfg.to_dict()
    if model == "dncnn":
        kw = {"depth": depth, "channels": channels, "in_channels": 1}
        return create_model("dncnn", **kw), kw
    if model == "sadnet":
        kw = {"in_channels": 1}
        return create_model("sadnet", **kw), kw
    raise ValueError(f"denoising model must be 'asap', 'dncnn' or 'sadnet', got {model!r}")


@torch.no_grad()
def run_denoiser(model: nn.Module, noisy: torch.Tensor) -> torch.Tensor:
    """Denoise (N, 1, H, W) float32 in the [0, 1] scale -> (N, 1, H, W), unclipped."""
    model.eval()
    return model(noisy)


def to_uint8_scale(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> 0-255 float, clipped and rounded to integers (8-bit image values)."""
    return (x * 255.0).clamp(0, 255).round()
