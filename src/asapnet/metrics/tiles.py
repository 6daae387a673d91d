"""Does a translation follow its label map inside the S x S tiles of ASAP-Net's HR stream?

An HR stream whose per-pixel MLPs have collapsed to constants paints one flat colour per tile:
the labels inside a tile change nothing and the tile borders show as seams. These figures tell
that apart from a picture, and are computed the same way on real photos for reference.

Conventions: images (N, 3, H, W) or (3, H, W) float in [-1, 1]; label maps (N, H, W) or (H, W)
int64; results in gray levels of the 0-255 scale, or ratios.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional

import torch


def _batch(img: torch.Tensor, labels: Optional[torch.Tensor] = None):
    if img.dim() == 3:
        img = img[None]
        labels = labels[None] if labels is not None else None
    if img.dim() != 4:
        raise ValueError(f"expected an image (N, C, H, W), got shape {tuple(img.shape)}")
    if labels is not None and labels.shape != (img.shape[0], *img.shape[-2:]):
        raise ValueError(f"labels {tuple(labels.shape)} do not match image {tuple(img.shape)}")
    return (img.float() + 1) * 127.5, labels


def within_tile_contrast(img: torch.Tensor, labels: torch.Tensor, tile: int, min_share: float = 0.1) -> float:
    """Mean colour difference between the two largest classes inside the tiles that hold two.

    For every ``tile`` x ``tile`` tile (grid from the top-left corner; the ragged border is left
    out) whose two largest classes each cover at least ``min_share`` of it, the absolute difference
    of the two classes' mean colours, averaged over the channels; the result is the mean over
    those tiles, in gray levels (0-255). A collapsed HR stream scores ~0; Cityscapes photos at
    S = 16..64 score 10-30.

    Args:
        img: (N, C, H, W) or (C, H, W) in [-1, 1].
        labels: (N, H, W) or (H, W) int64 class ids.

    Returns:
        gray levels; NaN when no tile holds two classes.
    """
    x, lab = _batch(img, labels)
    N, C, H, W = x.shape
    gh, gw = H // tile, W // tile
    if gh == 0 or gw == 0:
        return float("nan")
    x = x[..., :gh * tile, :gw * tile].reshape(N, C, gh, tile, gw, tile).permute(0, 2, 4, 1, 3, 5).reshape(-1, C, tile * tile)
    lab = lab[:, :gh * tile, :gw * tile].reshape(N, gh, tile, gw, tile).permute(0, 1, 3, 2, 4).reshape(-1, tile * tile)
    K = int(lab.max()) + 1
    onehot = torch.zeros(lab.shape[0], K, tile * tile)
    onehot.scatter_(1, lab[:, None], 1.0)
    counts = onehot.sum(-1)  # (T, K)
    top = counts.topk(min(2, K), dim=1)
    if K < 2:
        return float("nan")
    keep = top.values[:, 1] >= min_share * tile * tile
    if not keep.any():
        return float("nan")
    sums = torch.einsum("tkp,tcp->tkc", onehot, x)  # (T, K, C) colour sums per class
    idx = top.indices[keep]  # (T', 2)
    s = sums[keep].gather(1, idx[..., None].expand(-1, -1, C))
    means = s / top.values[keep][..., None]
    return float((means[:, 0] - means[:, 1]).abs().mean())


def tile_seam_ratio(img: torch.Tensor, tile: int) -> float:
    """Mean jump across tile borders / mean jump between neighbouring pixels elsewhere.

    Jumps are absolute differences of horizontally and vertically adjacent pixels, averaged over
    channels; border pairs are those straddling a multiple of ``tile``. A photo scores ~1; one flat
    colour per tile scores >> 1.

    Args:
        img: (N, C, H, W) or (C, H, W) in [-1, 1].

    Returns:
        the ratio (NaN when the image is smaller than two tiles or flat everywhere else).
    """
    x, _ = _batch(img)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(1)  # (N, H, W-1), pair (j, j+1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(1)  # (N, H-1, W)
    bx = torch.zeros(dx.shape[-1], dtype=torch.bool)
    bx[tile - 1::tile] = True
    by = torch.zeros(dy.shape[-2], dtype=torch.bool)
    by[tile - 1::tile] = True
    border = torch.cat([dx[..., bx].flatten(), dy[..., by, :].flatten()])
    inner = torch.cat([dx[..., ~bx].flatten(), dy[..., ~by, :].flatten()])
    if border.numel() == 0 or inner.numel() == 0 or float(inner.mean()) == 0:
        return float("nan")
    return float(border.mean() / inner.mean())


def class_block_std(img: torch.Tensor, labels: torch.Tensor, classes: Iterable[int], block: int = 16,
                    min_share: float = 0.9) -> Dict[int, float]:
    """Texture per class: the standard deviation of the pixel values inside ``block`` x ``block``
    blocks covered to at least ``min_share`` by one class, averaged over channels and blocks.

    Returns:
        {class id: gray levels (0-255)} for the ``classes`` that have such blocks.
    """
    x, lab = _batch(img, labels)
    N, C, H, W = x.shape
    gh, gw = H // block, W // block
    xb = x[..., :gh * block, :gw * block].reshape(N, C, gh, block, gw, block).permute(0, 2, 4, 1, 3, 5)
    xb = xb.reshape(-1, C, block * block)
    lb = lab[:, :gh * block, :gw * block].reshape(N, gh, block, gw, block).permute(0, 1, 3, 2, 4).reshape(-1, block * block)
    std = xb.std(-1).mean(-1)  # (T,)
    out = {}
    for c in classes:
        m = (lb == c).float().mean(-1) >= min_share
        if m.any():
            out[int(c)] = float(std[m].mean())
    return out


def tile_health(fake: torch.Tensor, labels: torch.Tensor, tile: int, real: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Within-tile class contrast and tile seam ratio of ``fake`` (and of ``real`` if given).

    Returns:
        {"tile_contrast", "seam_ratio"} (+ "tile_contrast_real", "seam_ratio_real").
    """
    out = {"tile_contrast": within_tile_contrast(fake, labels, tile), "seam_ratio": tile_seam_ratio(fake, tile)}
    if real is not None:
        out["tile_contrast_real"] = within_tile_contrast(real, labels, tile)
        out["seam_ratio_real"] = tile_seam_ratio(real, tile)
    return out
