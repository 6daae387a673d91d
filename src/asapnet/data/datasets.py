"""Paired datasets for label->photo and image->image translation.

Every dataset yields dicts with
  ``input``  (C, H, W) float32: one-hot labels in {0, 1} (+ instance edge channel), or an image in [-1, 1];
  ``target`` (3, H, W) float32 in [-1, 1] (absent for inference-only data);
  ``label``  (H, W) int64 class ids (label-map datasets only);
  ``name``   the stem of the input file.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .io import DataError, PathLike, list_images, read_image, read_label
from .labels import instance_edges

CITYSCAPES_SUFFIXES = ("_gtFine_labelIds", "_gtFine_instanceIds", "_leftImg8bit")


def data_root(root: Optional[PathLike] = None) -> Path:
    """Resolve the data folder: ``root``, else ``$ASAPNET_DATA``, else ``../shared/data``."""
    return Path(root or os.environ.get("ASAPNET_DATA") or "../shared/data")


@dataclass
class Pair:
    """One example: a label map (or input image), optional instance map and target photo."""

    name: str
    label: Path
    instance: Optional[Path] = None
    image: Optional[Path] = None


def _stem(path: Path, suffixes: Sequence[str] = CITYSCAPES_SUFFIXES) -> str:
    s = path.stem
    for suf in suffixes:
        if s.endswith(suf):
            return s[: -len(suf)]
    return s


def _match(files: List[Path], what: str, folder: Path, names: Sequence[str]) -> Dict[str, Path]:
    by = {_stem(f): f for f in files}
    missing = [n for n in names if n not in by]
    if missing:
        raise DataError(f"{folder}: no {what} for {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return by


def pairs_from_folders(label_dir: PathLike, image_dir: Optional[PathLike] = None,
                       instance_dir: Optional[PathLike] = None) -> List[Pair]:
    """Match files of label/instance/image folders by stem (Cityscapes suffixes are stripped).

    Raises:
        DataError: a folder is missing or empty, or a label map has no partner.
    """
    labels = list_images(label_dir)
    names = [_stem(f) for f in labels]
    insts = _match(list_images(instance_dir), "instance map", Path(instance_dir), names) if instance_dir else {}
    imgs = _match(list_images(image_dir), "image", Path(image_dir), names) if image_dir else {}
    return [Pair(n, f, insts.get(n), imgs.get(n)) for n, f in zip(names, labels)]


def cityscapes_pairs(root: PathLike, split: str = "train") -> List[Pair]:
    """Pairs of a Cityscapes sample folder laid out as ``{split}_label``, ``{split}_inst``,
    ``{split}_img`` (the layout of ``cityscapes_samples``; ``_img`` is optional)."""
    root = Path(root)
    img = root / f"{split}_img"
    inst = root / f"{split}_inst"
    return pairs_from_folders(root / f"{split}_label", img if img.is_dir() else None, inst if inst.is_dir() else None)


def _resize(arr: np.ndarray, size: Tuple[int, int], nearest: bool) -> np.ndarray:
    h, w = size
    if arr.shape[:2] == (h, w):
        return arr
    if nearest:
        ys = (np.arange(h) * arr.shape[0] // h)
        xs = (np.arange(w) * arr.shape[1] // w)
        return arr[ys][:, xs]
    img = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
    out = np.asarray(img.resize((w, h), Image.BICUBIC))
    return out[..., None] if arr.ndim == 3 and out.ndim == 2 else out


def to_float_image(arr: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) 0-255 -> float32 (C, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def label_photo_item(ids: np.ndarray, photo: np.ndarray, num_classes: int, name: str, flip: bool = False) -> dict:
    """A dataset item from class ids (H, W) and a photo (H, W, 3) uint8: ``input`` (num_classes,
    H, W) float32 one-hot, ``target`` (3, H, W) in [-1, 1], ``label`` (H, W) int64, ``name``;
    both mirrored left-right with probability 0.5 when ``flip``."""
    if flip and torch.rand(()).item() < 0.5:
        ids, photo = ids[:, ::-1], photo[:, ::-1]
    lab = torch.from_numpy(np.ascontiguousarray(ids).astype(np.int64))
    x = torch.zeros(num_classes, *lab.shape)
    x.scatter_(0, lab[None], 1.0)
    return {"input": x, "target": to_float_image(photo), "label": lab, "name": name}


class LabelPhotoDataset(Dataset):
    """Label map (+ instance map) -> photo pairs (Cityscapes, paired folders).

    Args:
        pairs: the examples (see :func:`cityscapes_pairs`, :func:`pairs_from_folders`).
        num_classes: number of label ids; ids must lie in [0, num_classes).
        use_instance: append the instance edge map channel (needs instance maps).
        load_size: optional (H, W) resize (nearest for labels, bicubic for photos).
        flip: random horizontal flip.
        palette: (r, g, b) per class id for RGB colour label maps.
        cache: keep decoded files in memory (small datasets).

    Raises (on access):
        DataError: unreadable file, mismatched pair sizes, id out of range.
    """

    def __init__(self, pairs: List[Pair], num_classes: int, use_instance: bool = True,
                 load_size: Optional[Tuple[int, int]] = None, flip: bool = False,
                 palette: Optional[Sequence[Sequence[int]]] = None, cache: bool = True):
        if not pairs:
            raise DataError("dataset is empty")
        if use_instance and any(p.instance is None for p in pairs):
            missing = next(p for p in pairs if p.instance is None)
            raise DataError(f"{missing.label}: no instance map (pass use_instance=False / --no-instance)")
        self.pairs, self.num_classes, self.use_instance = pairs, num_classes, use_instance
        self.load_size, self.flip, self.palette = load_size, flip, palette
        self._cache: Optional[Dict[int, tuple]] = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def in_channels(self) -> int:
        return self.num_classes + int(self.use_instance)

    def _load(self, i: int) -> tuple:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        p = self.pairs[i]
        label = read_label(p.label, self.palette)
        if label.max() >= self.num_classes or label.min() < 0:
            bad = int(label.max() if label.max() >= self.num_classes else label.min())
            raise DataError(f"{p.label}: label id {bad} out of range [0, {self.num_classes})")
        inst = read_label(p.instance) if self.use_instance else None
        img = read_image(p.image) if p.image is not None else None
        for other, path in ((inst, p.instance), (img, p.image)):
            if other is not None and other.shape[:2] != label.shape:
                raise DataError(f"{path}: size {other.shape[1]}x{other.shape[0]} does not match label map "
                                f"{p.label} ({label.shape[1]}x{label.shape[0]})")
        item = (label.astype(np.uint8 if self.num_classes <= 256 else np.int32),
                inst.astype(np.int32) if inst is not None else None, img)
        if self._cache is not None:
            self._cache[i] = item
        return item

    def __getitem__(self, i: int) -> dict:
        label, inst, img = self._load(i)
        if self.load_size is not None:
            label = _resize(label, self.load_size, nearest=True)
            inst = _resize(inst, self.load_size, nearest=True) if inst is not None else None
            img = _resize(img, self.load_size, nearest=False) if img is not None else None
        if self.flip and random.random() < 0.5:
            label = label[:, ::-1]
            inst = inst[:, ::-1] if inst is not None else None
            img = img[:, ::-1] if img is not None else None
        lab = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        x = torch.zeros(self.num_classes, *lab.shape)
        x.scatter_(0, lab[None], 1.0)
        if inst is not None:
            x = torch.cat([x, torch.from_numpy(instance_edges(inst))[None]])
        out = {"input": x, "label": lab, "name": self.pairs[i].name}
        if img is not None:
            out["target"] = to_float_image(img)
        return out


class AlignedABDataset(Dataset):
    """pix2pix side-by-side images: the left half is A, the right half is B.

    ``direction="AtoB"`` uses A as input and B as target; ``"BtoA"`` the reverse. Both halves
    are RGB images in [-1, 1].

    Raises (on access):
        DataError: unreadable file or an odd width that cannot be split in two halves.
    """

    def __init__(self, folder: PathLike, direction: str = "AtoB", load_size: Optional[Tuple[int, int]] = None,
                 flip: bool = False):
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        self.files = list_images(folder)
        self.direction, self.load_size, self.flip = direction, load_size, flip

    def __len__(self) -> int:
        return len(self.files)

    in_channels = 3

    def __getitem__(self, i: int) -> dict:
        f = self.files[i]
        ab = read_image(f)
        w = ab.shape[1]
        if w % 2:
            raise DataError(f"{f}: width {w} is odd, expected an A|B side-by-side image")
        a, b = ab[:, : w // 2], ab[:, w // 2:]
        if self.direction == "BtoA":
            a, b = b, a
        if self.load_size is not None:
            a, b = _resize(a, self.load_size, False), _resize(b, self.load_size, False)
        if self.flip and random.random() < 0.5:
            a, b = a[:, ::-1], b[:, ::-1]
        return {"input": to_float_image(a), "target": to_float_image(b), "name": f.stem}
