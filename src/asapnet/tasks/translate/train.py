"""``asapnet train --task translate``: label->photo (or A|B image->image) GAN training from the
command line's options (datasets, generator, discriminator, :class:`asapnet.training.trainer.Trainer`)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .config import TranslateTrainOptions

logger = logging.getLogger(__name__)


def cmd_train_translate(opts: TranslateTrainOptions) -> int:
    """``asapnet train --task translate``: label->photo (or A|B image->image) GAN training."""
    from ...options import check_precision
    from ...config import DiscriminatorConfig, TrainConfig, asap_preset
    from ...console import quiet
    from ...data.datasets import AlignedABDataset, LabelPhotoDataset, cityscapes_pairs, data_root, pairs_from_folders
    from ...data.io import DataError
    from ...models import create_model
    import torch

    from ...training.trainer import Trainer, require_loss_term
    from ...training.loop import train
    from ...training.run_dir import prepare_run_dir

    precision = opts.precision
    check_precision(precision, opts.device, training=True)  # before any data is read
    # before any data is read (train() checks the trainer's config again)
    require_loss_term(not opts.no_gan, 0.0 if opts.no_vgg else opts.lambda_vgg, opts.lambda_l1)

    if opts.dataset == "ab":
        full = AlignedABDataset(opts.data, opts.direction, opts.load_size, flip=True)
        num_classes, use_instance = None, False
        in_ch = 3
        make = lambda idx: _Subset(full, idx)  # noqa: E731
        n = len(full)
    elif opts.dataset in ("cityscapes-pix2pix", "facades"):
        from ...data.cityscapes import Pix2PixCityscapes
        from ...data.facades import FacadesCMP
        cls, name, val_split = ((Pix2PixCityscapes, "cityscapes_pix2pix", "val") if opts.dataset == "cityscapes-pix2pix"
                                else (FacadesCMP, "facades_cmp", "test"))
        root = Path(opts.data or data_root(opts.data_root) / name)
        size = opts.load_size or ((256, 512) if cls is Pix2PixCityscapes else (256, 256))
        split_set = cls(root / "train", size=size, flip=True)
        num_classes, use_instance, in_ch = cls.num_classes, False, cls.in_channels
        val_split_set = cls(root / val_split, size=size, limit=opts.holdout) if opts.holdout else None
        n = len(split_set) + opts.holdout  # the hold-out comes from the other split
        make = None
    else:
        if opts.dataset == "cityscapes":
            pairs = cityscapes_pairs(opts.data or data_root(opts.data_root) / "cityscapes_samples", "train")
        elif opts.dataset == "cityscapes-official":
            from ...data.cityscapes import official_pairs
            pairs = official_pairs(opts.data or data_root(opts.data_root) / "cityscapes", "train")
        else:
            if not (opts.label_dir and opts.image_dir):
                raise DataError("--dataset folders needs --label-dir and --image-dir")
            pairs = pairs_from_folders(opts.label_dir, opts.image_dir, opts.inst_dir)
        num_classes, use_instance = opts.num_classes, not opts.no_instance
        in_ch = num_classes + int(use_instance)
        n = len(pairs)
        make = lambda idx, flip=True: LabelPhotoDataset([pairs[i] for i in idx], num_classes, use_instance,  # noqa
                                                        opts.load_size, flip=flip)
    if opts.holdout >= n:
        raise DataError(f"--holdout {opts.holdout} leaves no training pairs (dataset has {n})")
    if make is None:
        train_set, val_set = split_set, val_split_set
    else:
        train_set = make(list(range(n - opts.holdout)))
        val_set = None
        if opts.holdout:
            val_set = make(list(range(n - opts.holdout, n))) if opts.dataset == "ab" else make(list(range(n - opts.holdout, n)), False)
    device = opts.device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun
        import torch.distributed as dist
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
    if opts.model not in ("asap", "pix2pixhd", "pix2pix"):
        raise SystemExit(f"asapnet train: model {opts.model!r} is not trainable from the CLI (asap, pix2pixhd, pix2pix)")
    torch.manual_seed(opts.seed)  # reproducible initialisation of G and D (train() reseeds for the data)
    if opts.model == "asap":
        # an instance-edge channel goes to the LR stream only where the preset says so (reference)
        lr_only = asap_preset(opts.preset).lr_only_channels if use_instance else 0
        up = {k: getattr(opts, k) for k in ("param_upsampling", "hr_weight_scale") if getattr(opts, k, None)}
        gcfg = asap_preset(opts.preset, in_channels=in_ch, lr_only_channels=lr_only, **up)
        G = create_model("asap", cfg=gcfg)
        if opts.head_init == "hyper":
            from ...models.asap import init_asap_hypernetwork
            init_asap_hypernetwork(G, modulation=opts.head_modulation, last_layer=1.0)
        model_config = gcfg.to_dict()
    else:
        model_config = {"in_channels": in_ch, **({"ngf": opts.ngf} if opts.ngf else {})}
        G = create_model(opts.model, **model_config)
        gcfg = G
    init_from = None
    if opts.init:
        if opts.resume:
            raise ValueError("give either --init (new run from a checkpoint's weights) or --resume, not both")
        from ...checkpoint import init_from_checkpoint, trained_steps
        init_meta = init_from_checkpoint(G, opts.init)  # also checks the architecture fits
        init_from = {"path": str(opts.init), "step": trained_steps(init_meta)}
        logger.info(f"initialised from {opts.init} ({init_meta['model']}, step {init_from['step']})")
    tcfg = TrainConfig(steps=opts.steps, batch_size=opts.batch_size, crop=opts.crop, load_size=opts.load_size, lr_g=opts.lr_g,
                       lr_d=opts.lr_d, lambda_feat=opts.lambda_feat, lambda_vgg=0.0 if opts.no_vgg else opts.lambda_vgg,
                       lambda_l1=opts.lambda_l1, gan=not opts.no_gan, seed=opts.seed, num_threads=opts.threads,
                       sample_every=opts.sample_every, checkpoint_every=opts.checkpoint_every, device=device,
                       precision=precision)
    dcfg = DiscriminatorConfig(in_channels=in_ch + gcfg.out_channels, ndf=opts.ndf, n_layers=opts.n_layers_d,
                               num_scales=opts.num_d)
    extra = {"num_classes": num_classes, "use_instance": use_instance, "dataset": opts.dataset,
             "head_init": (f"{opts.head_init} (modulation {opts.head_modulation})" if opts.head_init == "hyper" else opts.head_init)
             if opts.model == "asap" else None,
             "command": "asapnet " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else None}
    if init_from is not None:
        extra["init_from"] = init_from
    if opts.dataset == "cityscapes-pix2pix":
        extra["label_ids"] = "cityscapes-color"  # ids sharing a colour are merged at translation time
    if opts.dataset == "facades":
        extra["label_ids"] = "cmp-facades"  # label files hold ids 1..12, the model's classes are 0..11
    if opts.dataset in ("cityscapes-pix2pix", "facades"):
        extra["train_size"] = list(size)
    if opts.dataset not in ("cityscapes-pix2pix", "facades"):
        extra["train_pairs"] = [str(getattr(p, "label", p)) for p in getattr(train_set, "pairs", [])]
    trainer = Trainer(G, opts.model, model_config, dcfg, tcfg, opts.out, num_classes=num_classes, extra_meta=extra)
    if init_from is not None and trainer.D is not None:
        from ...checkpoint import init_discriminator_from_state
        if init_discriminator_from_state(trainer.D, opts.init):
            init_from["discriminator"] = True
            logger.info(f"discriminator initialised from {opts.init}")
    budget = opts.time_budget * 60 if opts.time_budget else None
    # after --init has read its checkpoint (it may lie in the folder --overwrite clears); only the
    # main process deletes, and nobody writes to the folder before every process has checked it
    prepare_run_dir(opts.out, opts.resume, opts.overwrite, clear=trainer.is_main)
    if trainer.distributed:
        import torch.distributed as dist
        dist.barrier()
    train(trainer, train_set, val_set, resume=opts.resume, progress=not (opts.quiet or quiet()), time_budget_s=budget)
    if trainer.distributed:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    if trainer.is_main:
        logger.info(f"done: step {trainer.step}, checkpoint {Path(opts.out) / 'generator.safetensors'}")
    return 0


class _Subset:
    def __init__(self, ds, idx):
        self.ds, self.idx = ds, idx

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.ds[self.idx[i]]
