"""Gaussian image denoising with ASAP-Net and the DnCNN baseline.

Library functions:

* :func:`train_denoiser` - supervised L2 (or L1) training on Train400 patches through
  :func:`asapnet.train.train` (no GAN, no VGG), resumable;
* :func:`evaluate_denoiser` - PSNR/SSIM/ms per (dataset, σ) on a folder of clean test images with
  deterministic noise;
* :func:`denoise_files` - run a model on image files.

Value convention (see :mod:`asapnet.data.denoise`): images in [0, 1] inside the models, σ on the
0-255 scale, noise added in float without clipping; metrics on the 0-255 scale after clipping and
rounding the output to 8 bits (as DnCNN's ``im2uint8`` evaluation), data_range 255.

CLI glue (wired into :mod:`asapnet.cli` by the lead): :func:`cmd_train_denoise`,
:func:`cmd_evaluate_denoise`, :func:`cmd_denoise` and the argument helpers. The same commands run
stand-alone as ``python -m asapnet.denoise {train,evaluate,denoise} ...``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ...config import DiscriminatorConfig, TrainConfig, asap_preset
from ...console import progress as _progress, quiet as _quiet
from ...data.datasets import data_root
from ...data.denoise import (BLIND_SIGMA_RANGE, DNCNN_SCALES, DenoisePatchDataset, NoisyTestDataset,
                           deterministic_noisy, read_gray)
from ...data.io import PathLike, list_images
from ...models import create_model
from ...models.asap import ASAPGenerator, init_asap_hypernetwork
# the CLI's argument builders live in asapnet.parsers (no torch); re-exported here
from ...options import (ASAP_DENOISE_CHECKPOINT as ASAP_CHECKPOINT, DNCNN_CHECKPOINT, SADNET_CHECKPOINT,  # noqa: F401
                        parse_sigmas)
from ..restore import restore_files
from ...training.trainer import Trainer, prepare_run_dir, train

logger = logging.getLogger(__name__)


def shipped_checkpoint(name: str = ASAP_CHECKPOINT) -> Path:
    """Path of a denoiser shipped inside the package (``asapnet/weights/<name>``)."""
    return Path(str(resources.files("asapnet") / "weights" / name))


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def build_denoiser(model: str = "asap", preset: str = "denoise-gray", depth: int = 17,
                   channels: int = 64) -> Tuple[nn.Module, Dict[str, Any]]:
    """Create a gray denoiser and the JSON-able config stored in its checkpoints.

    Args:
        model: ``"asap"`` (ASAP-Net generator with an ASAP preset, 1 -> 1 channels, residual,
            no output activation), ``"dncnn"`` (``depth`` 17 = DnCNN-S, 20 = DnCNN-B) or
            ``"sadnet"`` (Chang et al. 2020, gray, 32 base channels).

    Raises:
        ValueError: unknown model, or an ASAP preset that is not a 1-channel residual denoiser.
    """
    if model == "asap":
        cfg = asap_preset(preset, in_channels=1, out_channels=1, residual=True, output_activation="none")
        net = create_model("asap", cfg=cfg)
        init_asap_hypernetwork(net)
        return net, cfg.to_dict()
    if model == "dncnn":
        kw = {"depth": depth, "channels": channels, "in_channels": 1}
        return create_model("dncnn", **kw), kw
    if model == "sadnet":
        kw = {"in_channels": 1}
        return create_model("sadnet", **kw), kw
    raise ValueError(f"denoising model must be 'asap', 'dncnn' or 'sadnet', got {model!r}")


@torch.no_grad()
def run_denoiser(model: nn.Module, noisy: torch.Tensor) -> torch.Tensor:
    """Denoise (N, 1, H, W) float32 in the [0, 1] scale -> (N, 1, H, W), unclipped."""
    model.eval()
    return model(noisy)


def to_uint8_scale(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> 0-255 float, clipped and rounded to integers (8-bit image values)."""
    return (x * 255.0).clamp(0, 255).round()


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class DenoiseDataConfig:
    """Training data and schedule of :func:`train_denoiser`.

    Attributes:
        sigma: fixed noise level (0-255 scale), or ``None`` for blind training with σ ~ U[sigma_range].
        sigma_range: blind noise range (0-255 scale), DnCNN-B's [10, 55].
        patch_size: training patch side in pixels (a multiple of S for ASAP models).
        patches_per_image: patches per Train400 image and epoch.
        scales: multi-scale augmentation factors.
        val_images: number of Set12 images (first in name order) scored every checkpoint, 0 = none.
        val_sigma: σ of the validation noise (0-255 scale).
        lr_hold: fraction of the steps at the full learning rate before the cosine decay.
        lr_final: final learning rate as a fraction of the initial one.
    """

    sigma: Optional[float] = 25.0
    sigma_range: Tuple[float, float] = BLIND_SIGMA_RANGE
    patch_size: int = 40
    patches_per_image: int = 64
    scales: Tuple[float, ...] = DNCNN_SCALES
    val_images: int = 3
    val_sigma: float = 25.0
    lr_hold: float = 0.5
    lr_final: float = 0.05


def lr_at(step: int, total: int, base: float, hold: float = 0.5, final: float = 0.05) -> float:
    """Learning rate of step ``step`` (0-based) out of ``total``: ``base`` for the first ``hold``
    fraction, then a cosine decay to ``final * base`` at the last step."""
    return lr_at_fraction(step / max(1, total), base, hold, final)


def lr_at_fraction(progress: float, base: float, hold: float = 0.5, final: float = 0.05) -> float:
    """Learning rate at ``progress`` in [0, 1] of a run: ``base`` up to ``hold``, then a cosine
    decay to ``final * base`` at 1 (values past 1 give ``final * base``)."""
    if progress <= hold or hold >= 1:
        return base
    t = min(1.0, (progress - hold) / (1 - hold))
    return base * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t)))


class DenoiseTrainer(Trainer):
    """:class:`asapnet.train.Trainer` for [0, 1] gray images: sample grids without the [-1, 1]
    rescaling and validation PSNR/SSIM with the denoising protocol (0-255, clipped, rounded)."""

    def save_samples(self) -> Path:
        """Write ``samples/step_XXXXXX.png``: rows of noisy | denoised | clean of the last step."""
        from torchvision.utils import save_image
        cond, fake, real = self._last
        grid = torch.cat([cond, fake, real], dim=3).clamp(0, 1)
        path = self.out / "samples" / f"step_{self.step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid[:8], path, nrow=1)
        return path

    @torch.no_grad()
    def validate(self, dataset) -> Dict[str, float]:
        """Mean PSNR (dB) and SSIM on ``dataset`` (a :class:`NoisyTestDataset`)."""
        rows = _score(self.G, dataset, self.device)
        return {"val/psnr": rows["psnr"], "val/ssim": rows["ssim"]}


def train_denoiser(model: nn.Module, model_name: str, model_config: Dict[str, Any], data: DenoiseDataConfig,
                   cfg: TrainConfig, out_dir: PathLike, root: Optional[PathLike] = None, resume: bool = False,
                   progress: bool = True, time_budget_s: Optional[float] = None,
                   init_from: Optional[Dict[str, Any]] = None) -> Trainer:
    """Train ``model`` to denoise Train400 patches (L2 and/or L1 loss from ``cfg``, no GAN).

    ``cfg.gan`` must be False and ``cfg.lambda_vgg`` 0 (a gray denoiser has no VGG loss); the
    learning rate ``cfg.lr_g`` is held then cosine-decayed (see :func:`lr_at`). Checkpoints
    (``state.safetensors`` for resuming, ``generator.safetensors`` + ``.json`` for inference) are
    written to ``out_dir`` every ``cfg.checkpoint_every`` steps, with Set12 validation PSNR in
    ``metrics.jsonl``.

    With ``time_budget_s`` (seconds of wall clock for this call) the schedule's progress is the
    larger of ``step / cfg.steps`` and ``elapsed / time_budget_s``, and training stops (with a
    final checkpoint and validation) when either reaches 1, so a run given a fixed amount of time
    still ends with its learning rate decayed. With ``resume`` this continues a finished or
    interrupted run for another ``time_budget_s``.

    Args:
        root: data folder holding ``denoise/Train400`` and ``denoise/Set12`` (see
            :func:`asapnet.data.datasets.data_root`).

    Raises:
        ValueError: a GAN/VGG config, no reconstruction loss, or an ASAP patch size that is not a
            multiple of S.
        DataError: missing training data.
    """
    if cfg.gan or cfg.lambda_vgg > 0:
        raise ValueError("denoisers are trained with gan=False and lambda_vgg=0")
    if cfg.lambda_l1 <= 0 and cfg.lambda_l2 <= 0:
        raise ValueError("set lambda_l2 and/or lambda_l1 > 0")
    if isinstance(model, ASAPGenerator) and data.patch_size % model.S:
        raise ValueError(f"patch_size {data.patch_size} must be a multiple of the ASAP tile size S={model.S}")
    base = data_root(root) / "denoise"
    train_set = DenoisePatchDataset(base / "Train400", data.patch_size, data.sigma, data.sigma_range,
                                    data.scales, data.patches_per_image)
    val_set = None
    if data.val_images > 0:
        val_set = NoisyTestDataset(None, data.val_sigma, files=list_images(base / "Set12")[:data.val_images])
    extra = {"task": "denoise", "sigma": data.sigma, "blind": data.sigma is None, "value_range": "0,1",
             "denoise_data": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(data).items()}}
    if init_from is not None:  # where the weights came from (fine-tuning), kept in every checkpoint
        extra["init_from"] = init_from
    trainer = DenoiseTrainer(model, model_name, model_config, DiscriminatorConfig(in_channels=2), cfg, out_dir,
                             extra_meta=extra)

    t0 = time.time()

    def schedule(step: int, logs: Dict[str, float]) -> None:
        frac = step / max(1, cfg.steps)
        if time_budget_s is not None:
            frac = max(frac, (time.time() - t0) / time_budget_s)
        lr = lr_at_fraction(frac, cfg.lr_g, data.lr_hold, data.lr_final)
        for g in trainer.opt_g.param_groups:
            g["lr"] = lr

    train(trainer, train_set, val_set, resume=resume, progress=progress, on_step=schedule,
          time_budget_s=time_budget_s)
    return trainer


# ---------------------------------------------------------------------------------------------
# Evaluation and inference
# ---------------------------------------------------------------------------------------------


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


def save_gray(x: torch.Tensor, path: Path) -> None:
    """Write a (1, H, W) [0, 1] image (clipped, rounded) as an 8-bit gray PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8_scale(x)[0].numpy().astype(np.uint8)).save(path)


def denoise_files(model: nn.Module, inputs: Sequence[PathLike], out_dir: PathLike, sigma: Optional[float] = None,
                  seed: int = 0, device: Optional[torch.device | str] = None) -> List[Dict[str, Any]]:
    """Denoise image files into ``out_dir/<stem>.png`` (gray 8-bit).

    Without ``sigma`` the inputs are taken as noisy photos. With ``sigma`` (0-255 scale) they are
    taken as clean: deterministic noise of (stem, σ, seed) is added first, the noisy input is saved
    as ``<stem>_noisy.png`` and PSNRs against the clean file are returned.

    ``device``: where the inputs go (default: the device of ``model``'s weights); outputs come
    back to the CPU to be saved and measured. One INFO log line per file.

    Returns:
        one dict per file: ``{"input", "output", "ms"}`` (+ ``"psnr_noisy"``, ``"psnr"`` in dB
        with ``sigma``).

    Raises:
        DataError: unreadable input (the message names the file).
    """
    def degrade(clean: torch.Tensor, f: Path) -> torch.Tensor:
        return deterministic_noisy(clean, f.stem, sigma, seed)

    return restore_files(model, inputs, out_dir, read=read_gray,
                         degrade=degrade if sigma is not None else None, run=run_denoiser, save=save_gray,
                         measure=measure, degraded_suffix="_noisy", psnr_key="psnr_noisy", desc="denoise",
                         logger=logger, device=device)


# ---------------------------------------------------------------------------------------------
# CLI glue
# ---------------------------------------------------------------------------------------------

#: Defaults of the shared ``asapnet train`` options when ``--task denoise`` (used when the parsed
#: value is ``None``; the GAN task keeps its own defaults).
DENOISE_TRAIN_DEFAULTS: Dict[str, Any] = {"model": "asap", "preset": "denoise-gray", "steps": 3000,
                                          "batch_size": 16, "lr_g": 1e-3, "out": None, "sample_every": 500,
                                          "checkpoint_every": 100, "lambda_l1": 0.0}


def _opt(a: argparse.Namespace, name: str) -> Any:
    v = getattr(a, name, None)
    return DENOISE_TRAIN_DEFAULTS[name] if v is None else v


def cmd_train_denoise(a: argparse.Namespace) -> int:
    """``asapnet train --task denoise --model dncnn|asap [--sigma 25 | --blind]``."""
    from ...options import check_precision

    check_precision(getattr(a, "precision", "fp32") or "fp32", getattr(a, "device", "cpu") or "cpu", training=True)
    if a.blind and a.sigma is not None:
        raise ValueError("give either --sigma or --blind, not both")
    model_name = _opt(a, "model")
    sigma = None if a.blind else (a.sigma if a.sigma is not None else 25.0)
    depth = a.depth or (20 if a.blind else 17)
    model, mcfg = build_denoiser(model_name, _opt(a, "preset"), depth=depth)
    init_from = None  # where the weights came from, kept in every checkpoint of the new run
    if getattr(a, "init", None):
        if a.resume:
            raise ValueError("give either --init (new run from a checkpoint's weights) or --resume, not both")
        from ...checkpoint import init_from_checkpoint, trained_steps
        init_meta = init_from_checkpoint(model, a.init)
        init_from = {"path": str(a.init), "step": trained_steps(init_meta)}
        step = init_from["step"]
        logger.info(f"initialised from {a.init} ({init_meta['model']}, step {step if step is not None else '?'})")
    patch = a.patch_size or (40 if model_name == "dncnn" else 48)
    data = DenoiseDataConfig(sigma=sigma, patch_size=patch, patches_per_image=a.patches_per_image,
                             val_images=3 if a.val_images is None else a.val_images)
    l1 = a.loss == "l1"
    cfg = TrainConfig(steps=_opt(a, "steps"), batch_size=_opt(a, "batch_size"), crop=None, lr_g=_opt(a, "lr_g"),
                      beta1=0.9, beta2=0.999, lambda_vgg=0.0, lambda_l1=1.0 if l1 else 0.0,
                      lambda_l2=0.0 if l1 else 1.0, gan=False, flip=False, seed=getattr(a, "seed", 0) or 0,
                      num_threads=getattr(a, "threads", None), sample_every=_opt(a, "sample_every"),
                      checkpoint_every=_opt(a, "checkpoint_every"), device=getattr(a, "device", "cpu") or "cpu",
                      precision=getattr(a, "precision", "fp32") or "fp32")
    tag = f"sigma{sigma:g}" if sigma is not None else "blind"
    out = Path(_opt(a, "out") or f"runs/denoise-{model_name}-{tag}")
    prepare_run_dir(out, a.resume, getattr(a, "overwrite", False))  # refuses a run folder without --resume/--overwrite
    logger.info(f"training {model_name} ({tag}) -> {out}")
    trainer = train_denoiser(model, model_name, mcfg, data, cfg, out, getattr(a, "data_root", None),
                             resume=a.resume, progress=not (getattr(a, "quiet", False) or _quiet()),
                             time_budget_s=a.time_budget * 60 if getattr(a, "time_budget", None) else None,
                             init_from=init_from)
    logger.info(f"done: step {trainer.step}, checkpoint {out / 'generator.safetensors'}")
    return 0


def cmd_evaluate_denoise(a: argparse.Namespace) -> int:
    """``asapnet evaluate --task denoise --checkpoint PATH --data DIR... --sigma 15,25,50 [--json]``."""
    from ...checkpoint import load_generator

    if a.threads:
        torch.set_num_threads(a.threads)
    device = getattr(a, "device", "cpu") or "cpu"
    model, meta = load_generator(a.checkpoint)
    model.to(device)
    rows = [r for d in a.data for r in evaluate_denoiser(model, d, a.sigma, a.seed, device=device)]
    if a.json:
        for r in rows:
            print(json.dumps({k: r[k] for k in ("dataset", "sigma", "psnr", "ssim", "ms")}))
        return 0
    print(f"model: {a.checkpoint} ({meta['model']}, step {meta.get('step', '?')})")  # the table's heading
    print(f"{'dataset':<12}{'sigma':>6}{'PSNR (dB)':>11}{'SSIM':>8}{'ms/img':>9}")
    for r in rows:
        print(f"{r['dataset']:<12}{r['sigma']:>6g}{r['psnr']:>11.2f}{r['ssim']:>8.4f}{r['ms']:>9.1f}")
    return 0


def cmd_denoise(a: argparse.Namespace) -> int:
    """``asapnet denoise INPUT... -o OUTDIR [--sigma S] [--checkpoint PATH]``."""
    from ...checkpoint import load_generator

    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = {None: shipped_checkpoint(ASAP_CHECKPOINT), "asap": shipped_checkpoint(ASAP_CHECKPOINT),
            "dncnn": shipped_checkpoint(DNCNN_CHECKPOINT),
            "sadnet": shipped_checkpoint(SADNET_CHECKPOINT)}.get(a.checkpoint) or Path(a.checkpoint)
    device = getattr(a, "device", "cpu") or "cpu"
    model, meta = load_generator(ckpt)
    model.to(device)
    logger.info(f"model: {ckpt} ({meta['model']}, step {meta.get('step', '?')}"
                + (f", {device})" if device != "cpu" else ")"))
    denoise_files(model, a.inputs, a.out, a.sigma, a.seed, device=device)  # logs a line per file
    return 0
