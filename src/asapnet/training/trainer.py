"""GAN training with the SPADE optimisation procedure (ASAP-Net paper §3.4).

Multi-scale PatchGAN discriminator, hinge loss, feature matching (lambda 10), VGG19 perceptual
loss (lambda 10), Adam betas (0, 0.9), TTUR (G 1e-4, D 4e-4).

For generators that support it (ASAP-Net), training runs at full resolution on crops: the LR
stream sees the whole image, the HR stream, the discriminator and the losses only a random
S-aligned crop. Other generators get the input and target cropped.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset

from ..checkpoint import (load_optimizer, load_tensors, optimizer_tensors, prefixed, save_generator, save_tensors,
                          unprefixed)
from ..config import DiscriminatorConfig, TrainConfig
from ..losses.perceptual import VGGPerceptualLoss
from ..losses.gan import feature_matching_loss, hinge_d_loss, hinge_g_loss
from ..models.asap import ASAPGenerator
from ..models.discriminator import MultiscaleDiscriminator
from .run_dir import GENERATOR_FILE, STATE_FILE, config_differences
from .batches import _random_region, visualize_input

logger = logging.getLogger(__name__)


class Trainer:
    """Holds G, D, their optimisers and the loop state; see :func:`train`.

    Args:
        generator: maps (N, C, H, W) inputs to (N, 3, H, W) images in [-1, 1].
        model_name, model_config: registry name and JSON-able config, stored in checkpoints.
        disc_cfg: discriminator config; its ``in_channels`` must be C + output channels.
        cfg: training options.
        out_dir: run folder (checkpoints, samples, TensorBoard logs).
        vgg: perceptual-loss module, or ``None`` to build the standard one when
            ``cfg.lambda_vgg > 0``.
        num_classes: number of one-hot channels of the input (for pictures), ``None`` for images.

    Precision (``cfg.precision``): the forward passes and losses of a step run under
    :meth:`autocast` (``torch.autocast`` in bf16 / fp16), the backward passes and optimiser steps
    outside it (:meth:`optimize`), weights and optimiser states stay float32. fp16 scales each
    optimiser's loss with its own ``GradScaler`` (CUDA only; the scale is not checkpointed and
    restarts at its default after ``--resume``). Validation runs in float32.

    Raises:
        ValueError: a precision the device cannot train in (fp16 off CUDA).
    """

    def __init__(self, generator: nn.Module, model_name: str, model_config: Dict[str, Any],
                 disc_cfg: DiscriminatorConfig, cfg: TrainConfig, out_dir: str | Path,
                 vgg: Optional[nn.Module] = None, num_classes: Optional[int] = None,
                 extra_meta: Optional[Dict[str, Any]] = None):
        from ..options import check_precision

        self.cfg, self.out = cfg, Path(out_dir)
        self.device = torch.device(cfg.device)
        check_precision(cfg.precision, str(self.device), training=True)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self._scalers: Dict[int, Any] = {}  # id(optimiser) -> GradScaler (fp16)
        self.G = generator.to(self.device)
        self.model_name, self.model_config = model_name, model_config
        self.num_classes = num_classes
        self.extra_meta = extra_meta or {}
        self.disc_cfg = disc_cfg
        self.D = MultiscaleDiscriminator(disc_cfg).to(self.device) if cfg.gan else None
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = (torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
                      if self.D is not None else None)
        if cfg.lambda_vgg > 0 and vgg is None:
            vgg = VGGPerceptualLoss()
        self.vgg = vgg.to(self.device) if (vgg is not None and cfg.lambda_vgg > 0) else None
        self.step, self.epoch = 0, 0
        self._writer = None
        # Under torchrun: DistributedDataParallel wrappers used for the training forward passes;
        # self.G / self.D stay the plain modules (checkpoints, validation, the G-step D pass).
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.G_train, self.D_train = self.G, self.D
        if self.distributed:
            if self.device.type == "cuda" and _has_batchnorm(self.G):
                self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train = nn.parallel.DistributedDataParallel(self.G, device_ids=ids)
            if self.D is not None:
                self.D_train = nn.parallel.DistributedDataParallel(self.D, device_ids=ids)

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints (rank 0)."""
        return self.rank == 0

    def check_losses(self) -> None:
        """Refuse a config with no loss term for :meth:`train_step` (``cfg.gan`` False and
        ``lambda_vgg``, ``lambda_l1``, ``lambda_l2`` all 0): its first step would have nothing to
        backpropagate. :func:`asapnet.training.loop.train` calls it before it writes anything.
        Trainers with their own ``train_step`` (their own losses) pass.

        Raises:
            ValueError: no loss term.
        """
        cfg = self.cfg
        if type(self).train_step is Trainer.train_step:
            require_loss_term(cfg.gan, cfg.lambda_vgg, cfg.lambda_l1, cfg.lambda_l2)

    # -- checkpoints --------------------------------------------------------------------------
    def meta(self) -> Dict[str, Any]:
        return {"model": self.model_name, "config": self.model_config, "step": self.step, "epoch": self.epoch,
                "train": self.cfg.to_dict(), "discriminator": vars(self.disc_cfg), **self.extra_meta}

    def save(self) -> None:
        """Atomically write ``state.safetensors`` (G, D, optimisers, RNG) and ``generator.safetensors``."""
        tensors = prefixed("G", self.G.state_dict())
        og_t, og_m = optimizer_tensors(self.opt_g)
        tensors.update(prefixed("optG", og_t))
        meta = self.meta()
        meta["optG"] = og_m
        if self.D is not None:
            tensors.update(prefixed("D", self.D.state_dict()))
            od_t, od_m = optimizer_tensors(self.opt_d)
            tensors.update(prefixed("optD", od_t))
            meta["optD"] = od_m
        tensors["rng.torch"] = torch.get_rng_state()
        meta["rng"] = {"python": _jsonable(random.getstate()), "numpy": _jsonable(np.random.get_state())}
        save_tensors(self.out / STATE_FILE, tensors, meta)
        save_generator(self.out / GENERATOR_FILE, self.G, self.model_name, self.model_config,
                       {"step": self.step, **self.extra_meta})

    def load(self, path: Optional[Path] = None) -> bool:
        """Resume from ``path`` (default ``out_dir/state.safetensors``); False if it does not exist.

        The state must come from this trainer's generator: its stored ``model`` and ``config`` are
        compared with this trainer's first (a resumed run with another preset, ``param_upsampling``
        or ``hr_weight_scale`` is refused even where the weight shapes agree) before anything is
        loaded: weights, optimisers, RNG and step stay as they were.

        Raises:
            ValueError: one line naming ``path`` and what differs (another model, config values,
                or weights / discriminator that do not fit).
        """
        path = Path(path or self.out / STATE_FILE)
        if not path.exists():
            return False
        tensors, meta = load_tensors(path)
        diff = config_differences(meta.get("model"), meta.get("config"), self.model_name, self.model_config)
        if diff:
            raise ValueError(f"{path}: the run was trained with another generator ({diff}); resume with the run's "
                             "own options, or start a new run from its weights with --init")
        try:
            G_state = unprefixed("G", tensors)
            self.G.load_state_dict(G_state)  # checked first: a mismatch raises before anything changed
            if self.D is not None and "optD" in meta:
                self.D.load_state_dict(unprefixed("D", tensors))
        except RuntimeError as e:
            raise ValueError(f"{path}: does not fit this run's generator / discriminator: "
                             f"{' '.join(str(e).split())[:300]}") from None
        load_optimizer(self.opt_g, unprefixed("optG", tensors), meta["optG"])
        if self.D is not None and "optD" in meta:
            load_optimizer(self.opt_d, unprefixed("optD", tensors), meta["optD"])
        torch.set_rng_state(tensors["rng.torch"])
        random.setstate(_tuplify(meta["rng"]["python"]))
        st = meta["rng"]["numpy"]
        np.random.set_state((st[0], np.array(st[1], dtype=np.uint32), *st[2:]))
        self.step, self.epoch = int(meta["step"]), int(meta["epoch"])
        return True

    # -- one step -----------------------------------------------------------------------------
    def autocast(self):
        """Context for forward passes and losses: ``torch.autocast`` in ``cfg.precision`` on the
        trainer's device (a no-op for fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def optimize(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One update of ``opt`` from ``loss`` (zero_grad, backward, step), outside autocast; for
        fp16 through ``opt``'s own GradScaler (scaled backward, step skipped on inf/NaN
        gradients, scale updated)."""
        opt.zero_grad(set_to_none=True)
        if self.cfg.precision != "fp16":
            loss.backward()
            opt.step()
            return
        scaler = self._scalers.get(id(opt))
        if scaler is None:
            amp = getattr(torch, "amp", None)
            make = getattr(amp, "GradScaler", None)
            scaler = make(self.device.type) if make is not None else torch.cuda.amp.GradScaler()
            self._scalers[id(opt)] = scaler
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def _forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
        H, W = x.shape[-2:]
        if isinstance(self.G, ASAPGenerator):
            S = self.G.S
            Hp, Wp = math.ceil(H / S) * S, math.ceil(W / S) * S
            t, l, h, w = _random_region(Hp, Wp, self.cfg.crop, S)
            fake = self.G_train(x, region=(t, l, h, w))
            h, w = min(h, H - t), min(w, W - l)  # drop the replicate padding
            fake = fake[..., :h, :w]
        else:
            t, l, h, w = _random_region(H, W, self.cfg.crop, 1)
            fake = self.G_train(x[..., t:t + h, l:l + w])
        return fake, x[..., t:t + h, l:l + w], y[..., t:t + h, l:l + w]

    def train_step(self, batch: Dict[str, Any]) -> Dict[str, float]:
        """One D step then one G step on ``batch`` (``input``, ``target``); returns the losses."""
        self.G.train()
        x = batch["input"].to(self.device)
        y = batch["target"].to(self.device)
        with self.autocast():
            fake, cond, real = self._forward(x, y)
        logs: Dict[str, float] = {}
        if self.D is not None:
            self.D.train()
            # real and fake in one pass (one DDP forward per backward)
            n = real.shape[0]
            with self.autocast():
                d_both = self.D_train(torch.cat([torch.cat([cond, real], 1), torch.cat([cond, fake.detach()], 1)]))
                d_real = [[f[:n] for f in scale] for scale in d_both]
                d_fake = [[f[n:] for f in scale] for scale in d_both]
                loss_d = hinge_d_loss(d_real, d_fake)
            self.optimize(self.opt_d, loss_d)
            logs["D/hinge"] = loss_d.item()
            real_feats = [[f.detach() for f in scale] for scale in d_real]
            for p in self.D.parameters():
                p.requires_grad_(False)
            with self.autocast():
                g_fake = self.D(torch.cat([cond, fake], 1))
            for p in self.D.parameters():
                p.requires_grad_(True)
            with self.autocast():
                loss_g = hinge_g_loss(g_fake)
                logs["G/hinge"] = loss_g.item()
                if self.cfg.lambda_feat > 0:
                    fm = feature_matching_loss(real_feats, g_fake)
                    logs["G/feat"] = fm.item()
                    loss_g = loss_g + self.cfg.lambda_feat * fm
        else:
            loss_g = fake.new_zeros((), dtype=torch.float32)
        with self.autocast():
            if self.vgg is not None:
                v = self.vgg(fake, real)
                logs["G/vgg"] = v.item()
                loss_g = loss_g + self.cfg.lambda_vgg * v
            loss_g = loss_g + pixel_losses(fake, real, self.cfg.lambda_l1, self.cfg.lambda_l2, logs)
        return self.finish_g_step(loss_g, logs, cond, fake, real)

    def finish_g_step(self, loss_g: torch.Tensor, logs: Dict[str, float], cond: torch.Tensor, fake: torch.Tensor,
                      real: torch.Tensor) -> Dict[str, float]:
        """Generator update with ``loss_g``, step count and the tensors kept for sample grids
        (shared by the GAN variants built on this trainer)."""
        self.optimize(self.opt_g, loss_g)
        logs["G/total"] = loss_g.item()
        self.step += 1
        self._last = (cond.detach(), fake.detach().float(), real.detach())  # float: autocast outputs
        return logs

    # -- outputs ------------------------------------------------------------------------------
    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(str(self.out / "tb"))
        return self._writer

    def save_samples(self) -> Path:
        """Write ``samples/step_XXXXXX.png``: rows of input | output | target of the last step."""
        from torchvision.utils import save_image
        cond, fake, real = self._last
        grid = torch.cat([visualize_input(cond, self.num_classes), fake, real], dim=3)
        path = self.out / "samples" / f"step_{self.step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image((grid + 1) / 2, path, nrow=1)
        return path

    @property
    def tile(self) -> int:
        """Side of the tiles whose seams and within-tile contrast the health figures measure: S
        for ASAP-Net, 16 for other generators."""
        return self.G.S if isinstance(self.G, ASAPGenerator) else 16

    def health(self) -> Dict[str, float]:
        """Tile health of the last training sample (label inputs only): within-tile class
        contrast and tile seam ratio of the output and of the real photo
        (:func:`asapnet.metrics.tiles.tile_health`); {} for image inputs. A collapsed HR stream
        shows as a contrast near 0 and a seam ratio far above the real photo's."""
        if self.num_classes is None or not hasattr(self, "_last"):
            return {}
        from ..metrics.tiles import tile_health
        cond, fake, real = self._last
        labels = cond[:, :self.num_classes].argmax(1).cpu()
        return {f"health/{k}": v for k, v in tile_health(fake.cpu(), labels, self.tile, real.cpu()).items()}

    @torch.no_grad()
    def validate(self, dataset: Dataset) -> Dict[str, float]:
        """PSNR (dB) / SSIM / L1 of full-resolution outputs on ``dataset`` (images scaled to 0-255),
        each the mean over the images (which may differ in size); for label inputs also the
        within-tile class contrast (gray levels) and tile seam ratio of the outputs
        (``val/tile_contrast``, ``val/seam_ratio``, means over the images) and how much the output
        follows each pixel's own label (``val/label_sensitivity``, and for ASAP-Net
        ``val/label_sensitivity_hr``: the HR stream alone, gray levels;
        :func:`asapnet.metrics.translation.label_sensitivity`): an HR stream that stops reading
        its label input shows as ``val/label_sensitivity_hr`` falling towards 0."""
        from ..metrics import psnr_ssim
        from ..metrics.tiles import tile_health
        from ..metrics.translation import label_sensitivity
        self.G.eval()
        rows, health, sens = [], [], []
        for i in range(len(dataset)):
            item = dataset[i]
            fake = self.G(item["input"][None].to(self.device)).cpu()
            real = item["target"][None]
            rows.append((*psnr_ssim(fake, real), (fake - real).abs().mean().item()))
            if "label" in item:
                h = tile_health(fake, item["label"][None], self.tile)
                health.append((h["tile_contrast"], h["seam_ratio"]))
                if self.num_classes is not None:
                    sens.append(label_sensitivity(self.G, item["input"][None].to(self.device), self.tile))
        p, s, l1 = (sum(col) / len(rows) for col in zip(*rows))
        out = {"val/psnr": p, "val/ssim": s, "val/l1": l1}
        if health:
            for k, col in zip(("val/tile_contrast", "val/seam_ratio"), zip(*health)):
                vals = [v for v in col if v == v]  # NaN: no tile with two classes
                out[k] = sum(vals) / len(vals) if vals else float("nan")
        for key, name in (("whole", "val/label_sensitivity"), ("hr", "val/label_sensitivity_hr")):
            vals = [d[key] for d in sens if d[key] is not None]
            if vals:
                out[name] = sum(vals) / len(vals)
        return out


def require_loss_term(gan: bool, lambda_vgg: float, lambda_l1: float, lambda_l2: float = 0.0) -> None:
    """Refuse a loss configuration of :meth:`Trainer.train_step` without any term (no GAN loss and
    every weight 0): the generator would have nothing to learn.

    Raises:
        ValueError: one line naming the command-line options that switch a term on.
    """
    if not (gan or lambda_vgg > 0 or lambda_l1 > 0 or lambda_l2 > 0):
        raise ValueError("no loss term: gan=False and lambda_vgg, lambda_l1, lambda_l2 all 0 leave the generator "
                         "nothing to learn (command line: drop --no-gan / --no-vgg or give --lambda-l1 > 0)")


def pixel_losses(fake: torch.Tensor, real: torch.Tensor, lambda_l1: float, lambda_l2: float = 0.0,
                 logs: Optional[Dict[str, float]] = None) -> torch.Tensor:
    """lambda_l1 * mean |fake - real| + lambda_l2 * mean (fake - real)^2 (images (N, C, H, W) on the
    same scale); each term with a positive weight is logged unweighted as ``G/l1`` / ``G/l2``.

    Returns:
        a 0-dim tensor (0 when both weights are 0).
    """
    total = fake.new_zeros(())
    for name, weight, power in (("G/l1", lambda_l1, 1), ("G/l2", lambda_l2, 2)):
        if weight > 0:
            term = (fake - real).abs().pow(power).mean()
            if logs is not None:
                logs[name] = term.item()
            total = total + weight * term
    return total


def _has_batchnorm(m: nn.Module) -> bool:
    return any(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in m.modules())


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, list)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.integer):
        return int(o)
    return o


def _tuplify(o: Any) -> Any:
    return tuple(_tuplify(v) for v in o) if isinstance(o, list) else o
