"""A semantic segmentation network for the paper's *segmentation score* (§4.1, Fig. 6, Fig. 11).

The paper runs a DRN-D-105 trained on all of Cityscapes over the generated photos and compares its
prediction with the input label map (19 train classes). That network's weights cannot be
downloaded here, so ``asapnet train --task segment`` trains a torchvision architecture
(LR-ASPP MobileNetV3-Large, Howard et al. 2019; small enough to train on a CPU) from scratch on
the real photos and label maps at hand. Absolute scores are therefore far below the paper's; the
*gap between generated photos and the real-photo ceiling* measured with the same network is the
meaningful number.

Images are float (N, 3, H, W) in [-1, 1]; label maps are Cityscapes label ids (N, H, W) int64 and
are mapped to the 19 train ids (255 = ignored) with :func:`asapnet.metrics.segmentation.to_train_ids`.
Everything is evaluated at the segmenter's ``size`` (H, W) = 256x512 by default: images are resized
bilinearly (antialiased), label maps with nearest neighbour.

Checkpoints: ``segmenter.safetensors`` (weights, config in its metadata) + ``segmenter.safetensors.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import _atomic_write, load_tensors, save_tensors
from .data.datasets import Pair, to_float_image
from .data.io import read_image, read_label
from .metrics.segmentation import (CITYSCAPES_TRAIN_CLASSES, IGNORE_INDEX, SegScore, confusion_matrix,
                                   scores_from_confusion, to_train_ids)

SEGMENTER_FILE = "segmenter.safetensors"
ARCHITECTURES = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50")


@dataclass
class SegmenterConfig:
    """Options of :func:`train_segmenter`.

    Attributes:
        arch: torchvision segmentation builder (one of :data:`ARCHITECTURES`), built with
            ``weights=None, weights_backbone=None`` (no download).
        num_classes: output classes (19 Cityscapes train classes).
        size: (H, W) in pixels at which images are segmented (training and evaluation).
        crop: (H, W) random training crop taken after random rescaling; ``None`` = whole image.
        scale_range: random rescaling factors (min, max) applied before cropping.
        steps, batch_size, lr, weight_decay: AdamW with polynomial (power 0.9) decay.
        jitter: strength of the brightness / contrast / colour augmentation (0 = none).
        seed, num_threads: RNG seed; torch CPU threads (``None`` = unchanged).
    """

    arch: str = "lraspp_mobilenet_v3_large"
    num_classes: int = len(CITYSCAPES_TRAIN_CLASSES)
    size: Tuple[int, int] = (256, 512)
    crop: Optional[Tuple[int, int]] = (192, 384)
    scale_range: Tuple[float, float] = (0.75, 1.5)
    steps: int = 1500
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    jitter: float = 0.3
    seed: int = 0
    num_threads: Optional[int] = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"SegmenterConfig.arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        self.size = tuple(self.size)
        self.crop = tuple(self.crop) if self.crop is not None else None
        self.scale_range = tuple(self.scale_range)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SegmenterConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def build_segmenter(cfg: SegmenterConfig) -> nn.Module:
    """The torchvision model of ``cfg.arch`` with random weights (nothing is downloaded)."""
    from torchvision.models import segmentation as seg

    kw: Dict[str, Any] = dict(weights=None, weights_backbone=None, num_classes=cfg.num_classes)
    if cfg.arch != "lraspp_mobilenet_v3_large":
        kw["aux_loss"] = False
    return getattr(seg, cfg.arch)(**kw)


class Segmenter:
    """A trained segmentation network with its config.

    ``predict(images)`` takes float (N, 3, H, W) in [-1, 1] at any size and returns train ids
    (N, h, w) int64 at ``cfg.size`` = (h, w).
    """

    def __init__(self, model: nn.Module, cfg: SegmenterConfig, meta: Optional[Dict[str, Any]] = None):
        self.model, self.cfg, self.meta = model.eval(), cfg, dict(meta or {})

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> logits (N, K, h, w) at ``cfg.size``."""
        x = resize_images(images, self.cfg.size)
        return self.model(x)["out"]

    def predict(self, images: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
        return torch.cat([self.logits(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])

    def save(self, path: str | Path) -> None:
        """Write ``path`` (safetensors, config in its metadata) and ``path.json``."""
        meta = {"kind": "segmenter", "config": self.cfg.to_dict(), "class_names": CITYSCAPES_TRAIN_CLASSES,
                **self.meta}
        save_tensors(path, self.model.state_dict(), meta)
        _atomic_write(Path(str(path) + ".json"),
                      lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True)))


def load_segmenter(path: str | Path) -> Segmenter:
    """Load a segmenter written by :meth:`Segmenter.save`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a segmenter checkpoint, or weights that do not fit its config.
    """
    tensors, meta = load_tensors(path)
    if meta.get("kind") != "segmenter":
        raise ValueError(f"{path}: not a segmenter checkpoint (train one with 'asapnet train --task segment')")
    cfg = SegmenterConfig.from_dict(meta["config"])
    model = build_segmenter(cfg)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the stored config: {e}") from None
    return Segmenter(model, cfg, {k: v for k, v in meta.items() if k not in ("kind", "config", "class_names")})


def resize_images(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of float (N, C, H, W) to ``size`` = (h, w)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images.float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def resize_labels(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of int label maps (N, H, W) to ``size`` = (h, w)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


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
    from .data.io import DataError

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


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: torch.Tensor, batch_size: int = 2) -> None:
    """Re-estimate the BatchNorm running statistics as exact averages over ``images`` (and their
    mirror images), float (N, 3, H, W) in [-1, 1]. torchvision's MobileNetV3 uses BN momentum 0.01,
    so after a short training run its running statistics still lag far behind the weights."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    data = torch.cat([images, images.flip(-1)])
    for i in range(0, len(data), batch_size):
        model(data[i:i + batch_size])
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def train_segmenter(pairs: List[Pair], cfg: SegmenterConfig, out_dir: str | Path,
                    val_pairs: Optional[List[Pair]] = None, log: Callable[[str], None] = print,
                    log_every: int = 50) -> Segmenter:
    """Train ``cfg.arch`` from scratch on the real photos / label maps of ``pairs``.

    Cross-entropy on the 19 train ids (255 ignored), AdamW, polynomial decay; at the end the
    BatchNorm statistics are re-estimated on the training photos (:func:`recalibrate_bn`). Writes
    ``out_dir/segmenter.safetensors`` (+ ``.json``) at the end and ``out_dir/log.jsonl`` (loss,
    and mIoU / pixel accuracy on ``val_pairs`` every ``log_every`` steps when given).

    Raises:
        DataError: see :func:`load_pairs`.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = load_pairs(pairs, cfg.size)
    val = load_pairs(val_pairs, cfg.size) if val_pairs else None
    model = build_segmenter(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - s / cfg.steps) ** 0.9)
    seg = Segmenter(model, cfg, {"train_pairs": [p.name for p in pairs],
                                 "val_pairs": [p.name for p in val_pairs or []]})
    t0 = time.time()
    logf = open(out / "log.jsonl", "w")
    try:
        for step in range(1, cfg.steps + 1):
            model.train()
            idx = [random.randrange(len(images)) for _ in range(cfg.batch_size)]
            batch = [_augment(images[i], labels[i], cfg) for i in idx]
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
    recalibrate_bn(model, images)
    seg.meta["steps"] = cfg.steps
    seg.save(out / SEGMENTER_FILE)
    return seg


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------


def score_predictions(pred: torch.Tensor, train_ids: torch.Tensor, num_classes: int = 19) -> SegScore:
    """Scores of predicted train ids against target train ids (same shape, 255 ignored)."""
    names = CITYSCAPES_TRAIN_CLASSES if num_classes == len(CITYSCAPES_TRAIN_CLASSES) else None
    return scores_from_confusion(confusion_matrix(pred, train_ids, num_classes), names)


def segscore(images: torch.Tensor, label_ids: torch.Tensor, segmenter: Segmenter, batch_size: int = 4) -> SegScore:
    """The paper's segmentation score of a set of photos.

    Args:
        images: (N, 3, H, W) float in [-1, 1] (generated or real photos), any size.
        label_ids: (N, H', W') int64 Cityscapes label ids (0..33) of the *input* label maps.
        segmenter: see :func:`load_segmenter`.

    Returns:
        mIoU, pixel accuracy and per-class IoU over the 19 train classes, pooled over the N images,
        computed at ``segmenter.cfg.size``.
    """
    if images.shape[0] != label_ids.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {label_ids.shape[0]} label maps")
    target = to_train_ids(resize_labels(label_ids, segmenter.cfg.size))
    return score_predictions(segmenter.predict(images, batch_size), target, segmenter.cfg.num_classes)


# ---------------------------------------------------------------------------------------------
# CLI glue: asapnet train --task segment
# ---------------------------------------------------------------------------------------------


def add_train_segment_args(p: argparse.ArgumentParser) -> None:
    """Options only ``asapnet train --task segment`` uses (the rest are shared with ``train``:
    --data-root --data --holdout --steps --batch-size --crop --load-size --out --threads --seed --quiet)."""
    p.add_argument("--seg-arch", default="lraspp_mobilenet_v3_large", choices=ARCHITECTURES,
                   help="segmentation architecture (--task segment)")
    p.add_argument("--seg-lr", type=float, default=1e-3, help="AdamW learning rate (--task segment)")


def cmd_train_segment(a: argparse.Namespace) -> int:
    """``asapnet train --task segment``: train the segmentation-score network on the real pairs.

    Uses ``--load-size`` as the segmenter's working size (default 256x512), ``--crop`` as the
    training crop (``none`` = whole image) and ``--holdout K`` to keep the last K pairs for
    validation (they are not trained on, so the real-photo ceiling on them is honest).
    """
    from .data.datasets import cityscapes_pairs, data_root
    from .data.io import DataError

    pairs = cityscapes_pairs(getattr(a, "data", None) or data_root(getattr(a, "data_root", None)) / "cityscapes_samples",
                             "train")
    k = int(getattr(a, "holdout", 0) or 0)
    if k >= len(pairs):
        raise DataError(f"--holdout {k} leaves no training pairs (dataset has {len(pairs)})")
    size = getattr(a, "load_size", None) or (256, 512)
    crop = getattr(a, "crop", None)
    if crop is not None and (crop[0] > size[0] or crop[1] > size[1]):
        crop = (min(crop[0], size[0]), min(crop[1], size[1]))
    cfg = SegmenterConfig(arch=getattr(a, "seg_arch", "lraspp_mobilenet_v3_large"), size=size, crop=crop,
                          steps=a.steps, batch_size=a.batch_size, lr=getattr(a, "seg_lr", 1e-3),
                          seed=getattr(a, "seed", 0), num_threads=getattr(a, "threads", None))
    log = (lambda s: None) if getattr(a, "quiet", False) else print
    train_pairs, val_pairs = pairs[: len(pairs) - k], pairs[len(pairs) - k:]
    train_segmenter(train_pairs, cfg, a.out, val_pairs or None, log=log)
    print(f"done: {Path(a.out) / SEGMENTER_FILE}")
    return 0
