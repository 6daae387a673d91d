"""``asapnet`` command line: a thin shell over the library.

    asapnet train --dataset cityscapes --preset cityscapes-cpu --steps 2000 --out runs/cs
    asapnet translate LABEL.png... -o OUTDIR [--checkpoint PATH]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .bench import add_parser as _add_bench, cmd_bench
from .data.io import DataError
from .demo import add_demo_parser, cmd_demo
from .export import add_export_parser, cmd_export


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
    p = sub.add_parser("train", help="train a generator (SPADE-style GAN, paper §3.4)")
    p.add_argument("--dataset", choices=["cityscapes", "folders", "ab"], default="cityscapes",
                   help="cityscapes: {train_label,train_inst,train_img} layout; folders: paired folders "
                        "matched by stem; ab: pix2pix side-by-side A|B images")
    p.add_argument("--data-root", default=None, help="data folder (default $ASAPNET_DATA or ../shared/data)")
    p.add_argument("--data", default=None, help="dataset folder (default <data-root>/cityscapes_samples)")
    p.add_argument("--label-dir"), p.add_argument("--image-dir"), p.add_argument("--inst-dir")
    p.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"])
    p.add_argument("--num-classes", type=int, default=35)
    p.add_argument("--no-instance", action="store_true", help="do not use instance edge maps")
    p.add_argument("--model", default="asap")
    p.add_argument("--preset", default="cityscapes-cpu", help="ASAP config preset (see asapnet.ASAP_PRESETS)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--crop", type=parse_size, default=(256, 512), help="HxW training crop or 'none'")
    p.add_argument("--load-size", type=parse_size, default=None, help="resize inputs to HxW first")
    p.add_argument("--lr-g", type=float, default=1e-4), p.add_argument("--lr-d", type=float, default=4e-4)
    p.add_argument("--lambda-feat", type=float, default=10.0)
    p.add_argument("--lambda-vgg", type=float, default=10.0)
    p.add_argument("--no-vgg", action="store_true", help="train without the VGG19 perceptual loss")
    p.add_argument("--lambda-l1", type=float, default=0.0)
    p.add_argument("--no-gan", action="store_true", help="no discriminator (reconstruction losses only)")
    p.add_argument("--ndf", type=int, default=64), p.add_argument("--n-layers-d", type=int, default=4)
    p.add_argument("--num-d", type=int, default=2, help="discriminator scales")
    p.add_argument("--holdout", type=int, default=0, help="hold the last K pairs out for validation")
    p.add_argument("--out", default="runs/asap", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from <out>/state.safetensors")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-every", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_train(a: argparse.Namespace) -> int:
    from .config import DiscriminatorConfig, TrainConfig, asap_preset
    from .data.datasets import AlignedABDataset, LabelPhotoDataset, cityscapes_pairs, data_root, pairs_from_folders
    from .models import create_model
    import torch

    from .train import Trainer, train

    if a.dataset == "ab":
        full = AlignedABDataset(a.data, a.direction, a.load_size, flip=True)
        num_classes, use_instance = None, False
        in_ch = 3
        make = lambda idx: _Subset(full, idx)  # noqa: E731
        n = len(full)
    else:
        if a.dataset == "cityscapes":
            pairs = cityscapes_pairs(a.data or data_root(a.data_root) / "cityscapes_samples", "train")
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
    train_set = make(list(range(n - a.holdout)))
    val_set = None
    if a.holdout:
        val_set = make(list(range(n - a.holdout, n))) if a.dataset == "ab" else make(list(range(n - a.holdout, n)), False)
    device = a.device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun
        import torch
        import torch.distributed as dist
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
    if a.model != "asap":
        raise SystemExit(f"asapnet train: model {a.model!r} is not trainable from the CLI yet")
    torch.manual_seed(a.seed)  # reproducible initialisation of G and D (train() reseeds for the data)
    gcfg = asap_preset(a.preset, in_channels=in_ch)
    G = create_model("asap", cfg=gcfg)
    tcfg = TrainConfig(steps=a.steps, batch_size=a.batch_size, crop=a.crop, load_size=a.load_size, lr_g=a.lr_g,
                       lr_d=a.lr_d, lambda_feat=a.lambda_feat, lambda_vgg=0.0 if a.no_vgg else a.lambda_vgg,
                       lambda_l1=a.lambda_l1, gan=not a.no_gan, seed=a.seed, num_threads=a.threads,
                       sample_every=a.sample_every, checkpoint_every=a.checkpoint_every, device=device)
    dcfg = DiscriminatorConfig(in_channels=in_ch + gcfg.out_channels, ndf=a.ndf, n_layers=a.n_layers_d,
                               num_scales=a.num_d)
    extra = {"num_classes": num_classes, "use_instance": use_instance,
             "train_pairs": [str(getattr(p, "label", p)) for p in getattr(train_set, "pairs", [])]}
    trainer = Trainer(G, "asap", gcfg.to_dict(), dcfg, tcfg, a.out, num_classes=num_classes, extra_meta=extra)
    train(trainer, train_set, val_set, resume=a.resume, progress=not a.quiet)
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
    p.add_argument("inputs", nargs="+", help="label maps (class-id PNGs)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--checkpoint", default=None, help="generator .safetensors (default: the shipped model)")
    p.add_argument("--instance-dir", default=None, help="folder of instance maps matched by stem")
    p.add_argument("--on-error", choices=["stop", "skip"], default="stop")
    p.add_argument("--threads", type=int, default=None)


def cmd_translate(a: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_generator
    from .models.inference import prepare_for_inference
    from .translate import default_checkpoint, translate_files

    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    model, meta = load_generator(ckpt)
    prepare_for_inference(model)
    print(f"model: {ckpt} ({meta['model']}, step {meta.get('step', '?')})")
    done = translate_files(model, meta, a.inputs, Path(a.out), a.instance_dir, a.on_error)
    print(f"wrote {len(done)} image(s) to {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="asapnet", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"asapnet {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_translate(sub)
    _add_bench(sub)
    add_export_parser(sub)
    add_demo_parser(sub)
    return ap


COMMANDS = {"train": cmd_train, "translate": cmd_translate, "bench": cmd_bench, "export": cmd_export,
            "demo": cmd_demo}


def main(argv: Optional[Sequence[str]] = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \udcxx escapes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"asapnet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
