"""``asapnet`` command line: a thin shell over the library.

    asapnet train [--task translate|denoise|deblur|segment] ...
    asapnet translate LABEL.png... -o OUTDIR [--checkpoint PATH]
    asapnet evaluate --task translate|denoise|deblur ...
    asapnet bench | denoise | deblur | export | convert | demo | study ...
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

# Nothing heavy at module level: the parsers (asapnet.parsers) import no torch, and each command
# imports its task module when it runs, so that `asapnet --help` and argument errors come back at
# once. parse_size is re-exported for callers of its old home.
from .parsers import parse_size  # noqa: F401

logger = logging.getLogger(__name__)


TASK_DEFAULTS = {
    "translate": dict(model="asap", preset="cityscapes-256x512-cpu", steps=1000, batch_size=1, lr_g=1e-4, lr_d=4e-4,
                      lambda_l1=0.0, out="runs/asap", sample_every=100, checkpoint_every=100),
    "segment": dict(steps=1000, batch_size=4, out="runs/segmenter"),
}


def cmd_train(a: argparse.Namespace) -> int:
    """Dispatch ``asapnet train`` on ``--task``; unset options take the task's defaults."""
    if a.task == "denoise":
        from .denoise import cmd_train_denoise
        return cmd_train_denoise(a)
    if a.task == "deblur":
        from .deblur import cmd_train_deblur
        return cmd_train_deblur(a)
    for k, v in TASK_DEFAULTS[a.task].items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    if a.task == "segment":
        from .segment import cmd_train_segment
        return cmd_train_segment(a)
    return cmd_train_translate(a)


def cmd_train_translate(a: argparse.Namespace) -> int:
    """``asapnet train --task translate``: label->photo (or A|B image->image) GAN training."""
    from .argtypes import check_precision
    from .config import DiscriminatorConfig, TrainConfig, asap_preset
    from .console import quiet
    from .data.datasets import AlignedABDataset, LabelPhotoDataset, cityscapes_pairs, data_root, pairs_from_folders
    from .data.io import DataError
    from .models import create_model
    import torch

    from .train import Trainer, prepare_run_dir, train

    precision = getattr(a, "precision", "fp32")
    check_precision(precision, a.device, training=True)  # before any data is read

    if a.dataset == "ab":
        full = AlignedABDataset(a.data, a.direction, a.load_size, flip=True)
        num_classes, use_instance = None, False
        in_ch = 3
        make = lambda idx: _Subset(full, idx)  # noqa: E731
        n = len(full)
    elif a.dataset in ("cityscapes-pix2pix", "facades"):
        from .data.cityscapes import Pix2PixCityscapes
        from .data.facades import FacadesCMP
        cls, name, val_split = ((Pix2PixCityscapes, "cityscapes_pix2pix", "val") if a.dataset == "cityscapes-pix2pix"
                                else (FacadesCMP, "facades_cmp", "test"))
        root = Path(a.data or data_root(a.data_root) / name)
        size = a.load_size or ((256, 512) if cls is Pix2PixCityscapes else (256, 256))
        split_set = cls(root / "train", size=size, flip=True)
        num_classes, use_instance, in_ch = cls.num_classes, False, cls.in_channels
        val_split_set = cls(root / val_split, size=size, limit=a.holdout) if a.holdout else None
        n = len(split_set) + a.holdout  # the hold-out comes from the other split
        make = None
    else:
        if a.dataset == "cityscapes":
            pairs = cityscapes_pairs(a.data or data_root(a.data_root) / "cityscapes_samples", "train")
        elif a.dataset == "cityscapes-official":
            from .data.cityscapes import official_pairs
            pairs = official_pairs(a.data or data_root(a.data_root) / "cityscapes", "train")
        else:
            if not (a.label_dir and a.image_dir):
                raise DataError("--dataset folders needs --label-dir and --image-dir")
            pairs = pairs_from_folders(a.label_dir, a.image_dir, a.inst_dir)
        num_classes, use_instance = a.num_classes, not a.no_instance
        in_ch = num_classes + int(use_instance)
        n = len(pairs)
        make = lambda idx, flip=True: LabelPhotoDataset([pairs[i] for i in idx], num_classes, use_instance,  # noqa
                                                        a.load_size, flip=flip)
    if a.holdout >= n:
        raise DataError(f"--holdout {a.holdout} leaves no training pairs (dataset has {n})")
    if make is None:
        train_set, val_set = split_set, val_split_set
    else:
        train_set = make(list(range(n - a.holdout)))
        val_set = None
        if a.holdout:
            val_set = make(list(range(n - a.holdout, n))) if a.dataset == "ab" else make(list(range(n - a.holdout, n)), False)
    device = a.device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun
        import torch.distributed as dist
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
    if a.model not in ("asap", "pix2pixhd", "pix2pix"):
        raise SystemExit(f"asapnet train: model {a.model!r} is not trainable from the CLI (asap, pix2pixhd, pix2pix)")
    torch.manual_seed(a.seed)  # reproducible initialisation of G and D (train() reseeds for the data)
    if a.model == "asap":
        # an instance-edge channel goes to the LR stream only where the preset says so (reference)
        lr_only = asap_preset(a.preset).lr_only_channels if use_instance else 0
        up = {k: getattr(a, k) for k in ("param_upsampling", "hr_weight_scale") if getattr(a, k, None)}
        gcfg = asap_preset(a.preset, in_channels=in_ch, lr_only_channels=lr_only, **up)
        G = create_model("asap", cfg=gcfg)
        if a.head_init == "hyper":
            from .models.asap import init_asap_hypernetwork
            init_asap_hypernetwork(G, modulation=a.head_modulation, last_layer=1.0)
        model_config = gcfg.to_dict()
    else:
        model_config = {"in_channels": in_ch, **({"ngf": a.ngf} if a.ngf else {})}
        G = create_model(a.model, **model_config)
        gcfg = G
    init_from = None
    if getattr(a, "init", None):
        if a.resume:
            raise ValueError("give either --init (new run from a checkpoint's weights) or --resume, not both")
        from .checkpoint import init_from_checkpoint, trained_steps
        init_meta = init_from_checkpoint(G, a.init)  # also checks the architecture fits
        init_from = {"path": str(a.init), "step": trained_steps(init_meta)}
        logger.info(f"initialised from {a.init} ({init_meta['model']}, step {init_from['step']})")
    tcfg = TrainConfig(steps=a.steps, batch_size=a.batch_size, crop=a.crop, load_size=a.load_size, lr_g=a.lr_g,
                       lr_d=a.lr_d, lambda_feat=a.lambda_feat, lambda_vgg=0.0 if a.no_vgg else a.lambda_vgg,
                       lambda_l1=a.lambda_l1, gan=not a.no_gan, seed=a.seed, num_threads=a.threads,
                       sample_every=a.sample_every, checkpoint_every=a.checkpoint_every, device=device,
                       precision=precision)
    dcfg = DiscriminatorConfig(in_channels=in_ch + gcfg.out_channels, ndf=a.ndf, n_layers=a.n_layers_d,
                               num_scales=a.num_d)
    extra = {"num_classes": num_classes, "use_instance": use_instance, "dataset": a.dataset,
             "head_init": (f"{a.head_init} (modulation {a.head_modulation})" if a.head_init == "hyper" else a.head_init)
             if a.model == "asap" else None,
             "command": "asapnet " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else None}
    if init_from is not None:
        extra["init_from"] = init_from
    if a.dataset == "cityscapes-pix2pix":
        extra["label_ids"] = "cityscapes-color"  # ids sharing a colour are merged at translation time
    if a.dataset == "facades":
        extra["label_ids"] = "cmp-facades"  # label files hold ids 1..12, the model's classes are 0..11
    if a.dataset in ("cityscapes-pix2pix", "facades"):
        extra["train_size"] = list(size)
    if a.dataset not in ("cityscapes-pix2pix", "facades"):
        extra["train_pairs"] = [str(getattr(p, "label", p)) for p in getattr(train_set, "pairs", [])]
    trainer = Trainer(G, a.model, model_config, dcfg, tcfg, a.out, num_classes=num_classes, extra_meta=extra)
    if init_from is not None and trainer.D is not None:
        from .checkpoint import init_discriminator_from_state
        if init_discriminator_from_state(trainer.D, a.init):
            init_from["discriminator"] = True
            logger.info(f"discriminator initialised from {a.init}")
    budget = a.time_budget * 60 if getattr(a, "time_budget", None) else None
    # after --init has read its checkpoint (it may lie in the folder --overwrite clears); only the
    # main process deletes, and nobody writes to the folder before every process has checked it
    prepare_run_dir(a.out, a.resume, getattr(a, "overwrite", False), clear=trainer.is_main)
    if trainer.distributed:
        import torch.distributed as dist
        dist.barrier()
    train(trainer, train_set, val_set, resume=a.resume, progress=not (a.quiet or quiet()), time_budget_s=budget)
    if trainer.distributed:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    if trainer.is_main:
        logger.info(f"done: step {trainer.step}, checkpoint {Path(a.out) / 'generator.safetensors'}")
    return 0


class _Subset:
    def __init__(self, ds, idx):
        self.ds, self.idx = ds, idx

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.ds[self.idx[i]]


def cmd_translate(a: argparse.Namespace) -> int:
    """``asapnet translate``: label maps -> photos with a translator checkpoint, on ``--device`` in
    ``--precision`` (:func:`asapnet.models.inference.optimize_for_inference`)."""
    import torch

    from .argtypes import check_precision
    from .checkpoint import load_generator, require_translator
    from .models.inference import optimize_for_inference
    from .translate import default_checkpoint, translate_files

    device, precision = getattr(a, "device", "cpu"), getattr(a, "precision", "fp32")
    check_precision(precision, device)
    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    model, meta = load_generator(ckpt)
    require_translator(model, meta, ckpt)
    # eval mode, spectral norm folded; bf16 / fp16: the whole model in that dtype (CastInference)
    model = optimize_for_inference(model.to(device), precision=precision)
    extra = "" if device == "cpu" and precision == "fp32" else f", {device}, {precision}"
    logger.info(f"model: {ckpt} ({meta['model']}, step {meta.get('step', '?')}{extra})")
    done = translate_files(model, meta, a.inputs, Path(a.out), a.instance_dir, a.on_error, mode=a.mode,
                           device=device)
    logger.info(f"wrote {len(done)} image(s) to {a.out}")
    skipped = len(a.inputs) - len(done)
    if skipped:  # --on-error skip: the run went on, but not every input became an image
        logger.warning(f"skipped {skipped} of {len(a.inputs)} input(s)")
        return 1
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    """Dispatch ``asapnet evaluate`` on ``--task``."""
    if a.task == "deblur":
        if not a.checkpoint:
            raise ValueError("evaluate --task deblur needs --checkpoint")
        from .deblur import cmd_evaluate_deblur
        return cmd_evaluate_deblur(a)
    from .evaluate import cmd_evaluate_translate
    if a.task == "translate":
        return cmd_evaluate_translate(a)  # takes [NAME=]PATH lists and checks --data itself
    if a.checkpoint and len(a.checkpoint) > 1:
        raise ValueError(f"evaluate --task {a.task} takes one --checkpoint")
    if a.data and len(a.data) > 1 and a.task == "translate":
        raise ValueError("evaluate --task translate takes one --data folder")
    ckpt = a.checkpoint[0] if a.checkpoint else None
    if a.task == "denoise":
        if not ckpt or not a.data:
            raise ValueError("evaluate --task denoise needs --checkpoint and --data")
        from .denoise import cmd_evaluate_denoise
        return cmd_evaluate_denoise(argparse.Namespace(**{**vars(a), "checkpoint": ckpt}))
    return cmd_evaluate_translate(argparse.Namespace(**{**vars(a), "checkpoint": ckpt,
                                                        "data": a.data[0] if a.data else None}))


def _lazy_command(module: str) -> "Callable[[argparse.Namespace], int]":
    """``asapnet <command>`` handled by ``asapnet.<module>.cmd_<module>``, imported when it runs."""
    def run(a: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f".{module}", __package__), f"cmd_{module}")(a)
    run.__name__ = f"cmd_{module}"
    return run


#: command -> function(parsed arguments) -> exit status; each imports its task module when called
COMMANDS = {"train": cmd_train, "translate": cmd_translate, "evaluate": cmd_evaluate,
            **{name: _lazy_command(name) for name in ("bench", "denoise", "deblur", "export", "demo", "study", "convert")}}


def build_parser() -> argparse.ArgumentParser:
    """The ``asapnet`` argument parser (:func:`asapnet.parsers.build_parser`); imports no task module."""
    from .parsers import build_parser as build

    return build(description=__doc__.splitlines()[0])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one ``asapnet`` command; returns its exit status.

    One error path: a bad command line (argparse, including the ``type=`` checks of
    :mod:`asapnet.argtypes`) and every user error raised by a command (:class:`DataError`,
    ``ValueError`` from config validation, ``FileNotFoundError``, ``PermissionError``,
    ``IsADirectoryError`` and other ``OSError`` such as a read-only or full output folder, missing
    pretrained weights) print exactly one line ``asapnet <command>: error: <message>`` on stderr
    and give exit status 2, without a traceback. Any other exception is a bug and keeps its
    traceback.

    Progress and info messages are log records of the ``asapnet`` loggers, shown on stderr while
    the command runs (:func:`asapnet.console.cli_logging`): INFO by default, DEBUG with ``-v``,
    WARNING with ``-q`` (which also turns the progress bars off); results stay on stdout.
    """
    import contextlib
    import io

    def one_line(text: str) -> str:
        return " ".join(line.strip() for line in str(text).splitlines() if line.strip())

    def message(e: BaseException) -> str:  # OSError naming a file: "FILE: reason", not "[Errno 13] ...: 'FILE'"
        if isinstance(e, OSError) and e.strerror and e.filename is not None:
            two = f" -> {os.fsdecode(e.filename2)}" if e.filename2 is not None else ""
            return one_line(f"{os.fsdecode(e.filename)}{two}: {e.strerror}")
        return one_line(str(e)) or type(e).__name__

    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \udcxx escapes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            args = parser.parse_args(argv)
    except SystemExit as e:
        text = captured.getvalue()
        if e.code == 2 and text.strip():  # argparse: usage + "prog: error: msg" -> the error line only
            print(one_line(text.strip().splitlines()[-1]), file=sys.stderr)
        else:
            sys.stderr.write(text)
        raise
    sys.stderr.write(captured.getvalue())
    from .console import cli_logging
    from .data.io import DataError
    from .losses import PretrainedWeightsUnavailable

    try:
        with cli_logging(getattr(args, "log_level", logging.INFO)):
            rc = COMMANDS[args.command](args)
            if args.command == "demo":
                # After a threaded server ran torch in handler threads, interpreter teardown can abort
                # in a C++ thread-pool destructor ("terminate called without an active exception");
                # everything is already closed, so leave without the teardown.
                sys.stdout.flush(), sys.stderr.flush()
                os._exit(rc)
        return rc
    except (DataError, ValueError, PretrainedWeightsUnavailable, OSError) as e:
        print(f"asapnet {args.command}: error: {message(e)}", file=sys.stderr)
        return 2
    except SystemExit as e:
        if not isinstance(e.code, str):  # exit statuses (e.g. 130 / 143 after a signal) pass through
            raise
        text = one_line(e.code)  # a command's refusal: the same one line and status 2
        prefix = f"asapnet {args.command}: "
        text = text[len(prefix):] if text.startswith(prefix) else text
        print(f"asapnet {args.command}: error: {text}", file=sys.stderr)
        return 2


def task_alias_main(task: str, argv: Optional[Sequence[str]] = None) -> int:
    """``python -m asapnet.<task> {train,evaluate,<command>} ...`` -> :func:`main` with
    ``--task <task>`` inserted after ``train`` / ``evaluate``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("train", "evaluate"):
        argv = [argv[0], "--task", task, *argv[1:]]
    return main(argv)


if __name__ == "__main__":
    sys.exit(main())
