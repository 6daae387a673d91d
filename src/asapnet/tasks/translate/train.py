"""``asapnet train --task translate``: label->photo (or A|B image->image) GAN training from the
command line's options (datasets, generator, discriminator, :class:`asapnet.training.trainer.Trainer`)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def cmd_train_translate(a: argparse.Namespace) -> int:
    """``asapnet train --task translate``: label->photo (or A|B image->image) GAN training."""
    from ...options import check_precision
    from ...config import DiscriminatorConfig, TrainConfig, asap_preset
    from ...console import quiet
    from ...data.datasets import AlignedABDataset, LabelPhotoDataset, cityscapes_pairs, data_root, pairs_from_folders
    from ...data.io import DataError
    from ...models import create_model
    import torch

    from ...training.trainer import Trainer
    from ...training.loop import train
    from ...training.run_dir import prepare_run_dir

    precision = getattr(a, "precision", "fp32")
    check_precision(precision, a.device, training=True)  # before any data is read

    if a.dataset == "ab":
        full = AlignedABDataset(a.data, a.direction, a.load_size, flip=True)
        num_classes, use_instance = None, False
        in_ch = 3
        make = lambda idx: _Subset(full, idx)  # noqa: E731
        n = len(full)
    elif a.dataset in ("cityscapes-pix2pix", "facades"):
        from ...data.cityscapes import Pix2PixCityscapes
        from ...data.facades import FacadesCMP
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
            from ...data.cityscapes import official_pairs
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
            from ...models.asap import init_asap_hypernetwork
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
        from ...checkpoint import init_from_checkpoint, trained_steps
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
        from ...checkpoint import init_discriminator_from_state
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
