"""Denoising training: :class:`DenoiseTrainer` (supervised L2 / L1, no GAN), the learning-rate schedule,
:func:`train_denoiser` and ``asapnet train --task denoise`` (:func:`cmd_train_denoise`)."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from ...config import DiscriminatorConfig, TrainConfig
from ...console import quiet as _quiet
from ...data.datasets import data_root
from ...data.denoise import DenoisePatchDataset, NoisyTestDataset
from ...data.io import PathLike, list_images
from ...models.asap import ASAPGenerator
from ...training.trainer import Trainer
from ...training.loop import train
from ...training.run_dir import prepare_run_dir
from .build import build_denoiser
from .config import DenoiseDataConfig, DenoiseTrainOptions
from .evaluate import _score

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


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
    """:class:`asapnet.training.trainer.Trainer` for [0, 1] gray images: sample grids without the [-1, 1]
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


# ---------------------------------------------------------------------------------------------
# CLI glue
# ---------------------------------------------------------------------------------------------


def cmd_train_denoise(opts: DenoiseTrainOptions) -> int:
    """``asapnet train --task denoise --model dncnn|asap [--sigma 25 | --blind]``."""
    from ...options import check_precision

    check_precision(opts.precision or "fp32", opts.device or "cpu", training=True)
    if opts.blind and opts.sigma is not None:
        raise ValueError("give either --sigma or --blind, not both")
    model_name = opts.model
    sigma = None if opts.blind else (opts.sigma if opts.sigma is not None else 25.0)
    depth = opts.depth or (20 if opts.blind else 17)
    model, mcfg = build_denoiser(model_name, opts.preset, depth=depth)
    init_from = None  # where the weights came from, kept in every checkpoint of the new run
    if opts.init:
        if opts.resume:
            raise ValueError("give either --init (new run from a checkpoint's weights) or --resume, not both")
        from ...checkpoint import init_from_checkpoint, trained_steps
        init_meta = init_from_checkpoint(model, opts.init)
        init_from = {"path": str(opts.init), "step": trained_steps(init_meta)}
        step = init_from["step"]
        logger.info(f"initialised from {opts.init} ({init_meta['model']}, step {step if step is not None else '?'})")
    patch = opts.patch_size or (40 if model_name == "dncnn" else 48)
    data = DenoiseDataConfig(sigma=sigma, patch_size=patch, patches_per_image=opts.patches_per_image,
                             val_images=3 if opts.val_images is None else opts.val_images)
    l1 = opts.loss == "l1"
    cfg = TrainConfig(steps=opts.steps, batch_size=opts.batch_size, crop=None, lr_g=opts.lr_g,
                      beta1=0.9, beta2=0.999, lambda_vgg=0.0, lambda_l1=1.0 if l1 else 0.0,
                      lambda_l2=0.0 if l1 else 1.0, gan=False, flip=False, seed=opts.seed or 0,
                      num_threads=opts.threads, sample_every=opts.sample_every,
                      checkpoint_every=opts.checkpoint_every, device=opts.device or "cpu",
                      precision=opts.precision or "fp32")
    tag = f"sigma{sigma:g}" if sigma is not None else "blind"
    out = Path(opts.out or f"runs/denoise-{model_name}-{tag}")
    prepare_run_dir(out, opts.resume, opts.overwrite)  # refuses a run folder without --resume/--overwrite
    logger.info(f"training {model_name} ({tag}) -> {out}")
    trainer = train_denoiser(model, model_name, mcfg, data, cfg, out, opts.data_root,
                             resume=opts.resume, progress=not (opts.quiet or _quiet()),
                             time_budget_s=opts.time_budget * 60 if opts.time_budget else None,
                             init_from=init_from)
    logger.info(f"done: step {trainer.step}, checkpoint {out / 'generator.safetensors'}")
    return 0
