"""The options of ``asapnet train --task translate`` as a typed dataclass with the command's defaults
(:class:`TranslateTrainOptions`); the command line fills it (:func:`asapnet.options.from_args`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union


@dataclass
class TranslateTrainOptions:
    """Options of ``asapnet train --task translate`` (label->photo or A|B image->image GAN training);
    the defaults are the command's. The fields are the command-line options without their dashes."""

    batch_size: int = 1
    checkpoint_every: int = 100
    crop: Optional[Tuple[int, int]] = (256, 512)
    data: Optional[str] = None
    data_root: Optional[str] = None
    dataset: str = 'cityscapes'
    device: str = 'cpu'
    direction: str = 'AtoB'
    head_init: str = 'hyper'
    head_modulation: float = 0.3
    holdout: int = 0
    hr_weight_scale: Optional[str] = None
    image_dir: Optional[str] = None
    init: Optional[str] = None
    inst_dir: Optional[str] = None
    label_dir: Optional[str] = None
    lambda_feat: float = 10.0
    lambda_l1: float = 0.0
    lambda_vgg: float = 10.0
    load_size: Optional[Tuple[int, int]] = None
    lr_d: float = 0.0004
    lr_g: float = 0.0001
    model: str = 'asap'
    n_layers_d: int = 4
    ndf: int = 64
    ngf: Optional[int] = None
    no_gan: bool = False
    no_instance: bool = False
    no_vgg: bool = False
    num_classes: int = 35
    num_d: int = 2
    out: str = 'runs/asap'
    overwrite: bool = False
    param_upsampling: Optional[str] = None
    precision: str = 'fp32'
    preset: str = 'cityscapes-256x512-cpu'
    quiet: bool = False
    resume: bool = False
    sample_every: int = 100
    seed: int = 0
    steps: int = 1000
    threads: Optional[int] = None
    time_budget: Optional[float] = None


@dataclass
class TranslateRunOptions:
    """Options of ``asapnet translate``; the defaults are the command's. The fields are the command-line options
    without their dashes (``inputs``: the files, ``out``: the output folder)."""

    inputs: List[str]
    out: str
    checkpoint: Optional[str] = None
    instance_dir: Optional[str] = None
    mode: str = "auto"
    on_error: str = "stop"
    device: str = "cpu"
    precision: str = "fp32"
    threads: Optional[int] = None


@dataclass
class TranslateEvaluateOptions:
    """Options of ``asapnet evaluate --task translate``; the defaults are the command's. The fields are the command-
    line options without their dashes; ``checkpoint``: ``[NAME=]PATH`` specs (default: the shipped model);
    ``data``: one folder."""

    checkpoint: Union[str, List[str], None] = None
    data: Union[str, List[str], None] = None
    dataset: Optional[str] = None
    metrics: Optional[str] = None
    size: Optional[str] = None
    split: str = "train"
    pairs: str = "heldout"
    holdout: Optional[int] = None
    limit: Optional[int] = None
    tile: Optional[int] = None
    train_data: Optional[str] = None
    trivial_sample: int = 300
    segmenter: Optional[str] = None
    fid_weights: Optional[str] = None
    data_root: Optional[str] = None
    json: bool = False
    device: str = "cpu"
    threads: Optional[int] = None


@dataclass
class TranslateExportOptions:
    """Options of ``asapnet export``; the defaults are the command's. The fields are the command-line
    options without their dashes; ``checkpoint`` None: the shipped Cityscapes model; ``verify_sizes``
    None: two sizes chosen from the model's tile size."""

    out: str
    checkpoint: Optional[str] = None
    opset: Optional[int] = None
    dynamo: bool = False
    verify_sizes: Optional[List[Tuple[int, int]]] = None
    no_verify: bool = False
    threads: Optional[int] = None
