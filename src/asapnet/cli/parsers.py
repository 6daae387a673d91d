"""The command line's argument parsers, built without importing torch or any task module.

``asapnet --help`` (and every parse) only needs this package (:mod:`.parsers`, :mod:`.task_args`,
:mod:`.argtypes`), :mod:`asapnet.options` (the choices and defaults the options name, one definition
shared with the library), :mod:`asapnet.config` (for a constant) and :mod:`asapnet.apps.httpguard`
(for two); the task modules (:mod:`asapnet.tasks.translate`, :mod:`asapnet.tasks.denoise`, ...) are
imported by the command that runs. :data:`asapnet.options.CONVERT_DATASETS` restates what
:mod:`asapnet.convert.options` derives from its option tables (``tests/test_cli_options.py`` checks
that they agree).
"""
from __future__ import annotations

import argparse
import logging

from .argtypes import (non_negative_float, non_negative_int, positive_int, add_device_arg, add_on_error_arg,
                       add_precision_arg, preset_name)
from ..config import CITYSCAPES_NUM_CLASSES
from ..apps.httpguard import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT
from ..options import (BENCH_VARIANTS, ONNX_DEFAULT_OPSET, ONNX_DEFAULT_OPSET_DYNAMO, CONVERT_SOURCES,
                       CONVERT_DATASETS, parse_size, parse_sizes, parse_sigmas)
from .task_args import (add_deblur_parser, add_denoise_parser, add_evaluate_deblur_args, add_evaluate_translate_args,
                        add_train_deblur_args, add_train_denoise_args, add_train_segment_args)


def build_parser(description: str = "asapnet command line") -> argparse.ArgumentParser:
    """The ``asapnet`` parser: ``-v`` / ``-q`` (log level, see :mod:`asapnet.console`) and one
    sub-parser per command."""
    from .. import __version__

    ap = argparse.ArgumentParser(prog="asapnet", description=description)
    ap.add_argument("--version", action="version", version=f"asapnet {__version__}")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", dest="log_level", action="store_const", const=logging.DEBUG,
                   help="also debug messages")
    g.add_argument("-q", "--quiet", dest="log_level", action="store_const", const=logging.WARNING,
                   help="only warnings and errors on stderr, no progress bars (results still go to stdout)")
    ap.set_defaults(log_level=logging.INFO)
    sub = ap.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_translate_parser(sub)
    add_bench_parser(sub)
    add_evaluate_parser(sub)
    add_denoise_parser(sub)
    add_deblur_parser(sub)
    add_export_parser(sub)
    add_convert_parser(sub)
    add_demo_parser(sub)
    add_study_parser(sub)
    return ap


def add_train_parser(sub) -> argparse.ArgumentParser:
    """Add ``asapnet train`` (every ``--task``) to an ``add_subparsers()`` object."""
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
    # left out of the namespace when not given: the task's options dataclass holds its default (tasks/<task>/config.py)
    p.add_argument("--model", default=argparse.SUPPRESS,
                   help="translate: asap; denoise: asap|dncnn; deblur: asap|deblurgan|msg_unet")
    p.add_argument("--preset", type=preset_name, default=argparse.SUPPRESS,
                   help="ASAP config preset (see asapnet.ASAP_PRESETS; translate: "
                        "cityscapes-256x512-cpu)")
    p.add_argument("--steps", type=positive_int, default=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=positive_int, default=argparse.SUPPRESS)
    p.add_argument("--crop", type=parse_size, default=(256, 512), help="HxW training crop or 'none'")
    p.add_argument("--load-size", type=parse_size, default=None, help="resize inputs to HxW first")
    p.add_argument("--lr-g", type=non_negative_float, default=argparse.SUPPRESS,
                   help="G learning rate (translate: 1e-4, TTUR)")
    p.add_argument("--lr-d", type=non_negative_float, default=argparse.SUPPRESS,
                   help="D learning rate (translate: 4e-4, TTUR)")
    p.add_argument("--lambda-feat", type=non_negative_float, default=10.0)
    p.add_argument("--lambda-vgg", type=non_negative_float, default=10.0)
    p.add_argument("--no-vgg", action="store_true", help="train without the VGG19 perceptual loss")
    p.add_argument("--lambda-l1", type=non_negative_float, default=argparse.SUPPRESS,
                   help="L1 reconstruction weight (translate: 0)")
    p.add_argument("--no-gan", action="store_true", help="no discriminator (reconstruction losses only)")
    p.add_argument("--ndf", type=positive_int, default=64), p.add_argument("--n-layers-d", type=positive_int, default=4)
    p.add_argument("--num-d", type=positive_int, default=2, help="discriminator scales")
    p.add_argument("--holdout", type=non_negative_int, default=0, help="hold the last K pairs out for validation "
                   "(cityscapes-pix2pix / facades: validate on the first K pairs of the val / test split)")
    p.add_argument("--head-init", choices=["hyper", "default"], default="hyper",
                   help="translate, ASAP: initialise the LR-stream head as a hypernetwork of well-scaled MLPs "
                        "(default) or with PyTorch's default init (the MLPs collapse to one colour per tile)")
    p.add_argument("--param-upsampling", choices=["nearest", "bilinear", "blend"], default=None,
                   help="translate, ASAP: how the LR stream's MLP parameters reach every pixel: one MLP per "
                        "S x S tile (nearest, the paper), parameters blended bilinearly between tile centres "
                        "(bilinear), or the four nearest tiles' MLP outputs blended (blend); the last two "
                        "have no tile seams and cost 4x the HR stream's products; default: the preset's")
    p.add_argument("--hr-weight-scale", choices=["fan_in", "none"], default=None,
                   help="train, ASAP: predicted MLP weights multiplied by 1/sqrt(c_in) (fan_in) or used as "
                        "predicted (none, the reference; weights then learn as fast as biases); with --init "
                        "the checkpoint is rescaled to it; default: the preset's")
    p.add_argument("--head-modulation", type=non_negative_float, default=0.3,
                   help="translate, ASAP, --head-init hyper: std of the per-tile part of the initial MLP weights "
                        "(0 = every tile starts with the same MLP)")
    p.add_argument("--out", default=argparse.SUPPRESS, help="run folder (translate: runs/asap)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/state.safetensors")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in an --out folder that holds a run: delete its state, generator, run.json, "
                        "metrics.jsonl, samples/ and tb/ first (without --resume or --overwrite such a folder "
                        "is refused)")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--sample-every", type=positive_int, default=argparse.SUPPRESS, help="(translate: 100)")
    p.add_argument("--checkpoint-every", type=positive_int, default=argparse.SUPPRESS, help="(translate: 100)")
    add_device_arg(p, "translate, denoise, deblur (segment: cpu only)")
    add_precision_arg(p, "autocast of the forward passes and losses: bf16 on cpu, cuda or mps; fp16 on cuda "
                         "only, with gradient scaling (translate, denoise, deblur)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_train_denoise_args(p)
    add_train_deblur_args(p)
    add_train_segment_args(p)
    return p


def add_translate_parser(sub) -> argparse.ArgumentParser:
    """Add ``asapnet translate`` to an ``add_subparsers()`` object."""
    p = sub.add_parser("translate", help="translate label maps into photos")
    p.add_argument("inputs", nargs="+", help="label maps (class-id PNGs, or Cityscapes colour label maps)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--checkpoint", default=None, help="generator .safetensors (default: the shipped model)")
    p.add_argument("--instance-dir", default=None, help="folder of instance maps matched by stem")
    add_on_error_arg(p)
    p.add_argument("--mode", choices=["auto", "pixelwise", "native", "bilinear"], default="auto",
                   help="inputs larger than the training size: pixelwise = LR stream at the training scale, "
                        "per-pixel MLPs at full resolution (ASAP-Net default); bilinear = translate downsampled, "
                        "upsample the output; native = run at the input size as is")
    p.add_argument("--threads", type=positive_int, default=None)
    add_device_arg(p)
    add_precision_arg(p, "the whole generator runs in that dtype (asapnet.inference.optimize."
                         "optimize_for_inference), outputs come back as float32; fp16 needs cuda or mps")
    return p


def add_evaluate_parser(sub) -> argparse.ArgumentParser:
    """Add ``asapnet evaluate`` (every ``--task``) to an ``add_subparsers()`` object."""
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
    add_device_arg(p, "the generators run there, the metrics on the CPU")
    add_evaluate_translate_args(p, shared=False)
    add_evaluate_deblur_args(p, shared=False)
    return p


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("bench", help="time ASAP-Net against pix2pixHD, SPADE and pix2pix")
    p.add_argument("--models", default="asap,pix2pixhd,spade,pix2pix", help="comma-separated registered names")
    p.add_argument("--sizes", default="256x512,512x1024,1024x2048", help="comma-separated HEIGHTxWIDTH")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed passes per model and size")
    p.add_argument("--warmup", type=non_negative_int, default=1, help="untimed passes before timing")
    add_device_arg(p)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--preset", type=preset_name, default=None, help="ASAP preset for every size (default: by size, paper §3.2)")
    p.add_argument("--num-classes", type=positive_int, default=CITYSCAPES_NUM_CLASSES,
                   help="label classes; inputs get one more channel for instance edges")
    p.add_argument("--json", action="store_true", help="print one JSON object per (model, size), no table")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="save runtime vs resolution plot")
    p.add_argument("--variants", default="", help="extra ASAP rows, comma-separated: " + ",".join(BENCH_VARIANTS) +
                   " (time + max abs error vs fp32)")
    p.add_argument("--channels-last", action="store_true",
                   help="every model (ASAP and baselines) with channels-last (NHWC) weights")
    p.add_argument("--winograd", action="store_true",
                   help="every model (ASAP and baselines) with its wide 3x3 convolutions by Winograd F(2x2,3x3)")
    p.add_argument("--stages", action="store_true",
                   help="instead: ASAP per-stage times (downsample, LR, HR) and HR GFLOP/s vs matmul GFLOP/s")
    return p


def sizes_type(text: str) -> list:
    """argparse ``type=`` of a HxW,HxW list (:func:`parse_sizes`)."""
    try:
        return parse_sizes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_export_parser(sub) -> argparse.ArgumentParser:
    """Add ``asapnet export`` to an argparse subparsers object."""
    p = sub.add_parser("export", help="export a generator to ONNX (dynamic height/width) and verify it")
    p.add_argument("--checkpoint", default=None, help="generator .safetensors (default: the shipped model)")
    p.add_argument("-o", "--out", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=positive_int, default=None, help=f"ONNX opset (default {ONNX_DEFAULT_OPSET}, "
                   f"{ONNX_DEFAULT_OPSET_DYNAMO} with --dynamo)")
    p.add_argument("--verify-sizes", type=sizes_type, default=None,
                   help="HxW,HxW sizes compared with PyTorch (default: two sizes derived from S)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter (slow)")
    p.add_argument("--threads", type=positive_int, default=None)
    # no --device: the graph is traced on the CPU (it is device-independent) and verified with
    # onnxruntime's CPU provider against the PyTorch model on the CPU; a GPU would change nothing
    # in the file and only add GPU rounding to the comparison
    return p


def add_demo_parser(sub) -> argparse.ArgumentParser:
    """Add ``asapnet demo`` to an argparse subparsers object."""
    p = sub.add_parser("demo", help="serve a local web page that translates label maps")
    p.add_argument("--checkpoint", default=None, help="generator .safetensors (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    p.add_argument("--examples", default=None, help="folder of *_gtFine_labelIds.png examples")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-concurrent", type=int, default=1,
                   help="translations run at once, others are answered 503 'busy, retry' (default 1: on a CPU one "
                        "forward pass uses every thread; each 2048x2048 request needs about 1.5 GB)")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   help=f"connections served at once, one thread each (default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds a client may stall before it is dropped (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--verbose", action="store_true", help="log every request")
    add_device_arg(p)
    return p


def add_study_parser(sub) -> argparse.ArgumentParser:
    """Add the ``study`` subcommand to an ``add_subparsers()`` object."""
    p = sub.add_parser("study", help="2AFC realism study in the browser (paper §4.1, Fig. 7)")
    p.add_argument("folder_a", help="images of method A")
    p.add_argument("folder_b", help="images of method B (matched to A by file name)")
    p.add_argument("--names", default=None, help="display names 'A,B' for the CSV (default: folder names)")
    p.add_argument("--out", default="study.csv", help="tally CSV (per-answer rows go to *_trials.csv)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--seed", type=int, default=None, help="seed of the trial order and left/right draws")
    p.add_argument("--max-trials", type=int, default=None)
    p.add_argument("--keep-serving", action="store_true", help="do not exit when every trial is answered")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds a client may stall before it is dropped (default {DEFAULT_TIMEOUT:g})")
    return p


def add_convert_parser(sub) -> argparse.ArgumentParser:
    """Add ``asapnet convert`` to an argparse subparsers object. Options left unset take the
    reference defaults of ``--from`` and ``--dataset``."""
    p = sub.add_parser("convert", help="convert a released ASAP-Net / SPADE / pix2pixHD generator (.pth) "
                                       "into an asapnet checkpoint")
    p.add_argument("checkpoint", help="reference generator weights, e.g. checkpoints/cityscapes/latest_net_G.pth")
    p.add_argument("-o", "--out", required=True, help="the .safetensors file to write")
    p.add_argument("--from", dest="source", required=True, choices=CONVERT_SOURCES, help="reference code base")
    p.add_argument("--dataset", choices=CONVERT_DATASETS, default=None,
                   help="fill the reference's option defaults of this dataset (asapnet: cityscapes|facades; "
                        "spade: cityscapes|ade20k|coco; pix2pixhd: cityscapes)")
    p.add_argument("--key", default=None, help="entry of a nested checkpoint holding the state dict (a.b for nesting)")
    g = p.add_argument_group("inputs and sizes (reference --label_nc, --contain_dontcare_label, --no_instance, "
                             "--crop_size, --aspect_ratio, --output_nc)")
    g.add_argument("--label-nc", type=int)
    g.add_argument("--contain-dontcare-label", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--instance", action=argparse.BooleanOptionalAction, default=None,
                   help="instance-edge input channel (--no-instance: none)")
    g.add_argument("--crop-size", type=int)
    g.add_argument("--aspect-ratio", type=float)
    g.add_argument("--output-nc", type=int)
    g.add_argument("--norm-g", help="reference --norm_G (ASAP-Net, SPADE) or --norm (pix2pixHD)")
    a = p.add_argument_group("ASAP-Net")
    for opt in ("lr-width", "lr-max-width", "lr-depth", "hr-width", "hr-depth", "learned-ds-factor"):
        a.add_argument(f"--{opt}", type=int)
    a.add_argument("--lr-instance", action=argparse.BooleanOptionalAction, default=None,
                   help="the instance edges go to the LR stream only (the reference default)")
    a.add_argument("--lr-padding", choices=["zeros", "reflect", "replicate"],
                   help="LR-stream padding (reflect: --reflection_pad; the default of --dataset facades)")
    a.add_argument("--reflection-pad", dest="lr_padding", action="store_const", const="reflect",
                   help="the reference's --reflection_pad: same as --lr-padding reflect")
    a.add_argument("--replicate-pad", dest="lr_padding", action="store_const", const="replicate",
                   help="the reference's --replicate_pad: same as --lr-padding replicate")
    a.add_argument("--positional-encoding", action=argparse.BooleanOptionalAction, default=None,
                   help="--hr_coor cosine (default) or None (--no-positional-encoding)")
    s = p.add_argument_group("SPADE / pix2pixHD")
    s.add_argument("--ngf", type=int)
    s.add_argument("--num-upsampling-layers", choices=["normal", "more", "most"])
    s.add_argument("--use-vae", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--z-dim", type=int)
    s.add_argument("--netg", choices=["global", "local"], help="pix2pixHD --netG")
    for opt in ("n-downsample-global", "n-blocks-global", "n-local-enhancers", "n-blocks-local"):
        s.add_argument(f"--{opt}", type=int)
    return p
