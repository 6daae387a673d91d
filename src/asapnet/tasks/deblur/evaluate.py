"""Deblurring scores: PSNR/SSIM (and FID when its weights exist) of several models side by side on a
held-out set with deterministic blur (:func:`evaluate_deblur`), run times (:func:`time_models`), and
``asapnet evaluate --task deblur``."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ...console import progress as _progress
from ...data.blur import BlurTestDataset, quantize
from ...data.io import PathLike, list_images
from .config import default_split, DeblurEvaluateOptions


@torch.no_grad()
def run_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> the model's output (N, 3, H, W), in eval mode, unclipped."""
    model.eval()
    return model(x)


def measure(output: torch.Tensor, sharp: torch.Tensor) -> Tuple[float, float]:
    """PSNR (dB) and SSIM of one restored image (3, H, W) or (1, 3, H, W) in [-1, 1] against the
    sharp one, after rounding the output to 8 bits (0-255 scale, data_range 255)."""
    from ...metrics import psnr_ssim

    fake = quantize(output.detach().cpu().float().reshape(1, *output.shape[-3:]))
    real = sharp.detach().cpu().float().reshape(1, *sharp.shape[-3:])
    return psnr_ssim(fake, real)


def evaluate_deblur(models: Dict[str, nn.Module], dataset: BlurTestDataset, fid: bool = False,
                    fid_weights: Optional[PathLike] = None, device: Optional[torch.device | str] = None
                    ) -> List[Dict[str, Any]]:
    """Score deblurring models on a held-out set with deterministic blur.

    The first row is the blurred input itself (``"blurred input"``). For every model: mean PSNR
    (dB) and SSIM over the images (see :func:`measure`), mean forward time in ms (current torch
    thread setting), and FID (torchmetrics, standard InceptionV3) when ``fid`` is set and its
    weights can be loaded, else ``None`` (with ``fid_note``). FID of a handful of images is
    strongly biased; compare it only at equal set sizes.

    ``device``: where the blurred inputs go (default: each model's own device; move the models
    there first); outputs come back to the CPU for the metrics.

    Returns:
        one dict per row: ``{"model", "psnr", "ssim", "ms", "images", "fid"}``.
    """
    from ...inference.optimize import model_device, synchronize

    rows: List[Dict[str, Any]] = []
    items = [dataset[i] for i in range(len(dataset))]
    fid_note = None
    fid_fn = None
    if fid:
        try:
            from ...metrics.fid import compute_fid
            fid_fn = compute_fid
        except ImportError as e:  # pragma: no cover
            fid_note = f"FID unavailable: {e}"
    bar = _progress(total=len(items) * len(models), desc="deblur", unit="img")
    for name, model in [("blurred input", None), *models.items()]:
        ps, ss, ms, outs = [], [], [], []
        dev = None if model is None else (model_device(model) if device is None else device)
        for it in items:
            x = it["input"][None]
            t0 = time.perf_counter()
            if model is None:
                y = x
            else:
                y = run_model(model, x.to(dev))
                synchronize(y.device)
            ms.append((time.perf_counter() - t0) * 1e3)
            y = y.cpu()
            if model is not None:
                bar.update(1)
            p, s = measure(y, it["target"])
            ps.append(p)
            ss.append(s)
            outs.append(quantize(y.float()))
        row = {"model": name, "psnr": statistics.fmean(ps), "ssim": statistics.fmean(ss),
               "ms": statistics.fmean(ms) if model is not None else 0.0, "images": len(items), "fid": None}
        if fid_fn is not None and fid_note is None:
            try:
                row["fid"] = float(fid_fn([it["target"][None] for it in items], outs, weights_path=fid_weights))
            except Exception as e:  # FIDUnavailable, or sizes FID cannot handle
                fid_note = f"FID unavailable: {e}"
        rows.append(row)
    bar.close()
    if fid_note:
        for r in rows:
            r["fid_note"] = fid_note
    return rows


@torch.no_grad()
def time_models(models: Dict[str, nn.Module], size: Tuple[int, int] = (720, 1280), repeats: int = 5,
                warmup: int = 1) -> Dict[str, Dict[str, float]]:
    """Batch-1 forward time of each model on a random (1, 3, H, W) image in [-1, 1].

    Models are prepared for inference (eval, folded spectral norm) and timed *interleaved*
    (one pass of each model per round, ``repeats`` rounds) so that load changes on a shared
    machine hit all of them alike. Returns ``{name: {"ms": median, "ms_min", "ms_max"}}``.
    """
    from ...inference.optimize import prepare_for_inference

    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for m in models.values():
        prepare_for_inference(m)
        for _ in range(warmup):
            m(x)
    times: Dict[str, List[float]] = {n: [] for n in models}
    for _ in range(repeats):
        for n, m in models.items():
            t0 = time.perf_counter()
            m(x)
            times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: {"ms": statistics.median(t), "ms_min": min(t), "ms_max": max(t)} for n, t in times.items()}


def _named_checkpoints(specs: Sequence[str]) -> List[Tuple[str, Path]]:
    out = []
    for s in specs:
        name, _, path = s.partition("=") if "=" in s else (None, "", s)
        out.append((name or Path(path).parent.name or Path(path).stem, Path(path)))
    return out


def _as_list(v: Any) -> List[str]:
    return [] if v is None else [v] if isinstance(v, (str, Path)) else list(v)


def cmd_evaluate_deblur(opts: DeblurEvaluateOptions) -> int:
    """``asapnet evaluate --task deblur --checkpoint [NAME=]PATH... [--data DIR...] [--json]``."""
    from ...checkpoint import load_generator

    if opts.threads:
        torch.set_num_threads(opts.threads)
    seed = opts.seed or 0
    data = _as_list(opts.data)
    if data:
        files = [f for d in data for f in list_images(d)]
        ds = BlurTestDataset(files, seed, scale=opts.scale)
    else:
        split = default_split(opts.data_root)
        ds = BlurTestDataset(split.test, seed, scale=split.test_scales)
    ckpts = _as_list(opts.checkpoint)
    if not ckpts:
        raise ValueError("give --checkpoint [NAME=]PATH (a deblurring generator)")
    device = opts.device or "cpu"
    models = {name: load_generator(path)[0].to(device) for name, path in _named_checkpoints(ckpts)}
    rows = evaluate_deblur(models, ds, fid=opts.fid, fid_weights=opts.fid_weights,
                           device=device)
    if opts.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"{len(ds)} held-out images, deterministic motion blur (seed {seed})")  # the table's heading
    w = max(16, *(len(r["model"]) + 2 for r in rows))
    print(f"{'model':<{w}}{'PSNR (dB)':>11}{'SSIM':>8}{'ms/img':>10}{'FID':>8}")
    for r in rows:
        fid = "-" if r["fid"] is None else f"{r['fid']:.1f}"
        print(f"{r['model']:<{w}}{r['psnr']:>11.2f}{r['ssim']:>8.4f}{r['ms']:>10.1f}{fid:>8}")
    if rows and rows[0].get("fid_note"):
        print(rows[0]["fid_note"])
    return 0
