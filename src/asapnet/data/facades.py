"""CMP Facade Database (Tyleček & Šára, GCPR 2013), base set: ``cmp_bNNNN.jpg`` photos with
``cmp_bNNNN.png`` index label maps holding class ids 1..12 (1 background, 2 facade, 3 window,
4 door, 5 cornice, 6 sill, 7 balcony, 8 blind, 9 deco, 10 molding, 11 pillar, 12 shop).

The model input uses ids 0..11 (file id - 1): 12 one-hot channels, as the ``facades-*`` presets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .datasets import label_photo_item
from .io import DataError, PathLike, read_image, read_label

#: Class names of model ids 0..11 (file ids 1..12).
FACADES_CLASSES: Tuple[str, ...] = ("background", "facade", "window", "door", "cornice", "sill", "balcony",
                                    "blind", "deco", "molding", "pillar", "shop")
NUM_CLASSES = len(FACADES_CLASSES)

#: A colour per model id for pictures of label maps (the CMP dataset's own legend colours).
PALETTE = np.array([(0, 0, 170), (0, 0, 255), (0, 85, 255), (0, 170, 255), (0, 255, 255), (85, 255, 170),
                    (170, 255, 85), (255, 255, 0), (255, 170, 0), (255, 85, 0), (255, 0, 0), (170, 0, 0)],
                   dtype=np.uint8)


def facades_pairs(folder: PathLike) -> List[Tuple[Path, Path]]:
    """(photo, label map) pairs of a CMP folder, sorted by name.

    Raises:
        DataError: missing folder, no ``cmp_*.png`` label maps, or a label map without its photo.
    """
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"{d}: folder not found")
    labels = sorted(d.glob("cmp_*.png"))
    if not labels:
        raise DataError(f"{d}: no cmp_*.png label maps (expected the CMP Facades base set)")
    pairs = []
    for lab in labels:
        photo = lab.with_suffix(".jpg")
        if not photo.is_file():
            raise DataError(f"{lab}: no photo {photo.name} next to it")
        pairs.append((photo, lab))
    return pairs


class FacadesCMP(Dataset):
    """CMP Facades pairs resized to ``size`` (photo bicubic, labels nearest).

    Items: ``input`` (12, H, W) float32 one-hot in {0, 1}; ``target`` (3, H, W) float32 in
    [-1, 1]; ``label`` (H, W) int64 ids 0..11; ``name`` the file stem.

    Raises (on access):
        DataError: unreadable file, photo and label map of different sizes, or a label id
            outside 1..12 (naming the file).
    """

    num_classes = NUM_CLASSES
    in_channels = NUM_CLASSES

    def __init__(self, folder: PathLike, size: Tuple[int, int] = (256, 256), flip: bool = False,
                 limit: Optional[int] = None, cache: bool = True):
        pairs = facades_pairs(folder)
        self.pairs = pairs[:limit] if limit else pairs
        self.size, self.flip = tuple(size), flip
        self._cache: Optional[Dict[int, tuple]] = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, i: int) -> tuple:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        photo_path, label_path = self.pairs[i]
        photo, lab = read_image(photo_path), read_label(label_path)
        if photo.shape[:2] != lab.shape:
            raise DataError(f"{photo_path}: size {photo.shape[1]}x{photo.shape[0]} does not match label map "
                            f"{label_path} ({lab.shape[1]}x{lab.shape[0]})")
        if lab.min() < 1 or lab.max() > NUM_CLASSES:
            bad = int(lab.min() if lab.min() < 1 else lab.max())
            raise DataError(f"{label_path}: label id {bad} out of range [1, {NUM_CLASSES}]")
        h, w = self.size
        photo = np.array(Image.fromarray(photo).resize((w, h), Image.BICUBIC))
        lab = np.array(Image.fromarray((lab - 1).astype(np.uint8)).resize((w, h), Image.NEAREST))
        item = (lab, photo)
        if self._cache is not None:
            self._cache[i] = item
        return item

    def __getitem__(self, i: int) -> dict:
        lab, photo = self._load(i)
        return label_photo_item(lab, photo, NUM_CLASSES, self.pairs[i][0].stem, self.flip)
