"""The segmentation score: a segmenter's prediction on (generated) photos against the input label maps
(:func:`segscore`), with the resizing it scores at."""
from __future__ import annotations

from typing import List, Optional

import torch

from ...metrics.segmentation import CITYSCAPES_TRAIN_CLASSES, SegScore, confusion_matrix, scores_from_confusion
from .build import Segmenter


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """Photos (N, 3, H, W) as uint8 0-255 or float in [-1, 1] -> float32 in [-1, 1]."""
    if images.dtype == torch.uint8:
        return images.float().div(127.5).sub(1.0)
    return images.float()


def score_predictions(pred: torch.Tensor, train_ids: torch.Tensor, num_classes: int = 19,
                      class_names: Optional[List[str]] = None) -> SegScore:
    """Scores of predicted class ids against target class ids (same shape, 255 ignored); class
    names default to the Cityscapes train classes when ``num_classes`` is 19."""
    names = class_names or (CITYSCAPES_TRAIN_CLASSES if num_classes == len(CITYSCAPES_TRAIN_CLASSES) else None)
    return scores_from_confusion(confusion_matrix(pred, train_ids, num_classes), names)


def segscore(images: torch.Tensor, label_ids: torch.Tensor, segmenter: Segmenter, batch_size: int = 4) -> SegScore:
    """The paper's segmentation score of a set of photos.

    Args:
        images: (N, 3, H, W) float in [-1, 1] (generated or real photos), any size.
        label_ids: (N, H', W') int64 label ids of the *input* label maps, of the segmenter's dataset
            (Cityscapes label ids 0..33, or Facades ids 0..11).
        segmenter: see :func:`load_segmenter`.

    Returns:
        mIoU, pixel accuracy and per-class IoU over the segmenter's classes (19 Cityscapes train
        classes), pooled over the N images, computed at ``segmenter.cfg.size``.
    """
    if images.shape[0] != label_ids.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {label_ids.shape[0]} label maps")
    return score_predictions(segmenter.predict(images, batch_size), segmenter.targets(label_ids),
                             segmenter.cfg.num_classes, segmenter.class_names)
