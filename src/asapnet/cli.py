"""``asapnet`` command line: a thin shell over the library.

    asapnet train [--task translate|denoise|deblur|segment] ...
    asapnet translate LABEL.png... -o OUTDIR [--checkpoint PATH]
    asapnet evaluate --task translate|denoise|deblur ...
    asapnet bench | denoise | deblur | export | convert | demo | study ...
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

from .argtypes import device, non_negative_float, non_negative_int, positive_int
from .bench import add_parser as _add_bench, cmd_bench
from .data.io import DataError
from .deblur import add_deblur_parser, add_evaluate_deblur_args, add_train_deblur_args, cmd_deblur, \
    cmd_evaluate_deblur, cmd_train_deblur
from .demo import add_demo_parser, cmd_demo
from .denoise import add_denoise_parser, add_train_denoise_args, cmd_denoise, cmd_evaluate_denoise, \
    cmd_train_denoise, parse_sigmas
from .evaluate import add_evaluate_translate_args, cmd_evaluate_translate
from .export import add_export_parser, cmd_export
from .convert import add_convert_parser, cmd_convert
from .losses import PretrainedWeightsUnavailable
from .segment import add_train_segment_args, cmd_train_segment
from .study import add_study_parser, cmd_study


def parse_size(s: str) -> Optional[Tuple[int, int]]:
    """'256x512' -> (256, 512) as (height, width); 'none' -> None."""
    if s.lower() in ("none", "full"):
        return None
    try:
        h, w = s.lower().split("x")
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HEIGHTxWIDTH (e.g. 256x512), got {s!r}") from None


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a generator (SPADE-style GAN, paper §3.4), a denoiser, a deblurrer "
                                     "or the segmentation-score network")
    p.add_argument("--task", choices=["translate", "denoise", "deblur", "segment"], default="translate",
                   help="translate: label->photo GAN (default); denoise: DnCNN/ASAP on BSD Train400; deblur: "
                        "DeblurGAN/ASAP/MSG U-Net on synthetic motion blur; segment: segmenter for segscore")
    p.add_argument("--dataset", choices=["cityscapes", "cityscapes-pix2pix", "cityscapes-official", "facades",
                                         "folders", "ab"], default="cityscapes",
                   help="cityscapes: {train_label,train_inst,train_img} layout; cityscapes-pix2pix: the pix2pix "
                        "photo|colour-label JPEGs (<data>/train, validation on <data>/val); cityscapes-official: "
                        "gtFine/ + leftImg8bit/ as downloaded; facades: CMP Facades base set (<data>/train, "
                        "validation on <data>/test); folders: paired folders matched by stem; ab: pix2pix "
                        "side-by-side A|B images")
    p.add_argument("--data-root", default=None, help="data folder (default $ASAPNET_DATA or ../shared/data)")
    p.add_argument("--data", default=None, help="dataset folder (default <data-root>/cityscapes_samples)")
    p.add_argument("--label-dir"), p.add_argument("--image-dir"), p.add_argument("--inst-dir")
    p.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"])
    p.add_argument("--num-classes", type=positive_int, default=35)
    p.add_argument("--no-instance", action="store_true", help="do not use instance edge maps")
    # None = the task's own default (see TASK_DEFAULTS and the task modules)
    p.add_argument("--model", default=None, help="translate: asap; denoise: asap|dncnn; deblur: asap|deblurgan|msg_unet")
    p.add_argument("--preset", default=None, help="ASAP config preset (see asapnet.ASAP_PRESETS; translate: "
                                                 "cityscapes-256x512-cpu)")
    p.add_argument("--steps", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--crop", type=parse_size, default=(256, 512), help="HxW training crop or 'none'")
    p.add_argument("--load-size", type=parse_size, default=None, help="resize inputs to HxW first")
    p.add_argument("--lr-g", type=non_negative_float, default=None, help="G learning rate (translate: 1e-4, TTUR)")
    p.add_argument("--lr-d", type=non_negative_float, default=None, help="D learning rate (translate: 4e-4, TTUR)")
    p.add_argument("--lambda-feat", type=non_negative_float, default=10.0)
    p.add_argument("--lambda-vgg", type=non_negative_float, default=10.0)
    p.add_argument("--no-vgg", action="store_true", help="train without the VGG19 perceptual loss")
    p.add_argument("--lambda-l1", type=non_negative_float, default=None, help="L1 reconstruction weight (translate: 0)")
    p.add_argument("--no-gan", action="store_true", help="no discriminator (reconstruction losses only)")
    p.add_argument("--ndf", type=positive_int, default=64), p.add_argument("--n-layers-d", type=positive_int, default=4)
    p.add_argument("--num-d", type=positive_int, default=2, help="discriminator scales")
    p.add_argument("--holdout", type=non_negative_int, default=0, help="hold the last K pairs out for validation "
                   "(cityscapes-pix2pix / facades: validate on the first K pairs of the val / test split)")
    p.add_argument("--head-init", choices=["hyper", "default"], default="hyper",
                   help="translate, ASAP: initialise the LR-stream head as a hypernetwork of well-scaled MLPs "
                        "(default) or with PyTorch's default init (the MLPs collapse to one colour per tile)")
    p.add_argument("--param-upsampling", choices=["nearest", "bilinear"], default=None,
                   help="translate, ASAP: how the LR stream's MLP parameters reach every pixel: one MLP per "
                        "S x S tile (nearest, the paper) or blended bilinearly between tile centres (no tile "
                        "seams, 4x the HR stream's products); default: the preset's")
    p.add_argument("--head-modulation", type=non_negative_float, default=0.3,
                   help="translate, ASAP, --head-init hyper: std of the per-tile part of the initial MLP weights "
                        "(0 = every tile starts with the same MLP)")
    p.add_argument("--out", default=None, help="run folder (translate: runs/asap)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/state.safetensors")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in an --out folder that holds a run: delete its state, generator, run.json, "
                        "metrics.jsonl, samples/ and tb/ first (without --resume or --overwrite such a folder "
                        "is refused)")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--sample-every", type=positive_int, default=None, help="(translate: 100)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None, help="(translate: 100)")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_train_denoise_args(p)
    add_train_deblur_args(p)
    add_train_segment_args(p)


TASK_DEFAULTS = {
    "translate": dict(model="asap", preset="cityscapes-256x512-cpu", steps=1000, batch_size=1, lr_g=1e-4, lr_d=4e-4,
                      lambda_l1=0.0, out="runs/asap", sample_every=100, checkpoint_every=100),
    "segment": dict(steps=1000, batch_size=4, out="runs/segmenter"),
}


def cmd_train(a: argparse.Namespace) -> int:
    """Dispatch ``asapnet train`` on ``--task``; unset options take the task's defaults."""
    if a.task == "denoise":
        return cmd_train_denoise(a)
    if a.task == "deblur":
        return cmd_train_deblur(a)
    for k, v in TASK_DEFAULTS[a.task].items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    if a.task == "segment":
        return cmd_train_segment(a)
    return cmd_train_translate(a)


def cmd_train_translate(a: argparse.Namespace) -> int:
    """``asapnet train --task translate``: label->photo (or A|B image->image) GAN training."""
    from .config import DiscriminatorConfig, TrainConfig, asap_preset
    from .data.datasets import AlignedABDataset, LabelPhotoDataset, cityscapes_pairs, data_root, pairs_from_folders
    from .models import create_model
    import torch

    from .train import Trainer, prepare_run_dir, train

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
        up = {"param_upsampling": a.param_upsampling} if getattr(a, "param_upsampling", None) else {}
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
        print(f"initialised from {a.init} ({init_meta['model']}, step {init_from['step']})")
    tcfg = TrainConfig(steps=a.steps, batch_size=a.batch_size, crop=a.crop, load_size=a.load_size, lr_g=a.lr_g,
                       lr_d=a.lr_d, lambda_feat=a.lambda_feat, lambda_vgg=0.0 if a.no_vgg else a.lambda_vgg,
                       lambda_l1=a.lambda_l1, gan=not a.no_gan, seed=a.seed, num_threads=a.threads,
                       sample_every=a.sample_every, checkpoint_every=a.checkpoint_every, device=device)
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
    if a.dataset in ("cityscapes-pix2pix", "facades"):
        extra["train_size"] = list(size)
    if a.dataset not in ("cityscapes-pix2pix", "facades"):
        extra["train_pairs"] = [str(getattr(p, "label", p)) for p in getattr(train_set, "pairs", [])]
    trainer = Trainer(G, a.model, model_config, dcfg, tcfg, a.out, num_classes=num_classes, extra_meta=extra)
    if init_from is not None and trainer.D is not None:
        from .checkpoint import init_discriminator_from_state
        if init_discriminator_from_state(trainer.D, a.init):
            init_from["discriminator"] = True
            print(f"discriminator initialised from {a.init}")
    budget = a.time_budget * 60 if getattr(a, "time_budget", None) else None
    # after --init has read its checkpoint (it may lie in the folder --overwrite clears); only the
    # main process deletes, and nobody writes to the folder before every process has checked it
    prepare_run_dir(a.out, a.resume, getattr(a, "overwrite", False), clear=trainer.is_main)
    if trainer.distributed:
        import torch.distributed as dist
        dist.barrier()
    train(trainer, train_set, val_set, resume=a.resume, progress=not a.quiet, time_budget_s=budget)
    if trainer.distributed:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    if trainer.is_main:
        print(f"done: step {trainer.step}, checkpoint {Path(a.out) / 'generator.safetensors'}")
    return 0


class _Subset:
    def __init__(self, ds, idx):
        self.ds, self.idx = ds, idx

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.ds[self.idx[i]]


def _add_translate(sub) -> None:
    p = sub.add_parser("translate", help="translate label maps into photos")
    p.add_argument("inputs", nargs="+", help="label maps (class-id PNGs, or Cityscapes colour label maps)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--checkpoint", default=None, help="generator .safetensors (default: the shipped model)")
    p.add_argument("--instance-dir", default=None, help="folder of instance maps matched by stem")
    p.add_argument("--on-error", choices=["stop", "skip"], default="stop")
    p.add_argument("--mode", choices=["auto", "pixelwise", "native", "bilinear"], default="auto",
                   help="inputs larger than the training size: pixelwise = LR stream at the training scale, "
                        "per-pixel MLPs at full resolution (ASAP-Net default); bilinear = translate downsampled, "
                        "upsample the output; native = run at the input size as is")
    p.add_argument("--threads", type=positive_int, default=None)


def cmd_translate(a: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_generator
    from .models.inference import prepare_for_inference
    from .translate import default_checkpoint, translate_files

    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    model, meta = load_generator(ckpt)
    from .checkpoint import require_translator
    require_translator(model, meta, ckpt)
    prepare_for_inference(model)
    print(f"model: {ckpt} ({meta['model']}, step {meta.get('step', '?')})")
    done = translate_files(model, meta, a.inputs, Path(a.out), a.instance_dir, a.on_error, mode=a.mode)
    print(f"wrote {len(done)} image(s) to {a.out}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score a checkpoint: translate (segscore, PSNR, SSIM, FID), "
                                        "denoise (PSNR/SSIM per sigma) or deblur (PSNR/SSIM)")
    p.add_argument("--task", choices=["translate", "denoise", "deblur"], default="translate")
    p.add_argument("--checkpoint", nargs="+", default=None, metavar="[NAME=]PATH",
                   help="checkpoint(s); denoise takes one (translate: several are scored side by side; default: the shipped model)")
    p.add_argument("--data", nargs="*", default=None, help="data folder(s)")
    p.add_argument("--data-root", default=None, help="default $ASAPNET_DATA or ../shared/data")
    p.add_argument("--metrics", default=None, help="translate: comma-separated metrics")
    p.add_argument("--sigma", type=parse_sigmas, default=[15.0, 25.0, 50.0], help="denoise: sigma list, e.g. 15,25,50")
    p.add_argument("--seed", type=non_negative_int, default=0, help="noise / blur seed")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("--threads", type=positive_int, default=None)
    add_evaluate_translate_args(p, shared=False)
    add_evaluate_deblur_args(p, shared=False)


def cmd_evaluate(a: argparse.Namespace) -> int:
    """Dispatch ``asapnet evaluate`` on ``--task``."""
    if a.task == "deblur":
        if not a.checkpoint:
            raise ValueError("evaluate --task deblur needs --checkpoint")
        return cmd_evaluate_deblur(a)
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
        return cmd_evaluate_denoise(argparse.Namespace(**{**vars(a), "checkpoint": ckpt}))
    return cmd_evaluate_translate(argparse.Namespace(**{**vars(a), "checkpoint": ckpt,
                                                        "data": a.data[0] if a.data else None}))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="asapnet", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"asapnet {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_translate(sub)
    _add_bench(sub)
    _add_evaluate(sub)
    add_denoise_parser(sub)
    add_deblur_parser(sub)
    add_export_parser(sub)
    add_convert_parser(sub)
    add_demo_parser(sub)
    add_study_parser(sub)
    return ap


COMMANDS = {"train": cmd_train, "translate": cmd_translate, "bench": cmd_bench, "evaluate": cmd_evaluate,
            "denoise": cmd_denoise, "deblur": cmd_deblur, "export": cmd_export, "demo": cmd_demo, "study": cmd_study}
COMMANDS["convert"] = cmd_convert


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one ``asapnet`` command; returns its exit status.

    One error path: a bad command line (argparse, including the ``type=`` checks of
    :mod:`asapnet.argtypes`) and every user error raised by a command (:class:`DataError`,
    ``ValueError`` from config validation, ``FileNotFoundError``, ``PermissionError``,
    ``IsADirectoryError`` and other ``OSError`` such as a read-only or full output folder, missing
    pretrained weights) print exactly one line ``asapnet <command>: error: <message>`` on stderr
    and give exit status 2, without a traceback. Any other exception is a bug and keeps its
    traceback.
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
    try:
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
