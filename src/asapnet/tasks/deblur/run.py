"""``asapnet deblur``: deblur image files with a trained model (optionally blurring them first)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from ...data.blur_kernels import BlurConfig
from ...data.blur import load_rgb, deterministic_blur, to_uint8_image
from ...data.io import PathLike, check_output_folder, write_image
from ...console import skipped_status
from ..restore import require_restorer, restore_files
from .evaluate import measure, run_model
from .config import DeblurRunOptions

logger = logging.getLogger(__name__)


def save_rgb(x: torch.Tensor, path: Path) -> None:
    """Write a (3, H, W) [-1, 1] image (clipped, rounded) as an 8-bit RGB PNG, atomically
    (:func:`asapnet.data.io.write_image`: a full disk is a DataError, never a truncated file)."""
    write_image(path, to_uint8_image(x))


def deblur_files(model: nn.Module, inputs: Sequence[PathLike], out_dir: PathLike, blur_seed: Optional[int] = None,
                 blur_cfg: BlurConfig = BlurConfig(), device: Optional[torch.device | str] = None,
                 on_error: str = "stop") -> List[Dict[str, Any]]:
    """Deblur image files into ``out_dir/<stem>.png`` (RGB 8-bit).

    Without ``blur_seed`` the inputs are taken as blurred photos. With it they are taken as sharp:
    the deterministic blur of (stem, seed) is applied first, the blurred input is saved as
    ``<stem>_blurred.png``, and PSNRs against the sharp file are returned.

    ``device``: where the inputs go (default: the device of ``model``'s weights); outputs come
    back to the CPU to be saved and measured. One INFO log line per file. ``on_error="skip"``: an
    unreadable file is skipped with a WARNING line instead (:func:`asapnet.tasks.restore.restore_files`).

    Returns:
        one dict per file deblurred: ``{"input", "output", "ms"}`` (+ ``"psnr_blurred"``, ``"psnr"`` in dB).

    Raises:
        DataError: unreadable input with ``on_error="stop"`` (the message names the file), an
            output that cannot be written.
    """
    def degrade(sharp: torch.Tensor, f: Path) -> torch.Tensor:
        return deterministic_blur(sharp, f.stem, blur_seed, blur_cfg)[0]

    return restore_files(model, inputs, out_dir, read=load_rgb,
                         degrade=degrade if blur_seed is not None else None, run=run_model, save=save_rgb,
                         measure=measure, degraded_suffix="_blurred", psnr_key="psnr_blurred", desc="deblur",
                         logger=logger, device=device, on_error=on_error)


def cmd_deblur(opts: DeblurRunOptions) -> int:
    """``asapnet deblur INPUT... -o OUTDIR --checkpoint PATH [--blur-seed S] [--on-error stop|skip]``.
    Returns 0, or 1 when ``--on-error skip`` skipped an input (the others were written)."""
    from ...checkpoint import load_generator

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = opts.device or "cpu"
    check_output_folder(opts.out)  # before any model work
    model, meta = load_generator(opts.checkpoint)
    require_restorer(model, meta, opts.checkpoint, "deblur", channels=3)
    model.to(device)
    logger.info(f"model: {opts.checkpoint} ({meta['model']}, step {meta.get('step', '?')}"
                + (f", {device})" if device != "cpu" else ")"))
    done = deblur_files(model, opts.inputs, opts.out, opts.blur_seed, device=device,
                        on_error=opts.on_error)  # logs a line per file
    return skipped_status(len(opts.inputs), len(done), logger)
