"""``asapnet denoise``: denoise image files with a trained model (optionally adding noise first)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ...data.denoise import deterministic_noisy, read_gray
from ...data.io import PathLike, check_output_folder, write_image
from ...options import ASAP_DENOISE_CHECKPOINT as ASAP_CHECKPOINT, DNCNN_CHECKPOINT, SADNET_CHECKPOINT
from ...console import skipped_status
from ..restore import require_restorer, restore_files
from .build import run_denoiser, shipped_checkpoint, to_uint8_scale
from .evaluate import measure
from .config import DenoiseRunOptions

logger = logging.getLogger(__name__)


def save_gray(x: torch.Tensor, path: Path) -> None:
    """Write a (1, H, W) [0, 1] image (clipped, rounded) as an 8-bit gray PNG, atomically
    (:func:`asapnet.data.io.write_image`: a full disk is a DataError, never a truncated file)."""
    write_image(path, to_uint8_scale(x)[0].numpy().astype(np.uint8))


def denoise_files(model: nn.Module, inputs: Sequence[PathLike], out_dir: PathLike, sigma: Optional[float] = None,
                  seed: int = 0, device: Optional[torch.device | str] = None, on_error: str = "stop"
                  ) -> List[Dict[str, Any]]:
    """Denoise image files into ``out_dir/<stem>.png`` (gray 8-bit).

    Without ``sigma`` the inputs are taken as noisy photos. With ``sigma`` (0-255 scale) they are
    taken as clean: deterministic noise of (stem, σ, seed) is added first, the noisy input is saved
    as ``<stem>_noisy.png`` and PSNRs against the clean file are returned.

    ``device``: where the inputs go (default: the device of ``model``'s weights); outputs come
    back to the CPU to be saved and measured. One INFO log line per file. ``on_error="skip"``: an
    unreadable file is skipped with a WARNING line instead (:func:`asapnet.tasks.restore.restore_files`).

    Returns:
        one dict per file denoised: ``{"input", "output", "ms"}`` (+ ``"psnr_noisy"``, ``"psnr"``
        in dB with ``sigma``).

    Raises:
        DataError: unreadable input with ``on_error="stop"`` (the message names the file), an
            output that cannot be written.
    """
    def degrade(clean: torch.Tensor, f: Path) -> torch.Tensor:
        return deterministic_noisy(clean, f.stem, sigma, seed)

    return restore_files(model, inputs, out_dir, read=read_gray,
                         degrade=degrade if sigma is not None else None, run=run_denoiser, save=save_gray,
                         measure=measure, degraded_suffix="_noisy", psnr_key="psnr_noisy", desc="denoise",
                         logger=logger, device=device, on_error=on_error)


def cmd_denoise(opts: DenoiseRunOptions) -> int:
    """``asapnet denoise INPUT... -o OUTDIR [--sigma S] [--checkpoint PATH] [--on-error stop|skip]``.
    Returns 0, or 1 when ``--on-error skip`` skipped an input (the others were written)."""
    from ...checkpoint import load_generator

    if opts.threads:
        torch.set_num_threads(opts.threads)
    ckpt = {None: shipped_checkpoint(ASAP_CHECKPOINT), "asap": shipped_checkpoint(ASAP_CHECKPOINT),
            "dncnn": shipped_checkpoint(DNCNN_CHECKPOINT),
            "sadnet": shipped_checkpoint(SADNET_CHECKPOINT)}.get(opts.checkpoint) or Path(opts.checkpoint)
    device = opts.device or "cpu"
    check_output_folder(opts.out)  # before any model work
    model, meta = load_generator(ckpt)
    require_restorer(model, meta, ckpt, "denoise", channels=1)
    model.to(device)
    logger.info(f"model: {ckpt} ({meta['model']}, step {meta.get('step', '?')}"
                + (f", {device})" if device != "cpu" else ")"))
    done = denoise_files(model, opts.inputs, opts.out, opts.sigma, opts.seed, device=device,
                         on_error=opts.on_error)  # logs a line per file
    return skipped_status(len(opts.inputs), len(done), logger)
