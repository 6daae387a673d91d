"""Batches for training: resumable endless sampling, S-aligned random crop regions, label maps as colours for
sample images."""
from __future__ import annotations

import random
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def label_colors(n: int) -> torch.Tensor:
    """A fixed colour per class id (n, 3) in [-1, 1] for visualising label maps: the Cityscapes
    palette for its 35 label ids, the CMP palette for the 12 Facades classes, else random."""
    from ..data import cityscapes, facades
    for pal in (cityscapes.PALETTE, facades.PALETTE):
        if len(pal) == n:
            return torch.from_numpy(pal).float() / 127.5 - 1
    g = torch.Generator().manual_seed(12345)
    return torch.rand(n, 3, generator=g) * 2 - 1


def visualize_input(x: torch.Tensor, num_classes: Optional[int]) -> torch.Tensor:
    """Generator input (N, C, H, W) -> an RGB picture (N, 3, H, W) in [-1, 1]."""
    if num_classes is None:
        return x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
    idx = x[:, :num_classes].argmax(1)  # (N, H, W)
    rgb = label_colors(num_classes).to(x.device)[idx].permute(0, 3, 1, 2)
    if x.shape[1] > num_classes:  # instance edges in white
        rgb = torch.where(x[:, num_classes:num_classes + 1] > 0, torch.ones_like(rgb), rgb)
    return rgb


class _ResumableSampler(torch.utils.data.Sampler):
    """The indices of ``base`` (a sampler whose order depends only on (seed, epoch), like
    ``DistributedSampler``) from position ``start`` on, so that a resumed run continues the
    interrupted epoch where it stopped instead of replaying it."""

    def __init__(self, base: DistributedSampler):
        self.base, self.start = base, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return iter(list(self.base)[self.start:])

    def __len__(self) -> int:
        return len(self.base) - self.start


def _infinite(loader: DataLoader, epoch: int, start: int = 0) -> Iterator[tuple]:
    """(epoch, batch) forever, beginning at sample ``start`` of ``epoch``."""
    while True:
        loader.sampler.set_epoch(epoch, start)
        for batch in loader:
            yield epoch, batch
        epoch, start = epoch + 1, 0


def _random_region(h: int, w: int, crop: Optional[tuple], align: int) -> tuple:
    """Random (top, left, height, width) crop of an h x w image, aligned to ``align`` pixels.

    The start is drawn uniformly from positions that may hang over the border by up to the crop
    minus one cell, then clamped into the image, so the border cells are inside the crop as often
    as the centre ones (a start drawn inside the image alone puts the first column of a 256-wide
    crop of a 512-wide image in 1 of 17 crops: ASAP's left-most tiles then stayed untrained).
    """
    if crop is None:
        ch, cw = h, w
    else:
        ch, cw = min(crop[0], h), min(crop[1], w)
    ch, cw = max(align, ch // align * align), max(align, cw // align * align)

    def start(size: int, c: int) -> int:
        n, k = max(0, (size - c) // align), c // align  # last start, crop length, in cells
        if n == 0:
            return 0
        return min(max(random.randint(-(k - 1), n + k - 1), 0), n) * align

    return start(h, ch), start(w, cw), ch, cw
