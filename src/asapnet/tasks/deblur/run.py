"""``asapnet deblur``: deblur image files with a trained model (optionally blurring them first)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from PIL import Image

from ...data.blur_kernels import BlurConfig
from ...data.blur import load_rgb, deterministic_blur, to_uint8_image
from ...data.io import PathLike
from ..restore import restore_files
from .evaluate import measure, run_model
from .config import DeblurRunOptions

logger = logging.getLogger(__name__)


def save_rgb(x: torch.Tensor, path: Path) -> None:
    """Write a (3, H, W) [-1, 1] image (clipped, rounded) as an 8-bit RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8_image(x)).save(path)


def deblur_files(model: nn.Module, inputs: Sequence[PathLike], out_dir: PathLike, blur_seed: Optional[int] = None,
                 blur_cfg: BlurConfig = BlurConfig(), device: Optional[torch.device | str] = None
                 ) -> List[Dict[str, Any]]:
    """Deblur image files into ``out_dir/<stem>.png`` (RGB 8-bit).

    Without ``blur_seed`` the inputs are taken as blurred photos. With it they are taken as sharp:
    the deterministic blur of (stem, seed) is applied first, the blurred input is saved as
    ``<stem>_blurred.png``, and PSNRs against the sharp file are returned.

    ``device``: where the inputs go (default: the device of ``model``'s weights); outputs come
    back to the CPU to be saved and measured. One INFO log line per file.

    Returns:
        one dict per file: ``{"input", "output", "ms"}`` (+ ``"psnr_blurred"``, ``"psnr"`` in dB).

    Raises:
        DataError: unreadable input (the message names the file).
    """
    def degrade(sharp: torch.Tensor, f: Path) -> torch.Tensor:
        return deterministic_blur(sharp, f.stem, blur_seed, blur_cfg)[0]

    return restore_files(model, inputs, out_dir, read=load_rgb,
                         degrade=degrade if blur_seed is not None else None, run=run_model, save=save_rgb,
                         measure=measure, degraded_suffix="_blurred", psnr_key="psnr_blurred", desc="deblur",
                         logger=logger, device=device)


def cmd_deblur(opts: DeblurRunOptions) -> int:
    """``asapnet deblur INPUT... -o OUTDIR --checkpoint PATH [--blur-seed S]``."""
    from ...checkpoint import load_generator

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = opts.device or "cpu"
    model, meta = load_generator(opts.checkpoint)
    model.to(device)
    logger.info(f"model: {opts.checkpoint} ({meta['model']}, step {meta.get('step', '?')}"
                + (f", {device})" if device != "cpu" else ")"))
    deblur_files(model, opts.inputs, opts.out, opts.blur_seed, device=device)  # logs a line per file
    return 0
