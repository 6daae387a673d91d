"""Cityscapes label definitions and the layouts Cityscapes data comes in.

* the official download (``gtFine/<split>/<city>/*_gtFine_labelIds.png``,
  ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``): :func:`official_pairs`;
* the pix2pix "cityscapes" set (``<split>/N.jpg``: photo | ``gtFine_color`` label image, each half
  a 2:1 frame squeezed to 256x256, stored as JPEG): :class:`Pix2PixCityscapes`.

Label ids are the official ``labelIds`` (0..33). In colour label maps several ids share a colour
(the void ids 0-4 are black, pole and polegroup are grey): :data:`COLOR_IDS` maps every id to the
one id that represents its colour, so a model trained on colour labels and a full-resolution
``labelIds`` map see the same classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .io import DataError, PathLike, list_images, read_image

#: (labelId, name, trainId, colour) of cityscapesScripts ``labels.py`` (license plate, id -1, left out:
#: it has the colour of 'car').
CITYSCAPES_LABELS: Tuple[Tuple[int, str, int, Tuple[int, int, int]], ...] = (
    (0, "unlabeled", 255, (0, 0, 0)), (1, "ego vehicle", 255, (0, 0, 0)),
    (2, "rectification border", 255, (0, 0, 0)), (3, "out of roi", 255, (0, 0, 0)),
    (4, "static", 255, (0, 0, 0)), (5, "dynamic", 255, (111, 74, 0)), (6, "ground", 255, (81, 0, 81)),
    (7, "road", 0, (128, 64, 128)), (8, "sidewalk", 1, (244, 35, 232)), (9, "parking", 255, (250, 170, 160)),
    (10, "rail track", 255, (230, 150, 140)), (11, "building", 2, (70, 70, 70)), (12, "wall", 3, (102, 102, 156)),
    (13, "fence", 4, (190, 153, 153)), (14, "guard rail", 255, (180, 165, 180)), (15, "bridge", 255, (150, 100, 100)),
    (16, "tunnel", 255, (150, 120, 90)), (17, "pole", 5, (153, 153, 153)), (18, "polegroup", 255, (153, 153, 153)),
    (19, "traffic light", 6, (250, 170, 30)), (20, "traffic sign", 7, (220, 220, 0)),
    (21, "vegetation", 8, (107, 142, 35)), (22, "terrain", 9, (152, 251, 152)), (23, "sky", 10, (70, 130, 180)),
    (24, "person", 11, (220, 20, 60)), (25, "rider", 12, (255, 0, 0)), (26, "car", 13, (0, 0, 142)),
    (27, "truck", 14, (0, 0, 70)), (28, "bus", 15, (0, 60, 100)), (29, "caravan", 255, (0, 0, 90)),
    (30, "trailer", 255, (0, 0, 110)), (31, "train", 16, (0, 80, 100)), (32, "motorcycle", 17, (0, 0, 230)),
    (33, "bicycle", 18, (119, 11, 32)),
)

#: Number of label ids of the one-hot input of Cityscapes models (ids 0..33 and one spare, as the
#: reference ``label_nc=35``).
NUM_LABEL_IDS = 35

#: RGB colour of every label id (35, 3) uint8 (the spare id 34 is black).
PALETTE = np.zeros((NUM_LABEL_IDS, 3), dtype=np.uint8)
for _id, _, _, _c in CITYSCAPES_LABELS:
    PALETTE[_id] = _c

#: Lookup table id -> the first id of the same colour (0..34): the classes a colour label map can tell
#: apart. ids 1-4 -> 0 (black), 18 -> 17 (grey), 34 -> 0.
COLOR_IDS = np.zeros(NUM_LABEL_IDS, dtype=np.int64)
for _i in range(NUM_LABEL_IDS):
    COLOR_IDS[_i] = next(j for j in range(NUM_LABEL_IDS) if (PALETTE[j] == PALETTE[_i]).all())

#: The distinct colours (K, 3) and the id each stands for (K,).
_COLOR_KEYS = sorted({int(COLOR_IDS[i]) for i in range(NUM_LABEL_IDS)})
DISTINCT_COLORS = PALETTE[_COLOR_KEYS].astype(np.int64)
DISTINCT_IDS = np.asarray(_COLOR_KEYS, dtype=np.int64)

def colors_to_ids(rgb: np.ndarray, max_distance: float = 40.0) -> Tuple[np.ndarray, float]:
    """Map a Cityscapes colour label image to label ids by nearest palette colour.

    Args:
        rgb: (H, W, 3) uint8 colour label image (e.g. a JPEG ``gtFine_color``).
        max_distance: RGB Euclidean distance (0-255 scale) beyond which a pixel counts as far from
            every palette colour (blended boundary colours of a JPEG).

    Returns:
        (ids (H, W) int64 in :data:`DISTINCT_IDS`, share of pixels farther than ``max_distance``
        from their nearest palette colour, in [0, 1]).
    """
    flat = rgb.reshape(-1, 3).astype(np.int64)
    # unique colours first: a label image holds few distinct values, even as JPEG
    code = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    uniq, inv = np.unique(code, return_inverse=True)
    cols = np.stack([uniq >> 16, (uniq >> 8) & 255, uniq & 255], 1)
    d2 = ((cols[:, None, :] - DISTINCT_COLORS[None]) ** 2).sum(-1)  # (U, K)
    nearest = d2.argmin(1)
    far = d2[np.arange(len(uniq)), nearest] > max_distance ** 2
    ids = DISTINCT_IDS[nearest][inv].reshape(rgb.shape[:2])
    return ids, float(far[inv].mean())


def ids_to_colors(ids: np.ndarray) -> np.ndarray:
    """Label ids (H, W) in [0, 35) -> the Cityscapes colour image (H, W, 3) uint8."""
    return PALETTE[np.asarray(ids, dtype=np.int64)]


def is_palette_image(rgb: np.ndarray, max_far: float = 0.05) -> bool:
    """True when an RGB image (H, W, 3) uint8 looks like a Cityscapes colour label map: at most
    ``max_far`` of its pixels farther than 40 (RGB distance) from a palette colour."""
    return colors_to_ids(rgb)[1] <= max_far


def _resize_ids(ids: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    h, w = size
    ys = np.arange(h) * ids.shape[0] // h
    xs = np.arange(w) * ids.shape[1] // w
    return ids[ys][:, xs]


class Pix2PixCityscapes(Dataset):
    """The pix2pix Cityscapes set: ``folder/N.jpg`` = photo | colour label map, 256x256 halves.

    Each half is a 2:1 Cityscapes frame squeezed to a square; both are resized back to
    ``size`` (default 256x512: the photo bicubic, the label ids nearest). Colours become label ids
    by nearest palette colour (:func:`colors_to_ids`).

    Items: ``input`` (35, H, W) float32 one-hot in {0, 1}; ``target`` (3, H, W) float32 in
    [-1, 1]; ``label`` (H, W) int64 label ids; ``name`` the file stem. Files are sorted by their
    number (1.jpg, 2.jpg, ... 10.jpg).

    Args:
        folder: the split folder (``cityscapes_pix2pix/train`` or ``/val``).
        size: (H, W) of the items.
        flip: random horizontal flips.
        limit: use only the first ``limit`` files.
        cache: keep decoded files in memory (about 260 KB per pair).

    Raises:
        DataError: missing/empty folder; on access, an unreadable file or one that is not an
            A|B pair of equal halves (the message names the file).
    """

    num_classes = NUM_LABEL_IDS
    in_channels = NUM_LABEL_IDS

    def __init__(self, folder: PathLike, size: Tuple[int, int] = (256, 512), flip: bool = False,
                 limit: Optional[int] = None, cache: bool = True):
        files = list_images(folder)
        files.sort(key=lambda f: (int(f.stem) if f.stem.isdigit() else 1 << 60, f.name))
        self.files: List[Path] = files[:limit] if limit else files
        self.size, self.flip = tuple(size), flip
        self._cache: Optional[Dict[int, tuple]] = {} if cache else None
        self.far_share: Dict[int, float] = {}  # per file: share of pixels far from the palette

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> tuple:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        f = self.files[i]
        ab = read_image(f)
        h, w = ab.shape[:2]
        if w != 2 * h:
            raise DataError(f"{f}: size {w}x{h} is not a pix2pix A|B pair of two square halves")
        photo, colors = ab[:, :h], ab[:, h:]
        ids, far = colors_to_ids(colors)
        self.far_share[i] = far
        photo = np.asarray(Image.fromarray(photo).resize(self.size[::-1], Image.BICUBIC))
        item = (_resize_ids(ids, self.size).astype(np.uint8), photo)
        if self._cache is not None:
            self._cache[i] = item
        return item

    def __getitem__(self, i: int) -> dict:
        from .datasets import label_photo_item

        ids, photo = self._load(i)
        return label_photo_item(ids, photo, NUM_LABEL_IDS, self.files[i].stem, self.flip)


def official_pairs(root: PathLike, split: str = "train") -> list:
    """Pairs of the official Cityscapes download under ``root``: label maps
    ``gtFine/<split>/<city>/*_gtFine_labelIds.png`` (searched recursively), their
    ``*_gtFine_instanceIds.png`` and the photos ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``.

    Returns:
        [:class:`asapnet.data.datasets.Pair`] sorted by name; ``instance`` / ``image`` are
        ``None`` where that file is absent (e.g. no ``leftImg8bit`` for a label-only download).

    Raises:
        DataError: no ``gtFine/<split>`` folder, no label maps in it, or a photo folder that lacks
            the photo of a label map (naming it).
    """
    from .datasets import Pair

    root = Path(root)
    gt = root / "gtFine" / split
    if not gt.is_dir():
        raise DataError(f"{gt}: folder not found (expected the official Cityscapes layout gtFine/<split>/<city>/)")
    labels = sorted(gt.rglob("*_gtFine_labelIds.png"))
    if not labels:
        raise DataError(f"{gt}: no *_gtFine_labelIds.png files")
    img_dir = root / "leftImg8bit" / split
    photos = {p.name[: -len("_leftImg8bit.png")]: p for p in img_dir.rglob("*_leftImg8bit.png")} if img_dir.is_dir() else {}
    pairs = []
    for lab in labels:
        stem = lab.name[: -len("_gtFine_labelIds.png")]
        inst = lab.with_name(f"{stem}_gtFine_instanceIds.png")
        if photos and stem not in photos:
            raise DataError(f"{lab}: no photo {stem}_leftImg8bit.png under {img_dir}")
        pairs.append(Pair(stem, lab, inst if inst.is_file() else None, photos.get(stem)))
    return pairs

