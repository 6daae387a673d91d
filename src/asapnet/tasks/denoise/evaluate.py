"""Denoising scores: PSNR/SSIM per noise level on a folder of clean images (:func:`evaluate_denoiser`), and
``asapnet evaluate --task denoise``."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ...console import progress as _progress
from ...data.denoise import NoisyTestDataset
from ...data.io import PathLike, list_images
from .build import run_denoiser, to_uint8_scale
from .config import DenoiseEvaluateOptions


def measure(output: torch.Tensor, clean: torch.Tensor) -> Tuple[float, float]:
    """PSNR (dB) and SSIM of one denoised image against its clean version.

    Both are (1, H, W) or (1, 1, H, W) float in the [0, 1] scale; they are mapped to 0-255,
    clipped and rounded to 8-bit values (DnCNN's ``im2uint8`` protocol), then measured with
    torchmetrics (data_range 255; SSIM with the standard 11x11 Gaussian window, σ 1.5).
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    fake = to_uint8_scale(output.detach().cpu().float().reshape(1, 1, *output.shape[-2:]))
    real = to_uint8_scale(clean.detach().cpu().float().reshape(1, 1, *clean.shape[-2:]))
    return (float(peak_signal_noise_ratio(fake, real, data_range=255.0)),
            float(structural_similarity_index_measure(fake, real, data_range=255.0)))


def _score(model: nn.Module, dataset, device: torch.device | str = "cpu", desc: Optional[str] = None,
           bar: bool = False) -> Dict[str, float]:
    """Mean PSNR, SSIM and ms per image of ``model`` on a :class:`NoisyTestDataset`: inputs moved
    to ``device`` (where ``model`` is), outputs measured on the CPU; ``bar``: a progress bar."""
    from ...inference.optimize import synchronize

    model.eval()
    psnrs, ssims, times = [], [], []
    steps = range(len(dataset))
    for i in (_progress(steps, desc=desc, unit="img") if bar else steps):
        item = dataset[i]
        x = item["input"][None].to(device)
        t0 = time.perf_counter()
        y = run_denoiser(model, x)
        synchronize(y.device)
        times.append((time.perf_counter() - t0) * 1000.0)
        p, s = measure(y, item["target"])
        psnrs.append(p)
        ssims.append(s)
    return {"psnr": statistics.fmean(psnrs), "ssim": statistics.fmean(ssims), "ms": statistics.fmean(times),
            "images": len(psnrs)}


def evaluate_denoiser(model: nn.Module, folder: PathLike, sigmas: Sequence[float], seed: int = 0,
                      dataset: Optional[str] = None, device: Optional[torch.device | str] = None
                      ) -> List[Dict[str, Any]]:
    """Score ``model`` on the clean images of ``folder`` with deterministic noise per σ.

    For each σ (0-255 scale) every image gets the noise of (name, σ, ``seed``); the output is
    clipped to [0, 255] and rounded, and PSNR (dB) and SSIM (torchmetrics, Gaussian window 11,
    data_range 255) are averaged over the images. ``ms`` is the mean wall time of the forward pass
    per image in milliseconds (current torch thread setting).

    ``device``: where the noisy inputs go (the device of ``model``'s weights by default; move the
    model there first); PSNR and SSIM are computed on the CPU.

    Returns:
        one dict per σ: ``{"dataset": name (default: the folder name), "sigma", "psnr", "ssim",
        "ms", "images"}``.

    Raises:
        DataError: missing/empty folder or unreadable image.
    """
    from ...inference.optimize import model_device

    name = dataset or Path(folder).name
    files = list_images(folder)
    device = model_device(model) if device is None else device
    rows = []
    for s in sigmas:
        r = _score(model, NoisyTestDataset(None, float(s), seed, files=files), device, desc=f"{name} σ={s:g}",
                   bar=True)
        rows.append({"dataset": name, "sigma": float(s), **r})
    return rows


def cmd_evaluate_denoise(opts: DenoiseEvaluateOptions) -> int:
    """``asapnet evaluate --task denoise --checkpoint PATH --data DIR... --sigma 15,25,50 [--json]``."""
    from ...checkpoint import load_generator

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = opts.device or "cpu"
    model, meta = load_generator(opts.checkpoint)
    model.to(device)
    rows = [r for d in opts.data for r in evaluate_denoiser(model, d, opts.sigma, opts.seed, device=device)]
    if opts.json:
        for r in rows:
            print(json.dumps({k: r[k] for k in ("dataset", "sigma", "psnr", "ssim", "ms")}))
        return 0
    print(f"model: {opts.checkpoint} ({meta['model']}, step {meta.get('step', '?')})")  # the table's heading
    print(f"{'dataset':<12}{'sigma':>6}{'PSNR (dB)':>11}{'SSIM':>8}{'ms/img':>9}")
    for r in rows:
        print(f"{r['dataset']:<12}{r['sigma']:>6g}{r['psnr']:>11.2f}{r['ssim']:>8.4f}{r['ms']:>9.1f}")
    return 0
