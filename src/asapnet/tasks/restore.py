"""The per-file loop shared by image restoration commands (``asapnet deblur``, ``asapnet denoise``).

:func:`restore_files` reads each file, optionally degrades it deterministically (then the file is
taken as the clean reference), runs the model, saves ``<stem>.png`` (and ``<stem><suffix>.png``
for the degraded input) and logs one line per file. The task modules pass their own reader,
degradation, forward, writer and metric (:func:`asapnet.tasks.deblur.run.deblur_files`,
:func:`asapnet.tasks.denoise.run.denoise_files`). Also shared by both commands: the check that a
checkpoint is a restorer of the task (:func:`require_restorer`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..console import progress as _progress
from ..data.io import DataError, PathLike, check_output_paths
from ..options import ON_ERROR_CHOICES

if TYPE_CHECKING:  # torch is only needed by the callers' functions
    import torch
    import torch.nn as nn


def restore_files(model: "nn.Module", inputs: Sequence[PathLike], out_dir: PathLike, *,
                  read: Callable[[Path], "torch.Tensor"],
                  degrade: Optional[Callable[["torch.Tensor", Path], "torch.Tensor"]],
                  run: Callable[["nn.Module", "torch.Tensor"], "torch.Tensor"],
                  save: Callable[["torch.Tensor", Path], None],
                  measure: Callable[["torch.Tensor", "torch.Tensor"], Tuple[float, ...]],
                  degraded_suffix: str, psnr_key: str, desc: str, logger: logging.Logger,
                  device: Optional["torch.device | str"] = None, on_error: str = "stop") -> List[Dict[str, Any]]:
    """Restore image files into ``out_dir/<stem>.png``.

    Args:
        read: file -> (C, H, W) image.
        degrade: ``(image, file) -> degraded image`` (deterministic in the file's stem), or None
            when the inputs are already degraded photos.
        run: ``(model, (1, C, H, W) input on device) -> (1, C, H, W) output``.
        save: writes a (C, H, W) image to a path.
        measure: ``(output, reference) -> (psnr, ...)``.
        degraded_suffix: with ``degrade``, the degraded input is saved as ``<stem><suffix>.png``.
        psnr_key: with ``degrade``, the row key of the degraded input's PSNR (``"psnr"`` is the output's).
        desc: progress bar label (a bar only for more than one file).
        logger: where the INFO line per file goes.
        device: where the inputs go (default: the device of ``model``'s weights).
        on_error: a file that cannot be read (a :class:`DataError` of ``read``): ``"stop"`` raises
            it (the outputs already written are kept), ``"skip"`` logs ``skipped FILE: problem`` as
            a WARNING and goes on with the next file.

    Returns:
        one dict per file restored: ``{"input", "output", "ms"}`` (+ ``psnr_key``, ``"psnr"`` with
        ``degrade``); with ``on_error="skip"`` the skipped files have none.

    Raises:
        DataError: before anything is written, when an output would overwrite an input file or
            another input's output (:func:`asapnet.data.io.check_output_paths`); a bad input file
            with ``on_error="stop"``; an output that cannot be written (``save``, e.g. a full disk).
        ValueError: an unknown ``on_error``.
    """
    from ..inference.optimize import model_device, synchronize

    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    out_dir = Path(out_dir)
    device = model_device(model) if device is None else device
    done = []
    files = [Path(f) for f in inputs]
    # nothing is written before every output is known not to overwrite an input or another output
    check_output_paths([(f, [out_dir / f"{f.stem}.png"] + ([out_dir / f"{f.stem}{degraded_suffix}.png"]
                                                          if degrade is not None else [])) for f in files])
    for f in _progress(files, desc=desc, unit="img") if len(files) > 1 else files:
        try:
            ref = read(f)
        except DataError as e:
            if on_error != "skip":
                raise
            logger.warning(f"skipped {e}")
            continue
        x = degrade(ref, f) if degrade is not None else ref
        t0 = time.perf_counter()
        y = run(model, x[None].to(device))[0]
        synchronize(y.device)
        ms = (time.perf_counter() - t0) * 1e3
        y = y.cpu()
        row: Dict[str, Any] = {"input": str(f), "output": str(out_dir / f"{f.stem}.png"), "ms": ms}
        save(y, out_dir / f"{f.stem}.png")
        if degrade is not None:
            save(x, out_dir / f"{f.stem}{degraded_suffix}.png")
            row[psnr_key] = measure(x, ref)[0]
            row["psnr"] = measure(y, ref)[0]
        extra = f"  PSNR {row[psnr_key]:.2f} -> {row['psnr']:.2f} dB" if "psnr" in row else ""
        logger.info(f"{row['input']} -> {row['output']} ({row['ms']:.0f} ms){extra}")
        done.append(row)
    return done


def require_restorer(model: "nn.Module", meta: Dict[str, Any], path: PathLike, task: str, channels: int) -> None:
    """Check that generator ``model`` of checkpoint ``path`` (as :func:`asapnet.checkpoint.load_generator`
    returned them) is an image restorer for ``task`` (``"denoise"``: gray images, ``channels`` 1;
    ``"deblur"``: RGB, ``channels`` 3): not a label-map-to-photo translator, not the other task's
    checkpoint, ``channels`` input and output channels.

    Raises:
        ValueError: one line naming ``path``, what the checkpoint is and which command takes it.
    """
    name = meta.get("model", type(model).__name__)
    other = meta.get("task")
    commands = {"denoise": "asapnet denoise", "deblur": "asapnet deblur", "translate": "asapnet translate",
                "segment": "asapnet evaluate --segmenter"}
    cfg = getattr(model, "cfg", None)
    in_ch = getattr(cfg, "in_channels", getattr(model, "in_channels", None))
    out_ch = getattr(cfg, "out_channels", getattr(model, "out_channels", None))
    is_translator = other == "translate" or (other is None and (meta.get("num_classes") is not None
                                                              or "use_instance" in meta or "label_ids" in meta))
    if is_translator:
        classes = meta.get("num_classes")
        what = f"{classes} label classes" if isinstance(classes, int) else f"{in_ch} input channels"
        raise ValueError(f"{path}: is a label-map-to-photo translator ({name}, {what}), not a "
                         f"{'denoiser' if task == 'denoise' else 'deblurrer'}; use 'asapnet translate' with it")
    if other not in (None, task):
        hint = f"; use '{commands[other]}' with it" if other in commands else ""
        raise ValueError(f"{path}: is a {other} checkpoint ({name}), not a "
                         f"{'denoiser' if task == 'denoise' else 'deblurrer'}{hint}")
    for what, n in (("reads", in_ch), ("writes", out_ch)):
        if isinstance(n, int) and n != channels:
            kind = "gray (1 channel)" if channels == 1 else "RGB (3 channels)"
            raise ValueError(f"{path}: its {name} generator {what} {n} channel(s); 'asapnet {task}' needs a "
                             f"{kind} image-to-image model")

