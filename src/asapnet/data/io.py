"""Reading images and label maps with one clear error per bad file."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A data file is missing, unreadable or inconsistent. The message names the file."""


def _open(path: PathLike) -> Image.Image:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected an image file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(p)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{p}: image too large (possible decompression bomb): {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{p}: cannot read image (corrupt or truncated?): {e}") from None
    return img


def read_image(path: PathLike, channels: int = 3) -> np.ndarray:
    """Read an image as uint8 (H, W, channels), 0-255.

    ``channels`` is 3 (RGB; gray is replicated, alpha dropped) or 1 (gray, luminance).
    16-bit images are scaled to 8 bits.

    Raises:
        DataError: missing, empty, corrupt or oversized file (the message names the file).
    """
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        arr = arr / (65535.0 if arr.max() > 255 else 255.0) * 255.0
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    if channels == 3:
        arr = np.asarray(img.convert("RGB"))
    elif channels == 1:
        arr = np.asarray(img.convert("L"))[..., None]
    else:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return np.ascontiguousarray(arr)


def read_label(path: PathLike, palette: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """Read a label map as int64 (H, W) of class ids.

    Index images (8/16/32-bit gray, or palette 'P' PNGs whose pixel values are the ids) are read
    as is. RGB colour label maps need ``palette``: a list of (r, g, b), the i-th colour is id i.

    Raises:
        DataError: unreadable file, an RGB map without palette, or a colour not in the palette.
    """
    img = _open(path)
    p = Path(path)
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img.convert("RGB"))
        if palette is None:
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
                return rgb[..., 0].astype(np.int64)
            raise DataError(f"{p}: is an RGB colour image, not a label map of class ids "
                            "(give a palette to map colours to ids)")
        pal = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
        code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
        order = np.argsort(keys)
        pos = np.clip(np.searchsorted(keys[order], code), 0, len(keys) - 1)
        found = keys[order][pos] == code
        if not found.all():
            y, x = np.argwhere(~found)[0]
            raise DataError(f"{p}: colour {tuple(rgb[y, x])} at (row {y}, col {x}) is not in the palette")
        return order[pos].astype(np.int64)
    if img.mode == "LA":
        img = img.convert("L")
    if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise DataError(f"{p}: unsupported label-map mode {img.mode!r}")
    return np.asarray(img).astype(np.int64)


def list_images(folder: PathLike) -> list:
    """Sorted image files of ``folder``. Raises DataError if missing or empty."""
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"{d}: folder not found")
    files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
    if not files:
        raise DataError(f"{d}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files
