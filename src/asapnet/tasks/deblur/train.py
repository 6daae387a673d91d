"""Deblurring training: :func:`train_deblur` (synthetic blur or GoPro-style pairs, optionally within a
wall-clock budget) and ``asapnet train --task deblur`` (:func:`cmd_train_deblur`)."""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from ...config import DiscriminatorConfig, TrainConfig
from ...console import quiet as _quiet
from ...data.blur import BlurTestDataset, PairedBlurDataset, SyntheticBlurDataset
from ...data.io import PathLike, list_images
from ...models.msg_unet import MSGUNet
from ...training.trainer import Trainer
from ...training.loop import train
from ...training.run_dir import prepare_run_dir
from ...training.gan_variants import MSGTrainer, WGANGPConfig, WGANGPTrainer
from .build import build_deblur_model
from .config import DeblurDataConfig, DeblurTrainOptions, default_split

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# trainers
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# models and data
# ---------------------------------------------------------------------------------------------


def train_deblur(model: nn.Module, model_name: str, model_config: Dict[str, Any], data: DeblurDataConfig,
                 cfg: TrainConfig, gp: Optional[WGANGPConfig], out_dir: PathLike, root: Optional[PathLike] = None,
                 resume: bool = False, progress: bool = True, time_budget_s: Optional[float] = None,
                 content: Optional[nn.Module] = None) -> Trainer:
    """Train a deblurring generator with DeblurGAN's losses (``gp``), for an MSG U-Net with
    :class:`MSGTrainer` (``gp`` ignored), or, with ``cfg.gan=False``, with the reconstruction
    losses of ``cfg`` only (``lambda_l1``/``lambda_l2``; plain :class:`asapnet.training.trainer.Trainer`).

    Data: synthetic blur on :func:`default_split`'s training photos (or on ``data.sharp_dir``), or
    ``data.gopro`` pairs. Validation (``data.val_images``) uses :func:`default_split`'s test photos.
    With ``time_budget_s`` training stops at the first step past the budget (wall clock of this
    call) and writes a final checkpoint; ``cfg.steps`` is the upper bound.

    Raises:
        DataError: missing data. PretrainedWeightsUnavailable: VGG needed but unavailable.
    """
    if data.gopro:
        train_set = PairedBlurDataset(data.gopro, crop=data.crop)
    elif data.sharp_dir:
        train_set = SyntheticBlurDataset(list_images(data.sharp_dir), data.crop, data.blur, 1.0, data.crops_per_image)
    else:
        split = default_split(root)
        train_set = SyntheticBlurDataset(split.train, data.crop, data.blur, split.train_scales, data.crops_per_image)
    val_set = None
    if data.val_images > 0:
        split = default_split(root)
        k = data.val_images
        val_set = BlurTestDataset(split.test[:k], data.seed, data.blur, split.test_scales[:k])
    extra = {"task": "deblur", "value_range": "-1,1",
             "deblur_data": {k: (asdict(v) if k == "blur" else v) for k, v in vars(data).items()}}
    if not cfg.gan:
        trainer: Trainer = Trainer(model, model_name, model_config, DiscriminatorConfig(in_channels=6), cfg, out_dir,
                                   extra_meta=extra)
    elif isinstance(model, MSGUNet):
        trainer = MSGTrainer(model, model_name, model_config, cfg, out_dir, in_channels=model.in_channels,
                                      extra_meta=extra, vgg=content)
    else:
        trainer = WGANGPTrainer(model, model_name, model_config, cfg, gp or WGANGPConfig(), out_dir, content=content,
                                extra_meta=extra)
    train(trainer, train_set, val_set, resume=resume, progress=progress, time_budget_s=time_budget_s)
    return trainer


# ---------------------------------------------------------------------------------------------
# evaluation and inference
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# CLI glue
# ---------------------------------------------------------------------------------------------


def cmd_train_deblur(opts: DeblurTrainOptions) -> int:
    """``asapnet train --task deblur --model deblurgan|asap|msg_unet [--no-vgg] [--time-budget MIN]``."""
    from ...options import check_precision

    check_precision(opts.precision or "fp32", opts.device or "cpu", training=True)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    name = opts.model
    over = {k: v for k, v in (("ngf", opts.ngf), ("n_blocks", opts.n_blocks)) if v is not None}
    if name == "asap" and over:
        raise ValueError("--ngf/--n-blocks apply to deblurgan and msg_unet")
    asap_over = {k: v for k, v in (("hr_window", opts.hr_window), ("norm", opts.lr_norm)) if v is not None}
    if name != "asap" and asap_over:
        raise ValueError("--hr-window/--lr-norm apply to asap")
    over.update(asap_over)
    if name == "msg_unet":
        over.pop("n_blocks", None)
    model, mcfg = build_deblur_model(name, **over)
    no_vgg = opts.no_vgg
    gp = WGANGPConfig(critic_iters=opts.critic_iters, gp_lambda=opts.gp_lambda,
                      lambda_content=0.0 if no_vgg else opts.lambda_content, lambda_l1=opts.lambda_l1,
                      ndf=opts.critic_ndf)
    is_msg = name == "msg_unet"
    cfg = TrainConfig(steps=opts.steps, batch_size=opts.batch_size, crop=None, lr_g=opts.lr_g,
                      lr_d=opts.lr_d, beta1=0.5 if not is_msg else 0.0, beta2=0.999 if not is_msg else 0.9,
                      lambda_vgg=0.0, lambda_l1=opts.lambda_l1, gan=not opts.no_gan, flip=True,
                      seed=opts.seed or 0, num_threads=opts.threads,
                      sample_every=opts.sample_every, checkpoint_every=opts.checkpoint_every,
                      device=opts.device or "cpu", precision=opts.precision or "fp32")
    data = DeblurDataConfig(crop=opts.crop_size, crops_per_image=opts.crops_per_image, gopro=opts.gopro,
                            sharp_dir=opts.sharp_dir,
                            val_images=opts.val_images or 0)
    out = Path(opts.out or f"runs/deblur-{name}")
    prepare_run_dir(out, opts.resume, opts.overwrite)  # refuses a run folder without --resume/--overwrite
    logger.info(f"training {name} for deblurring -> {out}")
    budget = opts.time_budget * 60 if opts.time_budget else None
    trainer = train_deblur(model, name, mcfg, data, cfg, gp, out, opts.data_root, resume=opts.resume,
                           progress=not (opts.quiet or _quiet()), time_budget_s=budget)
    logger.info(f"done: step {trainer.step}, checkpoint {out / 'generator.safetensors'}")
    return 0
