"""Label map -> photo translation with a trained generator (``asapnet translate``)."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...console import skipped_status
from ...data.cityscapes import COLOR_IDS, NUM_LABEL_IDS, colors_to_ids
from ...data.datasets import _stem
from ...data.io import DataError, check_output_folder, check_output_paths, read_image, read_label, write_image
from ...data.labels import instance_edges
from ...options import shipped_weights
from .config import TranslateRunOptions

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "cityscapes.safetensors"


def default_checkpoint() -> Path:
    """Path of the Cityscapes model shipped inside the package (``asapnet/weights``)."""
    return shipped_weights(DEFAULT_CHECKPOINT)


def find_instance_map(label_path: Path, instance_dir: Optional[Path] = None) -> Optional[Path]:
    """Instance map belonging to a label map: same stem in ``instance_dir``, or the Cityscapes
    ``*_gtFine_instanceIds.png`` next to it or in the sibling ``*_inst`` folder.

    The label map itself is never its own instance map: when ``instance_dir`` is the label map's
    folder and ``<stem>*`` matches nothing there but the label map, it is refused.

    Raises:
        DataError: ``instance_dir`` would give the label map itself as its instance map (the
            message names both).
    """
    label_path = Path(label_path)
    stem = _stem(label_path)
    cands: List[Path] = []
    if instance_dir is not None:
        cands += sorted(Path(instance_dir).glob(f"{stem}*"))
    name = f"{stem}_gtFine_instanceIds.png"
    parent = label_path.parent
    cands.append(parent / name)
    if parent.name.endswith("_label"):
        cands.append(parent.parent / (parent.name[: -len("_label")] + "_inst") / name)
    matches = [c for c in cands if c.is_file() and _stem(c) == stem]
    me = label_path.resolve() if label_path.exists() else None
    found = next((c for c in matches if c.resolve() != me), None)
    if found is None and matches:  # only the label map itself matched
        if instance_dir is not None and Path(instance_dir).resolve() == label_path.parent.resolve():
            raise DataError(f"{label_path}: --instance-dir {instance_dir} is the label maps' own folder: the label "
                            "map would be its own instance map; give the folder of the instance maps (or no "
                            "--instance-dir)")
        raise DataError(f"{label_path}: is named like its own instance map ({matches[0].name}); give the label map "
                        "(*_gtFine_labelIds.png), not the instance map")
    return found


def label_ids_from_array(arr: np.ndarray, num_classes: int, merge: Optional[str] = None,
                         source: str = "label map") -> np.ndarray:
    """Class ids (H, W) int64 in [0, num_classes) of a label array, as a model expects them.

    ``arr`` holds class ids (H, W) of an integer type, or, for Cityscapes models
    (``num_classes == 35``), a Cityscapes colour label map (H, W, 3) uint8: every pixel gets the
    id of its nearest palette colour. ``merge="cityscapes-color"`` (models trained on colour label
    maps) maps ids that share a colour to one id (:data:`asapnet.data.cityscapes.COLOR_IDS`);
    ``merge="cmp-facades"``: ``arr`` holds CMP Facades ids 1..12, as in the dataset's files,
    read as the model's classes 0..11. ``source`` names the input in error messages.

    Raises:
        DataError: an RGB array that is not a Cityscapes colour map (e.g. a photo), a shape or
            dtype that is not a label map, an id out of range.
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and num_classes == NUM_LABEL_IDS and merge != "cmp-facades":
        arr, far = colors_to_ids(np.ascontiguousarray(arr[..., :3]).astype(np.uint8))
        if far > 0.05:
            raise DataError(f"{source}: is an RGB colour image, not a label map of class ids, nor a Cityscapes "
                            f"colour label map ({far:.0%} of its pixels are far from every Cityscapes colour)")
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise DataError(f"{source}: expected class ids (H, W) of an integer type, got shape {arr.shape} {arr.dtype}")
    label = arr.astype(np.int64)
    lo, hi = (1, num_classes) if merge == "cmp-facades" else (0, num_classes - 1)
    if label.size and (label.min() < lo or label.max() > hi):
        bad = int(label.max() if label.max() > hi else label.min())
        allowed = f"[1, {num_classes}] (CMP Facades ids)" if merge == "cmp-facades" else f"[0, {num_classes})"
        raise DataError(f"{source}: label id {bad} out of range {allowed}")
    if merge == "cmp-facades":  # CMP Facades files hold ids 1..12; the model's classes are 0..11
        return label - 1
    if merge == "cityscapes-color":
        return COLOR_IDS[label]
    return label


def read_label_ids(label_path: Path, num_classes: int, merge: Optional[str] = None) -> np.ndarray:
    """Read a label map file as class ids (H, W) int64 in [0, num_classes).

    Index PNGs (Cityscapes ``*_gtFine_labelIds.png``, palette-mode PNGs) are read as they are;
    for Cityscapes models an RGB image in the Cityscapes colours (``*_gtFine_color.png``) is
    accepted too. ``merge`` as in :func:`label_ids_from_array`.

    Raises:
        DataError: unreadable file, an RGB image that is not a Cityscapes colour map (e.g. a
            photo), an id out of range (the message names the file).
    """
    try:
        arr = read_label(label_path)
    except DataError as e:
        if num_classes != NUM_LABEL_IDS or merge == "cmp-facades" or "RGB colour image" not in str(e):
            raise
        arr = read_image(label_path)
    return label_ids_from_array(arr, num_classes, merge, source=str(label_path))


def encode_labels(label: np.ndarray, num_classes: int, use_instance: bool, instance: Optional[np.ndarray] = None,
                  source: str = "label map", instance_source: str = "instance map",
                  log: Optional[Callable[[str], None]] = None) -> torch.Tensor:
    """One-hot generator input (1, num_classes [+1], H, W) float32 in {0, 1} of class ids
    ``label`` (H, W) int64, plus the instance-edge channel of ``instance`` (H, W) when the model
    has one (:func:`asapnet.data.labels.instance_edges`, SPADE/pix2pixHD's edges).

    Without an instance map the edges of the label map itself (boundaries between classes) are
    used, with one line through ``log``; without ``log`` that is an error.

    Raises:
        DataError: a missing instance map (without ``log``) or an instance map of another size.
    """
    lab = torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))
    x = torch.zeros(1, num_classes, *lab.shape)
    x.scatter_(1, lab[None, None], 1.0)
    if not use_instance:
        return x
    if instance is None:
        if log is None:
            raise DataError(f"{source}: this model needs an instance map and none was found "
                            "(give --instance-dir, or place *_gtFine_instanceIds.png next to it)")
        log(f"warning: {Path(source).name}: no instance map found; using the label boundaries as instance edges")
        edges = instance_edges(label)
    else:
        instance = np.asarray(instance)
        if instance.shape != label.shape:
            raise DataError(f"{instance_source}: size {instance.shape[1]}x{instance.shape[0]} does not match "
                            f"label map {source} ({label.shape[1]}x{label.shape[0]})")
        edges = instance_edges(instance)
    return torch.cat([x, torch.from_numpy(edges)[None, None]], 1)


def label_to_input(label_path: Path, num_classes: int, use_instance: bool,
                   instance_path: Optional[Path] = None, merge: Optional[str] = None,
                   log: Optional[Callable[[str], None]] = None) -> torch.Tensor:
    """Read a label map file (+ instance map file) into a generator input (1, num_classes [+1],
    H, W), float32 one-hot in {0, 1} (+ the instance-edge channel in {0, 1}):
    :func:`read_label_ids` then :func:`encode_labels`.

    Raises:
        DataError: unreadable file, id out of range, a missing instance map (without ``log``),
            or a size mismatch.
    """
    label = read_label_ids(label_path, num_classes, merge)
    inst = read_label(instance_path) if (use_instance and instance_path is not None) else None
    return encode_labels(label, num_classes, use_instance, inst, str(label_path), str(instance_path), log)


#: How :func:`run_generator` reaches an input larger than the model's training size.
MODES = ("auto", "pixelwise", "native", "bilinear")


def upscale_factor(input_hw: Tuple[int, int], train_hw: Optional[Sequence[int]]) -> int:
    """Power of two r >= 1 closest to input height / training height (1 without a training size)."""
    if not train_hw:
        return 1
    ratio = input_hw[0] / float(train_hw[0])
    return max(1, 2 ** int(round(math.log2(ratio)))) if ratio > 0 else 1


@torch.no_grad()
def run_generator(model: nn.Module, x: torch.Tensor, train_hw: Optional[Sequence[int]] = None,
                  mode: str = "auto") -> torch.Tensor:
    """Translate a one-hot input (N, C, H, W) into (N, 3, H, W) in [-1, 1] at the input's size.

    ``train_hw`` is the (H, W) the model was trained at; r = :func:`upscale_factor`. Modes:

    * ``pixelwise`` (``auto`` for ASAP-Net when r > 1): the LR stream at the training scale,
      the per-pixel MLPs at full resolution with sub-pixel positional encoding
      (:meth:`asapnet.models.asap.ASAPGenerator.forward_upscaled`): edges follow the
      full-resolution labels;
    * ``bilinear`` (``auto`` for other generators when r > 1): translate the input downsampled
      by r (nearest) and upsample the output bilinearly;
    * ``native``: run the model on the input as it is (the model sees objects r times larger
      than in training).

    Raises:
        ValueError: unknown mode, or ``pixelwise`` for a generator other than ASAP-Net.
    """
    from ...models.asap import ASAPGenerator

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    r = upscale_factor(tuple(x.shape[-2:]), train_hw)
    is_asap = isinstance(model, ASAPGenerator)
    if mode == "auto":
        mode = "native" if r == 1 else ("pixelwise" if is_asap else "bilinear")
    if mode == "pixelwise":
        if not is_asap:
            raise ValueError("mode 'pixelwise' needs an ASAP-Net generator")
        return model.forward_upscaled(x, r)
    if mode == "bilinear" and r > 1:
        H, W = x.shape[-2:]
        small = F.interpolate(x, size=(max(1, round(H / r)), max(1, round(W / r))), mode="nearest-exact")
        return F.interpolate(model(small), size=(H, W), mode="bilinear", align_corners=False).clamp(-1, 1)
    return model(x)


def model_train_size(meta: Dict) -> Optional[Tuple[int, int]]:
    """(H, W) a generator was trained at, from its metadata (``train_size`` or the training
    config's ``load_size``); ``None`` if unknown."""
    for cand in (meta.get("train_size"), (meta.get("train") or {}).get("load_size")):
        if cand:
            return int(cand[0]), int(cand[1])
    return None


def save_rgb(y: torch.Tensor, path: Path) -> None:
    """Write a (1 or 3, H, W) image in [-1, 1] as 8-bit PNG/JPEG, atomically
    (:func:`asapnet.data.io.write_image`: a full disk is a DataError, never a truncated file)."""
    arr = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    write_image(path, arr)


def output_name(label_path: Path) -> str:
    return _stem(label_path) + ".png"


def check_output_names(inputs: List[Path], out_dir: Path, protected: Sequence[Path] = ()) -> None:
    """Refuse a batch in which two inputs map to the same output, or an output would overwrite
    an input or a ``protected`` file such as an instance map (e.g. ``-o`` the input folder):
    :func:`asapnet.data.io.check_output_paths`.

    Raises:
        DataError: naming both files.
    """
    check_output_paths([(p, [out_dir / output_name(p)]) for p in inputs], protected)


@torch.no_grad()
def translate_files(model: nn.Module, meta: Dict, inputs: Iterable[Path], out_dir: Path,
                    instance_dir: Optional[Path] = None, on_error: str = "stop",
                    log: Optional[Callable[[str], None]] = None, mode: str = "auto",
                    device: Optional[torch.device | str] = None) -> List[Tuple[Path, float]]:
    """Translate label-map files into photos written to ``out_dir/<stem>.png``, at the label
    maps' own size (``mode``: see :func:`run_generator`).

    ``model`` may be the :class:`~asapnet.inference.optimize.CastInference` wrapper of
    ``optimize_for_inference(model, precision="bf16" | "fp16")``: the generator inside then runs
    in that dtype (ASAP-Net keeps its ``pixelwise`` mode). Inputs go to ``device`` (default: the
    device of ``model``'s weights; move the model first), outputs come back to the CPU as float32
    to be saved. ``log`` gets one line per file, the skipped files and the missing-instance-map
    warnings; by default the line per file is an INFO record of this module's logger and the
    skipped files and warnings are WARNING records (shown with ``asapnet -q``). With more than one
    input a progress bar runs on stderr (:func:`asapnet.console.progress`). Images are written
    atomically (:func:`asapnet.data.io.write_image`).

    Returns:
        [(output path, milliseconds of the forward pass)] for the files translated.

    Raises:
        DataError: a bad input file when ``on_error="stop"`` (outputs already written are kept);
            with ``on_error="skip"`` the file is reported through ``log`` and skipped. Also, whatever
            ``on_error``: an output that cannot be written (e.g. a full disk), an output that would
            overwrite an input, an ``instance_dir`` that is the label maps' own folder.
    """
    from ...checkpoint import require_translator
    from ...console import progress
    from ...inference.optimize import CastInference, model_device, synchronize

    info = log or logger.info
    warn = log or logger.warning
    # a low-precision wrapper: run its generator directly (run_generator needs the ASAP-Net
    # itself for the pixelwise mode), on inputs cast to its dtype
    generator, dtype = (model.model, model.dtype) if isinstance(model, CastInference) else (model, None)
    device = model_device(generator) if device is None else torch.device(device)
    num_classes, use_instance = require_translator(generator, meta, meta.get("path", "checkpoint"))
    inputs = [Path(p) for p in inputs]
    instances = {p: find_instance_map(p, instance_dir) if use_instance else None for p in inputs}
    # never overwrite a label or instance map
    check_output_names(inputs, Path(out_dir), [m for m in instances.values() if m is not None])
    done = []
    for path in progress(inputs, desc="translate", unit="img") if len(inputs) > 1 else inputs:
        try:
            x = label_to_input(path, num_classes, use_instance, instances[path],
                               merge=meta.get("label_ids"), log=warn)
        except DataError as e:
            if on_error == "skip":
                warn(f"skipped {e}")
                continue
            raise
        x = x.to(device=device, dtype=dtype)
        t = time.perf_counter()
        y = run_generator(generator, x, model_train_size(meta), mode)
        synchronize(y.device)
        ms = (time.perf_counter() - t) * 1000
        y = y.float().cpu()
        out = Path(out_dir) / output_name(path)
        save_rgb(y[0], out)
        info(f"{path.name} -> {out} ({y.shape[-1]}x{y.shape[-2]}) in {ms:.0f} ms")
        done.append((out, ms))
    return done


def cmd_translate(opts: TranslateRunOptions) -> int:
    """``asapnet translate``: label maps -> photos with a translator checkpoint, on ``--device`` in
    ``--precision`` (:func:`asapnet.inference.optimize.optimize_for_inference`)."""
    import torch

    from ...options import check_precision
    from ...checkpoint import load_generator, require_translator
    from ...inference.optimize import optimize_for_inference

    device, precision = opts.device, opts.precision
    check_precision(precision, device)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    check_output_folder(opts.out)  # before any model work
    ckpt = Path(opts.checkpoint) if opts.checkpoint else default_checkpoint()
    model, meta = load_generator(ckpt)
    require_translator(model, meta, ckpt)
    # eval mode, spectral norm folded; bf16 / fp16: the whole model in that dtype (CastInference)
    model = optimize_for_inference(model.to(device), precision=precision)
    extra = "" if device == "cpu" and precision == "fp32" else f", {device}, {precision}"
    logger.info(f"model: {ckpt} ({meta['model']}, step {meta.get('step', '?')}{extra})")
    done = translate_files(model, meta, opts.inputs, Path(opts.out), opts.instance_dir, opts.on_error, mode=opts.mode,
                           device=device)
    logger.info(f"wrote {len(done)} image(s) to {opts.out}")
    return skipped_status(len(opts.inputs), len(done), logger)  # --on-error skip: 1 when any was skipped
