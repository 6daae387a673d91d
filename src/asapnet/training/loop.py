"""The training loop: :func:`train` runs a :class:`~asapnet.training.trainer.Trainer` on a dataset (resume,
time budget, validation, checkpoints, clean stop on a signal)."""
from __future__ import annotations

import json
import logging
import random
import time
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from .run_dir import METRICS_FILE, RUN_FILE, STATE_FILE, StopSignals, TrainingInterrupted, drop_metrics_after
from .batches import _ResumableSampler, _infinite
from .trainer import Trainer

logger = logging.getLogger(__name__)


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

    Raises:
        ValueError: before anything is written: a config without a loss term
            (:meth:`Trainer.check_losses`); with ``resume``, a state of another generator
            (:meth:`Trainer.load`).
    """
    cfg = trainer.cfg
    trainer.check_losses()  # before anything is read or written
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
