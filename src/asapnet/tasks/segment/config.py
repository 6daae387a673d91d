"""The options of ``asapnet train --task segment`` as a typed dataclass with the command's defaults
(:class:`SegmentTrainOptions`); the command line fills it (:func:`asapnet.options.from_args`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass
class SegmentTrainOptions:
    """Options of ``asapnet train --task segment`` (the segmenter behind segscore); the defaults are
    the command's. The fields are the command-line options without their dashes."""

    batch_size: int = 4
    crop: Optional[Tuple[int, int]] = (256, 512)
    data: Optional[str] = None
    data_root: Optional[str] = None
    dataset: str = 'cityscapes'
    device: str = 'cpu'
    holdout: int = 0
    load_size: Optional[Tuple[int, int]] = None
    out: str = 'runs/segmenter'
    precision: str = 'fp32'
    quiet: bool = False
    seed: int = 0
    seg_arch: str = 'lraspp_mobilenet_v3_large'
    seg_limit: Optional[int] = None
    seg_lr: float = 0.001
    steps: int = 1000
    threads: Optional[int] = None
