"""Segmentation scores: confusion matrix, mIoU, pixel accuracy, Cityscapes train ids.

The paper (§4.1, Fig. 6 and Fig. 11) scores a translator by running a semantic segmentation
network on its outputs and comparing the prediction with the *input* label map: pixel accuracy
and mean Intersection-over-Union over the 19 Cityscapes training classes.

Conventions:

* label maps are int64 tensors (N, H, W) or (H, W) of class ids;
* pixels whose target is ``ignore_index`` (255) are left out of every count;
* IoU_c = TP_c / (TP_c + FP_c + FN_c), accumulated over all images of a set (not averaged per
  image), NaN for a class that appears neither in the targets nor in the predictions;
* mIoU is the mean over the classes with a defined IoU (NaN-mean), pixel accuracy is
  correct pixels / counted pixels. All values are fractions in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch

IGNORE_INDEX = 255

#: The 19 Cityscapes training classes, in train-id order (cityscapesScripts ``labels.py``).
CITYSCAPES_TRAIN_CLASSES: List[str] = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
]

#: labelId (0..33) -> trainId (0..18, 255 = ignored), the standard cityscapesScripts table.
_LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                   25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def cityscapes_train_id_lut(num_label_ids: int = 256) -> torch.Tensor:
    """Lookup table (num_label_ids,) int64: Cityscapes labelId -> trainId, 255 for ignored ids."""
    lut = torch.full((num_label_ids,), IGNORE_INDEX, dtype=torch.int64)
    for k, v in _LABEL_TO_TRAIN.items():
        lut[k] = v
    return lut


def to_train_ids(label_ids: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Map Cityscapes label ids (any shape, ints in [0, 255]) to train ids (same shape, int64).

    Ids 0-6, 9, 10, 14-16, 18, 29, 30 (void, parking, rail track, guard rail, bridge, tunnel,
    polegroup, caravan, trailer) and anything above 33 become 255 (ignored).

    Raises:
        ValueError: a negative id or an id above 255.
    """
    t = torch.as_tensor(np.asarray(label_ids) if isinstance(label_ids, np.ndarray) else label_ids).long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) > 255):
        raise ValueError(f"Cityscapes label ids must lie in [0, 255], got [{int(t.min())}, {int(t.max())}]")
    return cityscapes_train_id_lut()[t]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Confusion matrix (num_classes, num_classes) int64, rows = target class, cols = predicted.

    Args:
        pred, target: integer class ids of the same shape (e.g. (N, H, W)).
        num_classes: K; target pixels equal to ``ignore_index`` are skipped.

    Raises:
        ValueError: shapes differ, or a non-ignored id lies outside [0, K).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    for name, t in (("target", target), ("prediction", pred)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{name} id out of range [0, {num_classes}): [{int(t.min())}, {int(t.max())}]")
    return torch.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass
class SegScore:
    """Scores of one confusion matrix. ``per_class_iou`` has NaN for classes never seen."""

    miou: float
    pixel_accuracy: float
    per_class_iou: List[float]
    class_names: List[str] = field(default_factory=list)
    pixels: int = 0

    def to_dict(self) -> Dict[str, object]:
        names = self.class_names or [str(i) for i in range(len(self.per_class_iou))]
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy, "pixels": self.pixels,
                "per_class_iou": {n: (None if np.isnan(v) else v) for n, v in zip(names, self.per_class_iou)}}


def scores_from_confusion(cm: torch.Tensor, class_names: Optional[List[str]] = None) -> SegScore:
    """mIoU, pixel accuracy and per-class IoU of a confusion matrix (rows target, cols prediction).

    Raises:
        ValueError: the matrix counts no pixel.
    """
    cm = cm.double()
    total = float(cm.sum())
    if total == 0:
        raise ValueError("the confusion matrix is empty: no pixel with a non-ignored target")
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    return SegScore(miou=float(np.nanmean(iou.numpy())), pixel_accuracy=float(tp.sum() / total),
                    per_class_iou=[float(v) for v in iou], class_names=list(class_names or []), pixels=int(total))


def segmentation_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ignore_index: int = IGNORE_INDEX, class_names: Optional[List[str]] = None) -> SegScore:
    """One-call :func:`confusion_matrix` + :func:`scores_from_confusion`."""
    return scores_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index), class_names)
