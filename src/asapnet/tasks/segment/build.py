"""The segmenter: its configuration (:class:`SegmenterConfig`), classes and targets per dataset, building,
loading and running one (:class:`Segmenter`)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...checkpoint import _atomic_write, load_tensors, save_tensors
from ...options import SEGMENT_ARCHITECTURES
from ...metrics.segmentation import CITYSCAPES_TRAIN_CLASSES, to_train_ids

SEGMENTER_FILE = "segmenter.safetensors"


ARCHITECTURES = SEGMENT_ARCHITECTURES  # ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50")


#: Datasets a segmenter can be trained on / scores; the Cityscapes layouts share the 19 train classes.
SEGMENT_DATASETS = ("cityscapes", "cityscapes-pix2pix", "facades")


def segmentation_classes(dataset: str) -> List[str]:
    """Names of the classes a segmenter of ``dataset`` predicts (19 Cityscapes train classes or the
    12 CMP Facades classes).

    Raises:
        ValueError: an unknown dataset name.
    """
    if dataset in ("cityscapes", "cityscapes-pix2pix"):
        return list(CITYSCAPES_TRAIN_CLASSES)
    if dataset == "facades":
        from ...data.facades import FACADES_CLASSES
        return list(FACADES_CLASSES)
    raise ValueError(f"unknown segmentation dataset {dataset!r}; choose from {SEGMENT_DATASETS}")


def segmentation_targets(label_ids: torch.Tensor, dataset: str = "cityscapes") -> torch.Tensor:
    """Label ids (any shape) of ``dataset`` -> the segmenter's class ids (same shape, int64, 255 ignored):
    Cityscapes label ids -> train ids; Facades ids 0..11 unchanged.

    Raises:
        ValueError: an unknown dataset, or ids out of range (see :func:`to_train_ids`).
    """
    if dataset in ("cityscapes", "cityscapes-pix2pix"):
        return to_train_ids(label_ids)
    if dataset == "facades":
        t = torch.as_tensor(label_ids).long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= len(segmentation_classes(dataset))):
            raise ValueError(f"Facades label ids must lie in [0, 12), got [{int(t.min())}, {int(t.max())}]")
        return t
    raise ValueError(f"unknown segmentation dataset {dataset!r}; choose from {SEGMENT_DATASETS}")


@dataclass
class SegmenterConfig:
    """Options of :func:`train_segmenter`.

    Attributes:
        arch: torchvision segmentation builder (one of :data:`ARCHITECTURES`), built with
            ``weights=None, weights_backbone=None`` (no download).
        num_classes: output classes (19 Cityscapes train classes; 12 for CMP Facades).
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

    ``predict(images)`` takes float (N, 3, H, W) in [-1, 1] at any size and returns class ids
    (N, h, w) int64 at ``cfg.size`` = (h, w). ``dataset`` (from ``meta``, default ``"cityscapes"``)
    names the label ids it is scored against (see :func:`segmentation_targets`).
    """

    def __init__(self, model: nn.Module, cfg: SegmenterConfig, meta: Optional[Dict[str, Any]] = None):
        self.model, self.cfg, self.meta = model.eval(), cfg, dict(meta or {})

    @property
    def dataset(self) -> str:
        return str(self.meta.get("dataset", "cityscapes"))

    @property
    def class_names(self) -> List[str]:
        return segmentation_classes(self.dataset)

    def targets(self, label_ids: torch.Tensor) -> torch.Tensor:
        """Label ids (N, H, W) of the segmenter's dataset -> class ids (N, h, w) at ``cfg.size``."""
        return segmentation_targets(resize_labels(label_ids, self.cfg.size), self.dataset)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> logits (N, K, h, w) at ``cfg.size``."""
        x = resize_images(images, self.cfg.size)
        return self.model(x)["out"]

    def predict(self, images: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
        return torch.cat([self.logits(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])

    def save(self, path: str | Path) -> None:
        """Write ``path`` (safetensors, config in its metadata) and ``path.json``."""
        meta = {"kind": "segmenter", "config": self.cfg.to_dict(), "class_names": self.class_names,
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
