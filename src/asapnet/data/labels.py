"""Label maps -> network input: one-hot encoding and instance edge maps (pix2pixHD §3.4)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def instance_edges(inst: np.ndarray) -> np.ndarray:
    """Boundary map of an instance-id map (H, W) -> float32 (H, W) in {0, 1}.

    A pixel is an edge if any 4-neighbour has a different instance id (pix2pixHD ``get_edges``).
    """
    e = np.zeros(inst.shape, dtype=bool)
    dx = inst[:, 1:] != inst[:, :-1]
    dy = inst[1:, :] != inst[:-1, :]
    e[:, 1:] |= dx
    e[:, :-1] |= dx
    e[1:, :] |= dy
    e[:-1, :] |= dy
    return e.astype(np.float32)


def one_hot(labels: torch.Tensor, num_classes: int, edges: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Encode class ids (N, H, W) int64 as a float32 one-hot (N, num_classes [+1], H, W).

    ``edges`` (N, 1, H, W) in {0, 1}, if given, is appended as the last channel.

    Raises:
        ValueError: an id outside [0, num_classes).
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be (N, H, W), got {tuple(labels.shape)}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"label id {hi if hi >= num_classes else lo} out of range [0, {num_classes})")
    N, H, W = labels.shape
    x = torch.zeros(N, num_classes, H, W, dtype=torch.float32, device=labels.device)
    x.scatter_(1, labels[:, None], 1.0)
    if edges is not None:
        x = torch.cat([x, edges.to(x.dtype)], dim=1)
    return x
