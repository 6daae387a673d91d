"""The options of the denoise, deblur, segment and translation-evaluation tasks: their ``train`` /
``evaluate`` argument groups and the ``asapnet denoise`` / ``asapnet deblur`` commands (no torch)."""
from __future__ import annotations

import argparse

from .argtypes import (non_negative_float, non_negative_int, positive_float, positive_int, add_device_arg,
                       add_on_error_arg)
from ..options import (DNCNN_CHECKPOINT, ASAP_DENOISE_CHECKPOINT, SADNET_CHECKPOINT, ALL_METRICS, DEFAULT_METRICS,
                       TABLE_METRICS, EVALUATE_DATASETS, SEGMENT_ARCHITECTURES, parse_sigmas)


def add_train_denoise_args(p: argparse.ArgumentParser) -> None:
    """Options of ``asapnet train --task denoise`` that the GAN ``train`` parser lacks."""
    g = p.add_argument_group("denoising (--task denoise)")
    g.add_argument("--sigma", type=non_negative_float, default=None, help="fixed training noise σ on the 0-255 scale (default 25)")
    g.add_argument("--blind", action="store_true", help="blind training, σ ~ U[10, 55] per patch")
    g.add_argument("--patch-size", type=positive_int, default=None, help="training patch side (default 40 dncnn, 48 asap)")
    g.add_argument("--patches-per-image", type=positive_int, default=64)
    g.add_argument("--depth", type=positive_int, default=None, help="DnCNN depth (default 17 = DnCNN-S, 20 with --blind)")
    g.add_argument("--loss", choices=["l2", "l1"], default="l2")
    g.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="start from the weights of this generator checkpoint (e.g. a shipped one); the "
                        "optimiser, step and schedule start fresh (use --resume to continue a run folder)")
    g.add_argument("--val-images", type=non_negative_int, default=None,
                   help="held-out images scored every checkpoint (default: denoise 3 Set12 images, deblur 0)")


def add_evaluate_denoise_args(p: argparse.ArgumentParser) -> None:
    """Options of ``asapnet evaluate --task denoise`` (the lead adds ``--task``)."""
    p.add_argument("--checkpoint", required=True, help="denoiser .safetensors (training run or shipped)")
    p.add_argument("--data", nargs="+", required=True,
                   help="folder(s) of clean test images, e.g. ../shared/data/denoise/BSD68")
    p.add_argument("--sigma", type=parse_sigmas, default=[15.0, 25.0, 50.0], help="σ list, e.g. 15,25,50")
    p.add_argument("--seed", type=non_negative_int, default=0, help="noise seed")
    p.add_argument("--json", action="store_true", help="print one JSON object per line instead of a table")
    p.add_argument("--threads", type=positive_int, default=None)
    add_device_arg(p, "the denoiser runs there, the metrics on the CPU")


def add_denoise_parser(sub) -> argparse.ArgumentParser:
    """Add the ``denoise`` subcommand to an ``add_subparsers()`` object."""
    p = sub.add_parser("denoise", help="denoise gray images with a shipped or trained denoiser")
    p.add_argument("inputs", nargs="+", help="image files (colour is converted to gray)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--checkpoint", default=None,
                   help=f"denoiser .safetensors (default: the shipped blind ASAP model {ASAP_DENOISE_CHECKPOINT}; "
                        f"'dncnn' = the shipped {DNCNN_CHECKPOINT}, 'sadnet' = {SADNET_CHECKPOINT})")
    p.add_argument("--sigma", type=non_negative_float, default=None,
                   help="treat the inputs as clean and add noise of this σ (0-255) first; reports PSNR")
    p.add_argument("--seed", type=non_negative_int, default=0)
    add_on_error_arg(p)
    p.add_argument("--threads", type=positive_int, default=None)
    add_device_arg(p)
    return p


def add_train_deblur_args(p: argparse.ArgumentParser) -> None:
    """Options of ``asapnet train --task deblur`` that the GAN ``train`` parser lacks."""
    g = p.add_argument_group("deblurring (--task deblur)")
    g.add_argument("--gopro", default=None, help="folder of real pairs (blur/ + sharp/, GoPro layout) "
                                                 "instead of synthetic blur on the shared photos")
    g.add_argument("--sharp-dir", default=None, help="folder of sharp photos to blur synthetically "
                                                     "(default: the shared Cityscapes + CBSD68 training photos)")
    g.add_argument("--crop-size", type=positive_int, default=128, help="square training crop side")
    g.add_argument("--crops-per-image", type=positive_int, default=16)
    g.add_argument("--critic-iters", type=positive_int, default=5, help="WGAN-GP critic steps per generator step")
    g.add_argument("--gp-lambda", type=non_negative_float, default=10.0, help="gradient-penalty weight")
    g.add_argument("--lambda-content", type=non_negative_float, default=100.0, help="VGG19 conv3_3 MSE weight")
    g.add_argument("--critic-ndf", type=positive_int, default=64)
    g.add_argument("--ngf", type=positive_int, default=None, help="generator width of a baseline (translate: pix2pixhd, pix2pix; deblur: DeblurGAN, MSG U-Net)")
    g.add_argument("--n-blocks", type=positive_int, default=None, help="DeblurGAN ResBlocks")
    g.add_argument("--hr-window", type=positive_int, default=None,
                   help="ASAP: the per-pixel MLPs read the k x k neighbourhood (odd k; default 1, the paper)")
    g.add_argument("--lr-norm", choices=["instance", "batch", "none"], default=None,
                   help="ASAP: LR-stream normalisation (default instance)")
    if "--val-images" not in p._option_string_actions:  # shared with --task denoise in `asapnet train`
        g.add_argument("--val-images", type=non_negative_int, default=None,
                       help="held-out images scored every checkpoint (default: deblur 0, denoise 3)")
    g.add_argument("--time-budget", type=positive_float, default=None, metavar="MIN",
                   help="stop after this many minutes (wall clock) and write the checkpoint "
                        "(denoise: the learning-rate decay follows the budget)")


def add_evaluate_deblur_args(p: argparse.ArgumentParser, shared: bool = True) -> None:
    """Options of ``asapnet evaluate --task deblur`` (the lead adds ``--task``).

    With ``shared=False`` the options a sibling task may already define (--checkpoint, --data,
    --data-root, --seed, --json, --threads) are left out; :func:`cmd_evaluate_deblur` accepts a
    single ``--checkpoint`` string and a ``--data`` string or list as well.
    """
    if shared:
        p.add_argument("--checkpoint", nargs="+", required=True, metavar="[NAME=]PATH",
                       help="generator .safetensors file(s); NAME labels the row")
        p.add_argument("--data", nargs="*", default=None,
                       help="folder(s) of sharp test images (default: the held-out synthetic set)")
        p.add_argument("--data-root", default=None)
        p.add_argument("--seed", type=non_negative_int, default=0, help="blur seed")
        p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
        p.add_argument("--threads", type=positive_int, default=None)
        add_device_arg(p, "the generators run there, the metrics on the CPU")
    p.add_argument("--scale", type=positive_float, default=1.0, help="resize factor of --data images (deblur)")
    p.add_argument("--fid", action="store_true", help="also FID (needs the InceptionV3 weights; deblur)")


def add_deblur_parser(sub) -> argparse.ArgumentParser:
    """Add the ``deblur`` subcommand to an ``add_subparsers()`` object."""
    p = sub.add_parser("deblur", help="deblur RGB photos with a trained generator")
    p.add_argument("inputs", nargs="+", help="image files")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--checkpoint", required=True, help="generator .safetensors (asapnet train --task deblur)")
    p.add_argument("--blur-seed", type=non_negative_int, default=None,
                   help="treat the inputs as sharp and apply the deterministic blur of this seed first; reports PSNR")
    add_on_error_arg(p)
    p.add_argument("--threads", type=positive_int, default=None)
    add_device_arg(p)
    return p


def add_evaluate_translate_args(p: argparse.ArgumentParser, shared: bool = True) -> None:
    """Options of ``asapnet evaluate --task translate``.

    With ``shared=False`` the options a sibling task may already define (--checkpoint, --data,
    --data-root, --metrics, --json, --threads) are not added; :func:`cmd_evaluate_translate` then
    accepts ``--checkpoint`` / ``--data`` as a string or a list.
    """
    if shared:
        p.add_argument("--checkpoint", nargs="+", default=None, metavar="[NAME=]PATH",
                       help="generator .safetensors file(s), NAME labels the row (default: the shipped model)")
        p.add_argument("--data", default=None, help="data folder (default: see --dataset)")
        p.add_argument("--data-root", default=None, help="default $ASAPNET_DATA or ../shared/data")
        p.add_argument("--metrics", default=None,
                       help=f"comma-separated, from {','.join(ALL_METRICS)} (default {','.join(TABLE_METRICS)}; "
                            f"--dataset cityscapes: {','.join(DEFAULT_METRICS)})")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.add_argument("--threads", type=positive_int, default=None)
        add_device_arg(p, "the generators run there, the metrics on the CPU")
    p.add_argument("--dataset", choices=EVALUATE_DATASETS, default=None,
                   help="cityscapes-pix2pix: <data-root>/cityscapes_pix2pix/val; facades: <data-root>/facades_cmp/test "
                        "(both: a table with the checkpoints, two trivial images and the real photos); cityscapes: "
                        "the held-out pairs of <data-root>/cityscapes_samples, one checkpoint (default: the "
                        "checkpoint's training dataset)")
    p.add_argument("--limit", type=positive_int, default=None, help="score only the first N images (cityscapes-pix2pix, facades)")
    p.add_argument("--tile", type=positive_int, default=None, help="tile size S of tile_contrast / seam_ratio "
                                                         "(default: the ASAP checkpoint's S, else 16)")
    p.add_argument("--train-data", default=None, help="training split the trivial images are computed on "
                                                      "(default: the 'train' folder next to the data folder)")
    p.add_argument("--trivial-sample", type=positive_int, default=300,
                   help="training photos (evenly spaced) the trivial images are computed from (default 300)")
    p.add_argument("--split", default="train", help="cityscapes: {split}_label/_img/_inst folders to read (default train)")
    p.add_argument("--pairs", choices=["heldout", "all"], default="heldout",
                   help="cityscapes: score only pairs the checkpoint was not trained on (default) or all")
    p.add_argument("--holdout", type=positive_int, default=None, help="cityscapes: score the last K pairs instead")
    p.add_argument("--size", default=None, help="HxW to generate at (default: the checkpoint's training size; "
                                                "256x512 for cityscapes-pix2pix, 256x256 for facades)")
    p.add_argument("--segmenter", default=None, help="segmenter .safetensors for segscore")
    p.add_argument("--fid-weights", default=None, help="local InceptionV3 FID weights file")


def add_train_segment_args(p: argparse.ArgumentParser) -> None:
    """Options only ``asapnet train --task segment`` uses (the rest are shared with ``train``:
    --dataset --data-root --data --holdout --steps --batch-size --crop --load-size --out --threads
    --seed --quiet)."""
    p.add_argument("--seg-arch", default="lraspp_mobilenet_v3_large", choices=SEGMENT_ARCHITECTURES,
                   help="segmentation architecture (--task segment)")
    p.add_argument("--seg-lr", type=float, default=1e-3, help="AdamW learning rate (--task segment)")
    p.add_argument("--seg-limit", type=int, default=None,
                   help="train on the first N photos only (--task segment --dataset cityscapes-pix2pix|facades)")
