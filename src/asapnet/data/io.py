"""Reading images and label maps with one clear error per bad file.

Every read checks the image size stored in the file's header before decoding it: an image of more
than :func:`max_pixels` pixels (default :data:`DEFAULT_MAX_PIXELS` = 8192 x 8192, which takes
full-resolution 2048 x 1024 Cityscapes frames and 4096 x 4096 images and refuses 9000 x 9000) is a
:class:`DataError` naming the file, its size and the limit. Raise the limit with the environment
variable ``ASAPNET_MAX_PIXELS`` (a number of pixels, e.g. ``ASAPNET_MAX_PIXELS=200000000``) or, in
Python, by setting ``asapnet.data.io.MAX_PIXELS``. This limit replaces Pillow's decompression-bomb
warning (``PIL.Image.MAX_IMAGE_PIXELS``, 89 M pixels); Pillow's decompression-bomb error (more than
twice that) becomes the same :class:`DataError`.

Output images are written with :func:`write_image`: to a temporary file in the destination folder,
then renamed over the destination, so a full disk or a crash leaves the previous file (or none),
never a truncated one.
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

#: Largest image read by default, in pixels (width x height): 8192 x 8192 = 67,108,864.
DEFAULT_MAX_PIXELS = 8192 * 8192
#: Environment variable that raises (or lowers) the limit, in pixels.
MAX_PIXELS_ENV = "ASAPNET_MAX_PIXELS"
#: Limit set in Python (pixels); ``None``: ``$ASAPNET_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`.
MAX_PIXELS: Optional[int] = None

#: Formats Pillow reports for JPEG files (MPO: multi-picture JPEG, written by some cameras).
JPEG_FORMATS = ("JPEG", "MPO")


class DataError(ValueError):
    """A data file is missing, unreadable or inconsistent. The message names the file."""


def max_pixels() -> int:
    """The largest image (width x height, in pixels) :func:`read_image` and :func:`read_label`
    decode: :data:`MAX_PIXELS` if set, else ``$ASAPNET_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        DataError: ``ASAPNET_MAX_PIXELS`` (or ``MAX_PIXELS``) is not a positive integer.
    """
    if MAX_PIXELS is not None:
        value, source = MAX_PIXELS, "asapnet.data.io.MAX_PIXELS"
    else:
        value, source = os.environ.get(MAX_PIXELS_ENV, "").strip(), MAX_PIXELS_ENV
        if not value:
            return DEFAULT_MAX_PIXELS
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        n = 0
    if n <= 0:
        raise DataError(f"{source}: expected a positive number of pixels (e.g. {DEFAULT_MAX_PIXELS}), got {value!r}")
    return n


def _raise_hint() -> str:
    where = "asapnet.data.io.MAX_PIXELS" if MAX_PIXELS is not None else f"the environment variable {MAX_PIXELS_ENV}"
    return f"to read it, set {where} to a larger number of pixels"


def check_image_size(path: PathLike, size: Tuple[int, int], limit: Optional[int] = None) -> None:
    """Refuse an image of ``size`` (width, height) read from ``path`` when it has more than
    ``limit`` (default :func:`max_pixels`) pixels.

    Raises:
        DataError: naming the file, its size, the limit and how to raise it.
    """
    limit = max_pixels() if limit is None else limit
    w, h = int(size[0]), int(size[1])
    if w * h > limit:
        raise DataError(f"{path}: image too large: {w}x{h} = {w * h:,} pixels, more than the limit of {limit:,} "
                        f"pixels; {_raise_hint()}")


def _pillow_too_large(p: Path, e: Exception, limit: int) -> DataError:
    """DataError for Pillow's DecompressionBombError/Warning, which give the pixel count only."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    pixels = int(m.group(1)) if m else None
    if pixels is not None and pixels > limit:
        return DataError(f"{p}: image too large: {pixels:,} pixels, more than the limit of {limit:,} pixels; "
                         f"{_raise_hint()}")
    return DataError(f"{p}: image too large for Pillow's decompression-bomb limit "
                     f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}; raise it as well as {MAX_PIXELS_ENV}): "
                     f"{' '.join(str(e).split())}")


def _open(path: PathLike) -> Image.Image:
    """Open and decode ``path`` after checking its header's size against :func:`max_pixels`."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected an image file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file (0 bytes)")
    limit = max_pixels()
    img = None
    try:
        with warnings.catch_warnings():
            # our limit decides (it is below Pillow's warning threshold unless the user raised it);
            # Pillow's DecompressionBombError (over twice its threshold) is turned into a DataError below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)  # reads the header only
            check_image_size(p, img.size, limit)  # before anything is decoded or allocated
            img.load()
    except DataError:
        if img is not None:
            img.close()
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if img is not None:
            img.close()
        raise _pillow_too_large(p, e, limit) from None
    except (OSError, SyntaxError, ValueError) as e:
        if img is not None:
            img.close()
        raise DataError(f"{p}: cannot read image (corrupt or truncated?): {e}") from None
    return img


def read_image(path: PathLike, channels: int = 3) -> np.ndarray:
    """Read an image as uint8 (H, W, channels), 0-255.

    ``channels`` is 3 (RGB; gray is replicated, alpha dropped) or 1 (gray, luminance).
    16-bit images are scaled to 8 bits.

    Raises:
        DataError: missing, empty, corrupt file, or one of more than :func:`max_pixels` pixels
            (checked in the header, before decoding; the message names the file).
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

    JPEG files are refused, whatever their extension (the format Pillow reports decides): JPEG
    compression changes pixel values at class boundaries, so the ids (or colours) read back are not
    the ones written. Datasets stored as JPEG by design (the pix2pix Cityscapes A|B images) are
    read with :func:`read_image` and mapped to the nearest palette colour by their own loader.

    Raises:
        DataError: unreadable file, a file of more than :func:`max_pixels` pixels (checked in the
            header, before decoding), a JPEG file, an RGB map without palette, or a colour not in
            the palette.
    """
    img = _open(path)
    p = Path(path)
    if img.format in JPEG_FORMATS:
        img.close()
        raise DataError(f"{p}: is a JPEG image, not a lossless label map: JPEG compression changes label ids "
                        "(at class boundaries); save label and instance maps as PNG")
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


def check_output_paths(plan: Sequence[Tuple[PathLike, Sequence[PathLike]]], protected: Sequence[PathLike] = ()) -> None:
    """Refuse, before anything is written, a batch whose outputs would overwrite an input or
    each other: the one check shared by every command that writes files from files.

    Args:
        plan: (input file, [the output files it will write]) for every input.
        protected: other files the batch reads (e.g. instance maps) that must not be overwritten.

    Raises:
        DataError: naming the input and the output it would destroy (an input file, a protected
            file, or another input's output; e.g. ``-o`` the input folder, or two inputs with the
            same file name from different folders).
    """
    # (a missing input is reported by its reader, as "file not found")
    sources = {Path(p).resolve() for p in [*(p for p, _ in plan), *protected] if Path(p).exists()}
    owner: dict = {}
    for src, outs in plan:
        src = Path(src)
        for out in outs:
            out = Path(out)
            r = out.resolve()
            if r in sources:
                raise DataError(f"{src}: its output {out} would overwrite an input file; choose another -o folder")
            prev = owner.get(r)
            if prev is not None and prev.resolve() != src.resolve():
                raise DataError(f"{src}: its output {out} would overwrite the output of {prev} "
                                "(two inputs with the same name); write them to different folders")
            owner[r] = src


def check_parent_folders(path: PathLike, action: str) -> None:
    """Refuse a ``path`` to be created whose nearest existing ancestor is not a folder (a regular
    file on the way: ``notes.txt/out.png``), before any work.

    Raises:
        DataError: ``"<path>: cannot <action>: <ancestor> is a regular file"``.
    """
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"{path}: cannot {action}: {parent} is a regular file")
            return


def check_output_folder(out: PathLike, option: str = "-o") -> None:
    """Refuse an output folder ``out`` that is an existing file, or lies below one, before any
    model work (the folder itself is created when the first image is written).

    Raises:
        DataError: naming ``out`` (or the file above it) and the problem.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: {option} must be a folder and this is an existing file; choose another {option}")
        return
    check_parent_folders(out, f"create the {option} folder")


#: Pillow format written for each output suffix :func:`write_image` accepts.
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def _new_file_mode() -> int:
    """Permissions of a file created now with ``open()``: 0o666 less the process umask (read from
    /proc where possible: ``os.umask`` cannot be read without being set, which is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def write_image(path: PathLike, array: np.ndarray) -> Path:
    """Write an 8-bit image atomically: PNG or JPEG, chosen by the suffix of ``path``.

    The image is written to a temporary file ``.<name>.<random>.tmp`` in the destination folder
    (created if missing), flushed to disk and renamed over ``path`` (``os.replace``): after an error
    or a crash ``path`` is either its previous content (or absent) or the complete new image, never
    a truncated file, and the temporary file is removed on any error. A new file gets the usual
    permissions (0o666 less the umask); a replaced file keeps its permissions.

    Args:
        path: destination file; suffix ``.png``, ``.jpg`` or ``.jpeg`` (any case). JPEG is written
            at Pillow's default quality (75): lossy, never use it for label maps.
        array: ``numpy.uint8`` array, 0-255: (H, W) gray, (H, W, 1) gray or (H, W, 3) RGB; H, W >= 1.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``array`` is not a numpy uint8 array (convert and clip first:
            ``np.clip(x, 0, 255).round().astype(np.uint8)``).
        ValueError: ``array`` has another shape.
        DataError: ``path`` has another suffix, or it cannot be written: one line naming ``path``
            and the OS problem (e.g. ``out/a.png: cannot write image: No space left on device``,
            ``Permission denied``, ``Is a directory``, or ``its folder F cannot be created: it, or a
            folder above it, is a regular file``). The previous file at ``path``, if any, is unchanged.
    """
    p = Path(path)
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        what = (f"{type(array).__name__} of dtype {array.dtype}" if isinstance(array, np.ndarray)
                else type(array).__name__)
        raise TypeError(f"{p}: write_image expects a numpy uint8 array (0-255), got a {what}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)) or 0 in array.shape:
        raise ValueError(f"{p}: write_image expects an (H, W), (H, W, 1) or (H, W, 3) array, "
                         f"got shape {tuple(array.shape)}")
    fmt = WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise DataError(f"{p}: cannot write image: unsupported suffix {p.suffix!r} (use .png, .jpg or .jpeg)")
    img = Image.fromarray(np.ascontiguousarray(array))
    tmp: Optional[str] = None
    try:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # the folder, or one above it, is a regular file
            raise NotADirectoryError(errno.ENOTDIR, f"its folder {p.parent} cannot be created: it, or a folder "
                                                    "above it, is a regular file") from None
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            img.save(f, format=fmt)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = p.stat().st_mode & 0o777 if p.is_file() else _new_file_mode()
        except OSError:
            mode = _new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, p)
        tmp = None
    except OSError as e:
        reason = e.strerror or " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{p}: cannot write image: {reason}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass  # already gone (e.g. its folder was removed)
    return p
