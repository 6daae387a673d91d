"""Quality figures of a label->photo translator over a set of images, and the trivial translators
that give them reference values.

Every figure is computed per image and averaged over the images (chunks of any size can be fed in
turn, so a 400-image split never has to sit in memory); segmentation scores pool one confusion
matrix over all images instead (see :mod:`asapnet.metrics.segmentation`).

Conventions: images (N, 3, H, W) float in [-1, 1]; label maps (N, H, W) int64 class ids; gray
levels on the 0-255 scale. Undefined values (a figure no image defines, e.g. the seam ratio of a
flat image) are ``None``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

#: Figures :class:`SetScores` can compute (``segscore`` needs a segmenter, ``fid`` a FID metric).
SET_METRICS = ("psnr", "ssim", "tile_contrast", "seam_ratio", "block_std", "segscore", "fid", "lpips")


def nanmean(values: Sequence[float]) -> Optional[float]:
    """Mean of the finite values, ``None`` when there is none."""
    v = [x for x in values if x == x and abs(x) != float("inf")]
    return float(sum(v) / len(v)) if v else None


class TileStats:
    """Per-image tile health (:mod:`asapnet.metrics.tiles`), averaged over images.

    Args:
        tile: S of :func:`~asapnet.metrics.tiles.within_tile_contrast` and
            :func:`~asapnet.metrics.tiles.tile_seam_ratio`.
        classes: {name: class id} of the :func:`~asapnet.metrics.tiles.class_block_std` figures.
        block: block size (pixels) of the block std.
    """

    def __init__(self, tile: int, classes: Dict[str, int], block: int = 16):
        self.tile, self.classes, self.block = tile, dict(classes), block
        self.contrast: List[float] = []
        self.seam: List[float] = []
        self.blocks: Dict[str, List[float]] = {c: [] for c in classes}

    def update(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Add (N, 3, H, W) images in [-1, 1] with their (N, H, W) label maps."""
        from .tiles import class_block_std, tile_seam_ratio, within_tile_contrast

        for img, lab in zip(images, labels):
            self.contrast.append(within_tile_contrast(img, lab, self.tile))
            self.seam.append(tile_seam_ratio(img, self.tile))
            stds = class_block_std(img, lab, self.classes.values(), self.block)
            for c, i in self.classes.items():
                if i in stds:
                    self.blocks[c].append(stds[i])

    def result(self) -> Dict[str, Any]:
        """``tile_contrast`` (gray levels), ``seam_ratio``, ``block_std`` {name: gray levels}; each the
        mean over the images that define it."""
        return {"tile_contrast": nanmean(self.contrast), "seam_ratio": nanmean(self.seam),
                "block_std": {c: nanmean(v) for c, v in self.blocks.items()}}


class SetScores:
    """One translator's figures on a set of images, fed chunk by chunk.

    Args:
        metrics: any of :data:`SET_METRICS`.
        tile, classes, block: see :class:`TileStats`.
        reference: the images *are* the real photos (PSNR, SSIM and LPIPS are then left undefined).
        fid: a torchmetrics ``FrechetInceptionDistance`` taking uint8 images (see
            :func:`asapnet.metrics.fid.fid_metric`), or ``None``.
    """

    def __init__(self, metrics: Sequence[str], tile: int, classes: Dict[str, int], block: int = 16,
                 reference: bool = False, fid=None):
        bad = [m for m in metrics if m not in SET_METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; choose from {list(SET_METRICS)}")
        self.metrics, self.reference, self.fid = set(metrics), reference, fid
        self.n, self.psnr, self.ssim, self.lpips = 0, 0.0, 0.0, 0.0
        self.tiles = TileStats(tile, classes, block)
        self.cm: Optional[torch.Tensor] = None

    @torch.no_grad()
    def update(self, fake: torch.Tensor, real: torch.Tensor, labels: torch.Tensor, segmenter=None,
               seg_target: Optional[torch.Tensor] = None, lpips=None) -> None:
        """Add a chunk: translations ``fake`` and photos ``real`` (N, 3, H, W) in [-1, 1], label maps
        (N, H, W); ``segmenter`` (:class:`asapnet.tasks.segment.build.Segmenter`) with ``seg_target`` =
        ``segmenter.targets(labels)``; ``lpips`` a torchmetrics LPIPS module."""
        n = fake.shape[0]
        if not self.reference and {"psnr", "ssim"} & self.metrics:
            from .image import psnr_ssim
            p, s = psnr_ssim(fake, real)
            self.psnr, self.ssim = self.psnr + p * n, self.ssim + s * n
        if {"tile_contrast", "seam_ratio", "block_std"} & self.metrics:
            self.tiles.update(fake, labels)
        if segmenter is not None and "segscore" in self.metrics:
            from .segmentation import confusion_matrix
            cm = confusion_matrix(segmenter.predict(fake), seg_target, segmenter.cfg.num_classes)
            self.cm = cm if self.cm is None else self.cm + cm
        if self.fid is not None:
            from .fid import to_uint8
            self.fid.update(to_uint8(real), real=True)
            self.fid.update(to_uint8(fake), real=False)
        if lpips is not None and not self.reference:
            self.lpips += float(lpips(fake.clamp(-1, 1), real.clamp(-1, 1))) * n
        self.n += n

    def result(self, class_names: Optional[List[str]] = None) -> Dict[str, Any]:
        """The asked figures: ``psnr`` (dB), ``ssim``, ``tile_contrast``, ``seam_ratio``, ``block_std``,
        ``miou`` / ``pixel_accuracy`` / ``per_class_iou`` (named by ``class_names``), ``fid``, ``lpips``.

        Raises:
            ValueError: nothing was added.
        """
        if self.n == 0:
            raise ValueError("no images were scored")
        r: Dict[str, Any] = {}
        for m, total in (("psnr", self.psnr), ("ssim", self.ssim)):
            if m in self.metrics:
                r[m] = None if self.reference else total / self.n
        t = self.tiles.result()
        r.update({m: t[m] for m in ("tile_contrast", "seam_ratio", "block_std") if m in self.metrics})
        if self.cm is not None:
            from .segmentation import scores_from_confusion
            sc = scores_from_confusion(self.cm, class_names).to_dict()
            r.update(miou=sc["miou"], pixel_accuracy=sc["pixel_accuracy"], per_class_iou=sc["per_class_iou"])
        if self.fid is not None:
            r["fid"] = float(self.fid.compute())
        if "lpips" in self.metrics and not self.reference:
            r["lpips"] = self.lpips / self.n
        return r


@dataclass
class TrivialColours:
    """The two trivial translators, from the colours of training photos (float in [-1, 1]).

    Attributes:
        mean: (3,) mean colour of the photos.
        class_means: (K, 3) mean photo colour of every class id (``mean`` for classes never seen).
        images: how many photos the colours come from.
    """

    mean: torch.Tensor
    class_means: torch.Tensor
    images: int

    @classmethod
    def fit(cls, pairs: Iterable[Tuple[torch.Tensor, torch.Tensor]], num_classes: int) -> "TrivialColours":
        """Colours of (photo (3, H, W) in [-1, 1], label map (H, W) ids in [0, num_classes)) pairs;
        every pixel weighs the same.

        Raises:
            ValueError: no pair.
        """
        sums = torch.zeros(num_classes, 3, dtype=torch.float64)
        counts = torch.zeros(num_classes, dtype=torch.float64)
        n = 0
        for photo, lab in pairs:
            lab = lab.reshape(-1).long()
            sums.index_add_(0, lab, photo.reshape(3, -1).T.double())
            counts += torch.bincount(lab, minlength=num_classes).double()
            n += 1
        if n == 0:
            raise ValueError("TrivialColours.fit needs at least one photo")
        mean = sums.sum(0) / counts.sum()
        class_means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], mean)
        return cls(mean.float(), class_means.float(), n)

    def constant(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, H, W) label ids -> (N, 3, H, W): the mean colour everywhere."""
        return self.mean.view(1, 3, 1, 1).expand(labels.shape[0], 3, *labels.shape[-2:]).clone()

    def per_class(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, H, W) label ids -> (N, 3, H, W): every pixel the mean colour of its class."""
        return self.class_means[labels.long()].permute(0, 3, 1, 2).contiguous()


def majority_labels(x: torch.Tensor, tile: int) -> torch.Tensor:
    """One-hot label maps (N, C, H, W), H and W multiples of ``tile`` -> the same maps with every
    pixel given the most frequent label of its ``tile`` x ``tile`` cell."""
    import torch.nn.functional as F

    maj = F.avg_pool2d(x.float(), tile).argmax(1)
    return F.interpolate(F.one_hot(maj, x.shape[1]).permute(0, 3, 1, 2).to(x.dtype), scale_factor=tile, mode="nearest")


@torch.no_grad()
def label_sensitivity(model: torch.nn.Module, x: torch.Tensor, tile: int = 16) -> Dict[str, Optional[float]]:
    """How much a translator's output at a pixel follows that pixel's own label.

    Every pixel whose label differs from the majority label of its ``tile`` x ``tile`` cell (a
    person in a road cell, a pole in a building cell) is given the majority label; the figure is
    the mean absolute output change at those pixels (mean over RGB), in gray levels (0-255).

    Args:
        model: generator taking one-hot (N, C, H, W) float and returning (N, 3, H, W) in [-1, 1]
            (in eval mode; gradients are not needed).
        x: (N, C, H, W) one-hot label maps (an instance-edge channel, if any, is kept as is); the
            bottom and right margins beyond a multiple of ``tile`` are cropped off.
        tile: the cell size (the ASAP model's S to probe its HR stream tile by tile).

    Returns:
        ``{"whole": change when the whole model sees the changed map, "hr": for an
        :class:`~asapnet.models.asap.ASAPGenerator`, change when only the HR stream's per-pixel
        input changes and the LR stream keeps the parameters it predicts from the true map
        (``None`` for other models)}``; both ``None`` when no pixel differs from its cell's
        majority. An HR stream whose MLPs ignore their label input (the LR stream painting every
        tile through the biases and the positional encoding, paper §3.1) scores near 0 in ``hr``.
    """
    from ..models.asap import ASAPGenerator

    H, W = (x.shape[-2] // tile) * tile, (x.shape[-1] // tile) * tile
    x = x[..., :H, :W]
    C = x.shape[1] - (1 if isinstance(model, ASAPGenerator) and model.cfg.lr_only_channels else 0)
    xm = x.clone()
    xm[:, :C] = majority_labels(x[:, :C], tile)
    mask = (xm[:, :C].argmax(1) != x[:, :C].argmax(1))[:, None].to(torch.float32)
    if mask.sum() == 0:
        return {"whole": None, "hr": None}
    y = model(x)

    def change(z: torch.Tensor) -> float:
        return float(((z - y).abs().mean(1, keepdim=True) * mask).sum() / mask.sum() * 127.5)

    out: Dict[str, Optional[float]] = {"whole": change(model(xm)), "hr": None}
    if isinstance(model, ASAPGenerator):
        xp = model.pad(x)
        params = model.predict_params(xp)
        out["hr"] = change(model._finish(model.hr(model.hr_input(model.pad(xm)), params)[..., :H, :W], x))
    return out
