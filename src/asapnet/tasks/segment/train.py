"""Segmenter training: loading and augmenting the data, :func:`fit_segmenter` / :func:`train_segmenter`
(with BatchNorm recalibration at the end) and ``asapnet train --task segment`` (:func:`cmd_train_segment`)."""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...data.datasets import Pair, to_float_image
from ...data.io import read_image, read_label
from ...metrics.segmentation import IGNORE_INDEX, to_train_ids
from .build import (SEGMENTER_FILE, SEGMENT_DATASETS, Segmenter, SegmenterConfig, build_segmenter,
                    segmentation_classes, segmentation_targets, resize_images, resize_labels)
from .evaluate import as_float_images, score_predictions
from .config import SegmentTrainOptions

logger = logging.getLogger(__name__)

#: At most this many training photos (evenly spaced) re-estimate the BatchNorm statistics at the end.
BN_RECALIBRATION_IMAGES = 256


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def _augment(img: torch.Tensor, lab: torch.Tensor, cfg: SegmenterConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random rescale + crop + flip + colour jitter of one (3, H, W) image and (H, W) train-id map."""
    s = random.uniform(*cfg.scale_range)
    h, w = max(8, round(cfg.size[0] * s)), max(8, round(cfg.size[1] * s))
    img = resize_images(img[None], (h, w))[0]
    lab = resize_labels(lab[None], (h, w))[0]
    if cfg.crop is not None:
        ch, cw = cfg.crop
        if h < ch or w < cw:  # pad: image with 0 (mid gray), labels with ignore
            img = F.pad(img, (0, max(0, cw - w), 0, max(0, ch - h)))
            lab = F.pad(lab, (0, max(0, cw - w), 0, max(0, ch - h)), value=IGNORE_INDEX)
            h, w = lab.shape
        t, l = random.randint(0, h - ch), random.randint(0, w - cw)
        img, lab = img[:, t:t + ch, l:l + cw], lab[t:t + ch, l:l + cw]
    if random.random() < 0.5:
        img, lab = img.flip(-1), lab.flip(-1)
    if cfg.jitter > 0:
        j = cfg.jitter
        contrast = 1 + random.uniform(-j, j)
        bright = random.uniform(-j, j) * 0.5
        colour = 1 + torch.empty(3, 1, 1).uniform_(-j / 3, j / 3)
        mean = img.mean()
        img = ((img - mean) * contrast + mean + bright) * colour
        img = img.clamp(-1, 1)
    return img.contiguous(), lab.contiguous()


def load_pairs(pairs: List[Pair], size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Photos (N, 3, h, w) in [-1, 1] and Cityscapes train ids (N, h, w) of ``pairs`` at ``size``.

    Raises:
        DataError: a pair has no photo, or an unreadable / inconsistent file.
    """
    from ...data.io import DataError

    missing = [p for p in pairs if p.image is None]
    if missing:
        raise DataError(f"{missing[0].label}: no photo to train / score the segmenter on")
    imgs, labs = [], []
    for p in pairs:
        lab = read_label(p.label)
        img = read_image(p.image)
        if img.shape[:2] != lab.shape:
            raise DataError(f"{p.image}: size {img.shape[1]}x{img.shape[0]} does not match label map {p.label}")
        imgs.append(resize_images(to_float_image(img)[None], size)[0].clamp(-1, 1))
        labs.append(to_train_ids(resize_labels(torch.from_numpy(lab)[None], size)[0]))
    return torch.stack(imgs), torch.stack(labs)


def load_split(dataset: str, folder: str | Path, size: Tuple[int, int], limit: Optional[int] = None,
               log: Callable[[str], None] = lambda s: None) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """The real photos and segmentation targets of a ``cityscapes-pix2pix`` or ``facades`` split.

    Photos are kept as uint8 (2975 Cityscapes photos at 256x512: 1.2 GB instead of 4.7 GB as float).

    Args:
        dataset: ``"cityscapes-pix2pix"`` (:class:`asapnet.data.cityscapes.Pix2PixCityscapes`) or
            ``"facades"`` (:class:`asapnet.data.facades.FacadesCMP`).
        folder: the split folder (e.g. ``cityscapes_pix2pix/train``).
        size: (H, W) the photos and label maps are resized to.
        limit: only the first ``limit`` files.

    Returns:
        (photos (N, 3, H, W) uint8, targets (N, H, W) uint8 class ids with 255 ignored, names).

    Raises:
        ValueError: another dataset name. DataError: missing folder or unreadable file.
    """
    if dataset == "cityscapes-pix2pix":
        from ...data.cityscapes import Pix2PixCityscapes
        ds = Pix2PixCityscapes(folder, size=size, limit=limit, cache=False)
    elif dataset == "facades":
        from ...data.facades import FacadesCMP
        ds = FacadesCMP(folder, size=size, limit=limit, cache=False)
    else:
        raise ValueError(f"load_split reads 'cityscapes-pix2pix' or 'facades', got {dataset!r}")
    n = len(ds)
    images = torch.empty(n, 3, *size, dtype=torch.uint8)
    targets = torch.empty(n, *size, dtype=torch.uint8)
    names = []
    for i in range(n):
        it = ds[i]
        images[i] = ((it["target"] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        targets[i] = segmentation_targets(it["label"], dataset).to(torch.uint8)
        names.append(it["name"])
        if (i + 1) % 500 == 0 or i + 1 == n:
            log(f"loaded {i + 1}/{n} photos of {folder}")
    return images, targets, names


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: torch.Tensor, batch_size: int = 2) -> None:
    """Re-estimate the BatchNorm running statistics as exact averages over ``images`` (and their
    mirror images), (N, 3, H, W) float in [-1, 1] or uint8. torchvision's MobileNetV3 uses BN
    momentum 0.01, so after a short training run its running statistics still lag far behind the
    weights."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for i in range(0, len(images), batch_size):
        x = as_float_images(images[i:i + batch_size])
        model(torch.cat([x, x.flip(-1)]))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def train_segmenter(pairs: List[Pair], cfg: SegmenterConfig, out_dir: str | Path,
                    val_pairs: Optional[List[Pair]] = None, log: Callable[[str], None] = logger.info,
                    log_every: int = 50) -> Segmenter:
    """Train ``cfg.arch`` from scratch on the real photos / Cityscapes label maps of ``pairs``
    (see :func:`fit_segmenter`).

    Raises:
        DataError: see :func:`load_pairs`.
    """
    images, labels = load_pairs(pairs, cfg.size)
    val = load_pairs(val_pairs, cfg.size) if val_pairs else None
    meta = {"dataset": "cityscapes", "train_pairs": [p.name for p in pairs],
            "val_pairs": [p.name for p in val_pairs or []]}
    return fit_segmenter(images, labels, cfg, out_dir, val, meta, log, log_every)


def fit_segmenter(images: torch.Tensor, targets: torch.Tensor, cfg: SegmenterConfig, out_dir: str | Path,
                  val: Optional[Tuple[torch.Tensor, torch.Tensor]] = None, meta: Optional[Dict[str, Any]] = None,
                  log: Callable[[str], None] = logger.info, log_every: int = 50) -> Segmenter:
    """Train ``cfg.arch`` from scratch on photos and their segmentation targets.

    Cross-entropy on the ``cfg.num_classes`` classes (255 ignored), AdamW, polynomial decay; at
    the end the BatchNorm statistics are re-estimated on at most
    :data:`BN_RECALIBRATION_IMAGES` training photos, evenly spaced (:func:`recalibrate_bn`). Writes
    ``out_dir/segmenter.safetensors`` (+ ``.json``) at the end and ``out_dir/log.jsonl`` (loss,
    seconds, and mIoU / pixel accuracy on ``val`` every ``log_every`` steps when given).

    Args:
        images: (N, 3, H, W) uint8 or float in [-1, 1], at ``cfg.size``.
        targets: (N, H, W) integer class ids in [0, cfg.num_classes) or 255, at ``cfg.size``.
        val: (photos, targets) of the same kinds, scored during training.
        meta: stored in the checkpoint (``dataset`` names the label ids, see :class:`Segmenter`).

    Raises:
        ValueError: images and targets of different counts or sizes.
    """
    if images.shape[0] != targets.shape[0] or images.shape[-2:] != targets.shape[-2:]:
        raise ValueError(f"images {tuple(images.shape)} and targets {tuple(targets.shape)} do not match")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if val is not None:
        val = (as_float_images(val[0]), val[1].long())
    model = build_segmenter(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - s / cfg.steps) ** 0.9)
    seg = Segmenter(model, cfg, dict(meta or {}))
    t0 = time.time()
    logf = open(out / "log.jsonl", "w")
    try:
        for step in range(1, cfg.steps + 1):
            model.train()
            idx = [random.randrange(len(images)) for _ in range(cfg.batch_size)]
            batch = [_augment(as_float_images(images[i:i + 1])[0], targets[i].long(), cfg) for i in idx]
            x = torch.stack([b[0] for b in batch])
            y = torch.stack([b[1] for b in batch])
            loss = F.cross_entropy(model(x)["out"], y, ignore_index=IGNORE_INDEX)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % log_every == 0 or step == cfg.steps:
                rec: Dict[str, Any] = {"step": step, "loss": loss.item(), "sec": round(time.time() - t0, 1)}
                if val is not None:
                    seg.model.eval()  # (running BN statistics lag early on; see recalibrate_bn)
                    s = score_predictions(seg.predict(val[0]), val[1], cfg.num_classes)
                    rec.update(val_miou=s.miou, val_pixel_accuracy=s.pixel_accuracy)
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
    finally:
        logf.close()
    n_bn = min(len(images), BN_RECALIBRATION_IMAGES)
    recalibrate_bn(model, images[torch.linspace(0, len(images) - 1, n_bn).round().long()])
    seg.meta.update(steps=cfg.steps, train_seconds=round(time.time() - t0, 1))
    seg.save(out / SEGMENTER_FILE)
    return seg


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# CLI glue: asapnet train --task segment
# ---------------------------------------------------------------------------------------------


#: (default folder under the data root, validation split) of the split datasets.
_SPLIT_DATASETS = {"cityscapes-pix2pix": ("cityscapes_pix2pix", "val"), "facades": ("facades_cmp", "test")}


def cmd_train_segment(opts: SegmentTrainOptions) -> int:
    """``asapnet train --task segment``: train the segmentation-score network on real photos.

    ``--dataset cityscapes`` (default): the pairs of ``<data>/train_*`` (``cityscapes_samples``
    layout), ``--holdout K`` keeps the last K pairs for validation. ``--dataset cityscapes-pix2pix``
    / ``facades``: every photo of ``<data>/train`` (default ``<data-root>/cityscapes_pix2pix`` /
    ``facades_cmp``), ``--holdout K`` validates on the first K photos of ``<data>/val`` / ``test``
    (never trained on), ``--seg-limit N`` trains on the first N photos only. ``--load-size`` is the segmenter's working size (default 256x512;
    256x256 for facades), ``--crop`` the training crop (``none`` = whole image).

    Raises:
        DataError: missing data, or a holdout that leaves nothing to train on.
        ValueError: a dataset a segmenter cannot be trained on.
    """
    from ...data.datasets import cityscapes_pairs, data_root
    from ...data.io import DataError

    dataset = opts.dataset or "cityscapes"
    if dataset not in SEGMENT_DATASETS:
        raise ValueError(f"train --task segment supports --dataset {', '.join(SEGMENT_DATASETS)}; got {dataset!r}")
    # the segmenter trains on the CPU in float32 (a few thousand steps of a MobileNet): refused
    # rather than silently ignored
    if (opts.device or "cpu") != "cpu":
        raise ValueError(f"train --task segment runs on the CPU only; --device {opts.device} is not supported")
    if (opts.precision or "fp32") != "fp32":
        raise ValueError(f"train --task segment trains in fp32 only; --precision {opts.precision} is not supported")
    default_size = (256, 256) if dataset == "facades" else (256, 512)
    size = tuple(opts.load_size or default_size)
    crop = opts.crop
    if crop is not None and (crop[0] > size[0] or crop[1] > size[1]):
        crop = (min(crop[0], size[0]), min(crop[1], size[1]))
    cfg = SegmenterConfig(arch=opts.seg_arch, size=size, crop=crop,
                          num_classes=len(segmentation_classes(dataset)),
                          steps=opts.steps, batch_size=opts.batch_size, lr=opts.seg_lr,
                          seed=opts.seed, num_threads=opts.threads)
    log = (lambda s: None) if opts.quiet else logger.info
    k = int(opts.holdout or 0)
    if dataset == "cityscapes":
        pairs = cityscapes_pairs(opts.data or data_root(opts.data_root)
                                 / "cityscapes_samples", "train")
        if k >= len(pairs):
            raise DataError(f"--holdout {k} leaves no training pairs (dataset has {len(pairs)})")
        train_pairs, val_pairs = pairs[: len(pairs) - k], pairs[len(pairs) - k:]
        train_segmenter(train_pairs, cfg, opts.out, val_pairs or None, log=log)
    else:
        name, val_split = _SPLIT_DATASETS[dataset]
        root = Path(opts.data or data_root(opts.data_root) / name)
        limit = opts.seg_limit
        images, targets, names = load_split(dataset, root / "train", size, limit=limit, log=log)
        val = load_split(dataset, root / val_split, size, limit=k)[:2] if k else None
        meta = {"dataset": dataset, "train_data": str(root / "train"), "train_images": len(names),
                "val_data": str(root / val_split) if k else None, "val_images": k}
        fit_segmenter(images, targets, cfg, opts.out, val, meta, log=log)
    logger.info(f"done: {Path(opts.out) / SEGMENTER_FILE}")
    return 0
