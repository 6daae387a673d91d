"""GAN training with the SPADE optimisation procedure (ASAP-Net paper §3.4).

Multi-scale PatchGAN discriminator, hinge loss, feature matching (lambda 10), VGG19 perceptual
loss (lambda 10), Adam betas (0, 0.9), TTUR (G 1e-4, D 4e-4).

For generators that support it (ASAP-Net), training runs at full resolution on crops: the LR
stream sees the whole image, the HR stream, the discriminator and the losses only a random
S-aligned crop. Other generators get the input and target cropped.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from ..checkpoint import (load_optimizer, load_tensors, optimizer_tensors, prefixed, save_generator, save_tensors,
                         unprefixed, write_text_atomic)
from ..config import DiscriminatorConfig, TrainConfig
from ..losses.perceptual import VGGPerceptualLoss
from ..losses.gan import feature_matching_loss, hinge_d_loss, hinge_g_loss
from ..models.asap import ASAPGenerator
from ..models.discriminator import MultiscaleDiscriminator

logger = logging.getLogger(__name__)

STATE_FILE = "state.safetensors"
GENERATOR_FILE = "generator.safetensors"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
#: Files whose presence marks a folder as holding a training run (see :func:`prepare_run_dir`).
RUN_MARKERS = (STATE_FILE, GENERATOR_FILE, RUN_FILE)
#: What a run writes into its folder; ``--overwrite`` deletes these and nothing else.
RUN_OUTPUTS = (STATE_FILE, GENERATOR_FILE, GENERATOR_FILE + ".json", RUN_FILE, METRICS_FILE, "samples", "tb")


def prepare_run_dir(out: str | Path, resume: bool = False, overwrite: bool = False, clear: bool = True) -> None:
    """Check the run folder ``out`` before ``asapnet train`` starts (every task).

    A folder that already holds a run (``state.safetensors``, ``generator.safetensors`` or
    ``run.json``) is only used with ``resume`` (continue it) or ``overwrite`` (start again: the
    run's own files, :data:`RUN_OUTPUTS` and interrupted atomic writes, are deleted first; other
    files in the folder are left alone). An empty, missing or unrelated folder is always fine.

    Args:
        clear: with ``overwrite``, delete the old run's files (False on the non-main processes
            of a distributed run, which only check).

    Raises:
        ValueError: ``out`` holds a run and neither flag is given, or both flags are given (the
            CLI turns it into one error line and exit status 2).
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("give either --resume (continue the run) or --overwrite (start it again), not both")
    found = [name for name in RUN_MARKERS if (out / name).exists()]
    if not found or resume:
        return
    if not overwrite:
        raise ValueError(f"{out} already holds a training run ({', '.join(found)}): pass --resume to continue it "
                         "or --overwrite to delete it and start again")
    if not clear:
        return
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
    for name in (STATE_FILE, GENERATOR_FILE, GENERATOR_FILE + ".json"):  # leftovers of killed atomic writes
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


class TrainingInterrupted(SystemExit):
    """Raised by :func:`train` when SIGINT or SIGTERM arrived: the running step was finished and
    a checkpoint written first. A ``SystemExit`` whose code is 128 + the signal number (130 for
    SIGINT, 143 for SIGTERM), so left uncaught it ends the process with that status and no
    traceback.

    Attributes:
        signum: the signal received. step: the step of the checkpoint written (``None`` when a
        second signal stopped the process before it was written). path: that checkpoint.
    """

    def __init__(self, signum: int, step: Optional[int] = None, path: Optional[Path] = None):
        super().__init__(128 + signum)
        self.signum, self.step, self.path = signum, step, path


class StopSignals:
    """Context manager: while active, SIGINT and SIGTERM only record the signal in
    :attr:`signum` (the training loop stops after the running step, see :func:`train`); a second
    signal raises :class:`TrainingInterrupted` at once. The previous handlers are restored on
    exit. A signal the process ignores stays ignored; outside the main thread (where Python
    cannot install handlers) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            return
        print(f"{signal.Signals(signum).name} again: stopping now, without a new checkpoint", file=sys.stderr,
              flush=True)
        raise TrainingInterrupted(signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:  # e.g. SIGINT of a `cmd &` background job
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)  # None: a handler not set from Python
        self._previous.clear()


def _stop_signal(stop: StopSignals, trainer: "Trainer") -> int:
    """The signal that asks training to stop (0: none); under torchrun the largest over the
    processes, so that every process leaves the loop after the same step."""
    signum = stop.signum or 0
    if trainer.distributed:
        on_gpu = dist.get_backend() == "nccl"
        t = torch.tensor([signum], dtype=torch.int64, device=trainer.device if on_gpu else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        signum = int(t.item())
    return signum


def drop_metrics_after(path: str | Path, step: int) -> None:
    """Make ``metrics.jsonl`` at ``path`` end at ``step``: lines of later steps (logged by a run
    that was then interrupted before its next checkpoint, and about to be redone) and torn lines
    (a write cut by a kill) are removed, with an atomic rewrite. Nothing happens when the file is
    missing or already consistent."""
    path = Path(path)
    if not path.is_file():
        return
    text = path.read_text()
    keep = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)) and row["step"] > step:
            continue
        keep.append(line)
    new = "".join(line + "\n" for line in keep)
    if new != text:
        write_text_atomic(path, new)


def label_colors(n: int) -> torch.Tensor:
    """A fixed colour per class id (n, 3) in [-1, 1] for visualising label maps: the Cityscapes
    palette for its 35 label ids, the CMP palette for the 12 Facades classes, else random."""
    from ..data import cityscapes, facades
    for pal in (cityscapes.PALETTE, facades.PALETTE):
        if len(pal) == n:
            return torch.from_numpy(pal).float() / 127.5 - 1
    g = torch.Generator().manual_seed(12345)
    return torch.rand(n, 3, generator=g) * 2 - 1


def visualize_input(x: torch.Tensor, num_classes: Optional[int]) -> torch.Tensor:
    """Generator input (N, C, H, W) -> an RGB picture (N, 3, H, W) in [-1, 1]."""
    if num_classes is None:
        return x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
    idx = x[:, :num_classes].argmax(1)  # (N, H, W)
    rgb = label_colors(num_classes).to(x.device)[idx].permute(0, 3, 1, 2)
    if x.shape[1] > num_classes:  # instance edges in white
        rgb = torch.where(x[:, num_classes:num_classes + 1] > 0, torch.ones_like(rgb), rgb)
    return rgb


class _ResumableSampler(torch.utils.data.Sampler):
    """The indices of ``base`` (a sampler whose order depends only on (seed, epoch), like
    ``DistributedSampler``) from position ``start`` on, so that a resumed run continues the
    interrupted epoch where it stopped instead of replaying it."""

    def __init__(self, base: DistributedSampler):
        self.base, self.start = base, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return iter(list(self.base)[self.start:])

    def __len__(self) -> int:
        return len(self.base) - self.start


def _infinite(loader: DataLoader, epoch: int, start: int = 0) -> Iterator[tuple]:
    """(epoch, batch) forever, beginning at sample ``start`` of ``epoch``."""
    while True:
        loader.sampler.set_epoch(epoch, start)
        for batch in loader:
            yield epoch, batch
        epoch, start = epoch + 1, 0


def _random_region(h: int, w: int, crop: Optional[tuple], align: int) -> tuple:
    """Random (top, left, height, width) crop of an h x w image, aligned to ``align`` pixels.

    The start is drawn uniformly from positions that may hang over the border by up to the crop
    minus one cell, then clamped into the image, so the border cells are inside the crop as often
    as the centre ones (a start drawn inside the image alone puts the first column of a 256-wide
    crop of a 512-wide image in 1 of 17 crops: ASAP's left-most tiles then stayed untrained).
    """
    if crop is None:
        ch, cw = h, w
    else:
        ch, cw = min(crop[0], h), min(crop[1], w)
    ch, cw = max(align, ch // align * align), max(align, cw // align * align)

    def start(size: int, c: int) -> int:
        n, k = max(0, (size - c) // align), c // align  # last start, crop length, in cells
        if n == 0:
            return 0
        return min(max(random.randint(-(k - 1), n + k - 1), 0), n) * align

    return start(h, ch), start(w, cw), ch, cw


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
        """Resume from ``path`` (default ``out_dir/state.safetensors``); False if it does not exist."""
        path = Path(path or self.out / STATE_FILE)
        if not path.exists():
            return False
        tensors, meta = load_tensors(path)
        self.G.load_state_dict(unprefixed("G", tensors))
        load_optimizer(self.opt_g, unprefixed("optG", tensors), meta["optG"])
        if self.D is not None and "optD" in meta:
            self.D.load_state_dict(unprefixed("D", tensors))
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
            if self.cfg.lambda_l1 > 0:
                l1 = (fake - real).abs().mean()
                logs["G/l1"] = l1.item()
                loss_g = loss_g + self.cfg.lambda_l1 * l1
            if self.cfg.lambda_l2 > 0:
                l2 = (fake - real).pow(2).mean()
                logs["G/l2"] = l2.item()
                loss_g = loss_g + self.cfg.lambda_l2 * l2
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
        (``val/tile_contrast``, ``val/seam_ratio``, means over the images)."""
        from ..metrics import psnr_ssim
        from ..metrics.tiles import tile_health
        self.G.eval()
        rows, health = [], []
        for i in range(len(dataset)):
            item = dataset[i]
            fake = self.G(item["input"][None].to(self.device)).cpu()
            real = item["target"][None]
            rows.append((*psnr_ssim(fake, real), (fake - real).abs().mean().item()))
            if "label" in item:
                h = tile_health(fake, item["label"][None], self.tile)
                health.append((h["tile_contrast"], h["seam_ratio"]))
        p, s, l1 = (sum(col) / len(rows) for col in zip(*rows))
        out = {"val/psnr": p, "val/ssim": s, "val/l1": l1}
        if health:
            for k, col in zip(("val/tile_contrast", "val/seam_ratio"), zip(*health)):
                vals = [v for v in col if v == v]  # NaN: no tile with two classes
                out[k] = sum(vals) / len(vals) if vals else float("nan")
        return out


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


def train(trainer: Trainer, dataset: Dataset, val_dataset: Optional[Dataset] = None, resume: bool = False,
          progress: bool = True, on_step: Optional[Callable[[int, Dict[str, float]], None]] = None,
          time_budget_s: Optional[float] = None) -> Trainer:
    """Run ``trainer`` on ``dataset`` until ``trainer.cfg.steps`` total steps.

    With ``resume=True`` it continues from ``out_dir/state.safetensors`` when present (model,
    optimisers, step, RNG). Checkpoints are written every ``checkpoint_every`` steps and at the end.
    With ``time_budget_s`` (seconds of wall clock for this call) training also ends at the first
    step past the budget, with the same final samples, validation and checkpoint. Every
    checkpoint records the seconds of wall clock this call has run in its metadata
    (``train_seconds_last_call``).

    Lines of ``metrics.jsonl`` logged after the starting step (by a run killed before its next
    checkpoint) are dropped first, so a resumed run logs every step once.

    SIGINT / SIGTERM during the loop finish the running step, write a checkpoint (unless that
    step just wrote one), print ``interrupted at step N, saved to ...`` and raise
    :class:`TrainingInterrupted` (exit status 130 / 143 when uncaught); the previous signal
    handlers are restored when this returns or raises.
    """
    cfg = trainer.cfg
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if not (resume and trainer.load()):
        random.seed(cfg.seed + trainer.rank)  # augmentation differs per rank; model init is broadcast by DDP
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
    main = trainer.is_main
    if main:
        trainer.out.mkdir(parents=True, exist_ok=True)
        drop_metrics_after(trainer.out / METRICS_FILE, trainer.step)
        (trainer.out / RUN_FILE).write_text(json.dumps(trainer.meta(), indent=2, default=str))
    # The order of every epoch is a function of (seed, epoch) alone (DistributedSampler, also for
    # one process), and a resumed run starts the interrupted epoch at its next batch: kill + resume
    # visits the same batches as an uninterrupted run.
    world = dist.get_world_size() if trainer.distributed else 1
    drop_last = trainer.distributed or len(dataset) >= cfg.batch_size
    sampler = _ResumableSampler(DistributedSampler(dataset, num_replicas=world, rank=trainer.rank,
                                                   shuffle=cfg.shuffle, seed=cfg.seed, drop_last=trainer.distributed))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=drop_last,
                        generator=torch.Generator().manual_seed(cfg.seed))  # keeps the global RNG untouched
    epoch, done = divmod(trainer.step, len(loader))
    batches = _infinite(loader, epoch, done * cfg.batch_size)
    bar = None
    if progress and main:
        from ..console import progress as progress_bar  # stderr; off when stderr is not a terminal or with -q
        bar = progress_bar(total=cfg.steps, initial=trainer.step, desc="train", unit="step", leave=True)
    t0, start = time.time(), trainer.step
    try:
        with StopSignals() as stop:
            _loop(trainer, batches, val_dataset, bar, on_step, time_budget_s, stop, t0, start)
    finally:
        if bar is not None:
            bar.close()
        if trainer._writer is not None:
            trainer._writer.flush()
    return trainer


def _loop(trainer: Trainer, batches: Iterator[tuple], val_dataset: Optional[Dataset], bar: Any,
          on_step: Optional[Callable[[int, Dict[str, float]], None]], time_budget_s: Optional[float],
          stop: StopSignals, t0: float, start: int) -> None:
    """The steps of :func:`train` from ``trainer.step`` on (see there)."""
    cfg, main = trainer.cfg, trainer.is_main
    while trainer.step < cfg.steps:
        trainer.epoch, batch = next(batches)
        logs = trainer.train_step(batch)
        s = trainer.step
        last = s == cfg.steps or (time_budget_s is not None and time.time() - t0 > time_budget_s)
        saved = False
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in logs.items()})
        if main and (s % cfg.log_every == 0 or last):
            for k, v in {**logs, **trainer.health()}.items():
                trainer.writer.add_scalar(k, v, s)
            trainer.writer.add_scalar("time/sec_per_step", (time.time() - t0) / max(1, s - start), s)
        if main and (s % cfg.sample_every == 0 or last):
            trainer.save_samples()
        if main and (s % cfg.checkpoint_every == 0 or last):
            if val_dataset is not None:
                vals = trainer.validate(val_dataset)
                for k, v in vals.items():
                    trainer.writer.add_scalar(k, v, s)
            else:
                vals = {}
            vals.update(trainer.health())
            if vals:
                with open(trainer.out / METRICS_FILE, "a") as f:
                    f.write(json.dumps({"step": s, **vals}) + "\n")
            # wall time of this call (a resumed run counts from its own start), in the checkpoint metadata
            trainer.extra_meta["train_seconds_last_call"] = round(time.time() - t0, 3)
            trainer.save()
            saved = True
        if on_step is not None:
            on_step(s, logs)
        signum = _stop_signal(stop, trainer)
        if signum:
            path = trainer.out / STATE_FILE
            if main:
                if not saved:
                    trainer.extra_meta["train_seconds_last_call"] = round(time.time() - t0, 3)
                    trainer.save()
                if bar is not None:
                    bar.close()
                logger.warning(f"interrupted at step {s}, saved to {path}")
            raise TrainingInterrupted(signum, s, path)
        if last:
            break
    return trainer
