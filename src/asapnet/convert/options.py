"""The reference code bases' architecture options (not stored in their weights): defaults per code base and
dataset option file (:data:`DATASET_DEFAULTS`), and :func:`reference_options`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ..options import CONVERT_SOURCES

#: reference code bases that can be converted (``--from``)
SOURCES = CONVERT_SOURCES  # ("asapnet", "spade", "pix2pixhd")


# Option defaults of each reference code base without a dataset (its base_options.py plus the
# generator's own defaults), then what each dataset option file of the reference sets.
_BASE: Dict[str, Dict[str, Any]] = {
    "asapnet": dict(label_nc=182, contain_dontcare_label=False, instance=True, crop_size=512, aspect_ratio=1.0,
                    norm_g="instanceaffine", lr_instance=True),
    "spade": dict(label_nc=182, contain_dontcare_label=False, instance=True, crop_size=512, aspect_ratio=1.0,
                  norm_g="spectralspadesyncbatch3x3", num_upsampling_layers="normal"),
    "pix2pixhd": dict(label_nc=35, contain_dontcare_label=False, instance=True, crop_size=None, aspect_ratio=1.0,
                      norm_g="instance"),
}


DATASET_DEFAULTS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "asapnet": {
        "cityscapes": dict(label_nc=35, contain_dontcare_label=False, instance=True, lr_instance=True,
                           crop_size=512, aspect_ratio=2.0),
        # lr_padding: not in the dataset option file, but every released Facades model was trained
        # and tested with --reflection_pad (test_facades512.sh, test_facades1024.sh)
        "facades": dict(label_nc=13, contain_dontcare_label=False, instance=False, lr_instance=False,
                        crop_size=256, aspect_ratio=1.0, lr_padding="reflect"),
    },
    "spade": {
        "cityscapes": dict(label_nc=35, contain_dontcare_label=False, instance=True, crop_size=512,
                           aspect_ratio=2.0, num_upsampling_layers="more"),
        "ade20k": dict(label_nc=150, contain_dontcare_label=True, instance=False, crop_size=256, aspect_ratio=1.0),
        "coco": dict(label_nc=182, contain_dontcare_label=True, instance=True, crop_size=256, aspect_ratio=1.0),
    },
    "pix2pixhd": {
        "cityscapes": dict(label_nc=35, contain_dontcare_label=False, instance=True),
    },
}


DATASETS = tuple(sorted({d for per in DATASET_DEFAULTS.values() for d in per}))


@dataclass
class ReferenceOptions:
    """The reference command-line options that fix a generator's architecture.

    Names follow the reference options (``--label_nc`` -> ``label_nc``; ``instance`` is the
    instance-edge input channel, ``--no_instance`` / ``--no_instance_edge`` off). Fields of another
    code base are ignored.

    Attributes:
        source: ``"asapnet"``, ``"spade"`` or ``"pix2pixhd"``.
        label_nc: label classes (without the don't-care class).
        contain_dontcare_label: one more input channel for the don't-care class (id ``label_nc``).
        instance: an instance-edge channel follows the label channels.
        crop_size, aspect_ratio: training crop width and width/height ratio; they fix S for
            ASAP-Net (S = crop_size // (16 * aspect_ratio)) and the latent grid of a SPADE VAE.
        output_nc: output image channels.
        norm_g: ``--norm_G`` (ASAP-Net, SPADE) or ``--norm`` (pix2pixHD).
        lr_width, lr_max_width, lr_depth, hr_width, hr_depth, learned_ds_factor, lr_instance:
            ASAP-Net options of the same names.
        lr_padding: ``"zeros"``, or ``"reflect"`` / ``"replicate"`` for ``--reflection_pad`` /
            ``--replicate_pad`` (ASAP-Net; ``--dataset facades`` sets ``"reflect"``, the option
            the released Facades models were trained and tested with).
        positional_encoding: ``--hr_coor cosine`` (True) or ``None`` (ASAP-Net).
        ngf: generator width (SPADE, pix2pixHD).
        num_upsampling_layers, use_vae, z_dim: SPADE options.
        netg, n_downsample_global, n_blocks_global, n_local_enhancers, n_blocks_local: pix2pixHD
            options (``netg`` ``"global"`` or ``"local"``).

    Raises:
        ValueError: unknown source or invalid values.
    """

    source: str
    label_nc: int
    contain_dontcare_label: bool = False
    instance: bool = True
    crop_size: Optional[int] = 512
    aspect_ratio: float = 1.0
    output_nc: int = 3
    norm_g: str = ""
    lr_width: int = 64
    lr_max_width: int = 1024
    lr_depth: int = 7
    hr_width: int = 64
    hr_depth: int = 5
    learned_ds_factor: int = 16
    lr_instance: bool = True
    lr_padding: str = "zeros"
    positional_encoding: bool = True
    ngf: int = 64
    num_upsampling_layers: str = "normal"
    use_vae: bool = False
    z_dim: int = 256
    netg: str = "global"
    n_downsample_global: int = 4
    n_blocks_global: int = 9
    n_local_enhancers: int = 1
    n_blocks_local: int = 3

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown reference {self.source!r}; known: {'|'.join(SOURCES)}")
        if self.label_nc < 1 or self.output_nc < 1:
            raise ValueError(f"label_nc and output_nc must be >= 1, got {self.label_nc}, {self.output_nc}")
        if self.lr_padding not in ("zeros", "reflect", "replicate"):
            raise ValueError(f"lr_padding must be zeros|reflect|replicate, got {self.lr_padding!r}")
        if self.num_upsampling_layers not in ("normal", "more", "most"):
            raise ValueError(f"num_upsampling_layers must be normal|more|most, got {self.num_upsampling_layers!r}")
        if self.netg not in ("global", "local"):
            raise ValueError(f"netg must be global|local, got {self.netg!r}")

    @property
    def num_classes(self) -> int:
        """Label channels of the input: label_nc (+1 with the don't-care class)."""
        return self.label_nc + int(self.contain_dontcare_label)

    @property
    def semantic_nc(self) -> int:
        """Input channels: label channels (+1 instance-edge channel)."""
        return self.num_classes + int(self.instance)

    def to_dict(self) -> Dict[str, Any]:
        """The options that matter for ``source`` (the common ones and its own), as plain data."""
        keep = _COMMON_FIELDS + _SOURCE_FIELDS[self.source]
        return {k: v for k, v in dataclasses.asdict(self).items() if k in keep}


_COMMON_FIELDS = ("source", "label_nc", "contain_dontcare_label", "instance", "crop_size", "aspect_ratio", "output_nc",
                  "norm_g")


_SOURCE_FIELDS = {
    "asapnet": ("lr_width", "lr_max_width", "lr_depth", "hr_width", "hr_depth", "learned_ds_factor", "lr_instance",
                "lr_padding", "positional_encoding"),
    "spade": ("ngf", "num_upsampling_layers", "use_vae", "z_dim"),
    "pix2pixhd": ("ngf", "netg", "n_downsample_global", "n_blocks_global", "n_local_enhancers", "n_blocks_local"),
}


def reference_options(source: str, dataset: Optional[str] = None, **overrides: Any) -> ReferenceOptions:
    """Options of a reference checkpoint: the reference defaults of ``source``, then those of
    ``dataset`` (as its dataset option file sets them), then ``overrides`` (``None`` values are
    ignored, so argparse namespaces can be passed through).

    Raises:
        ValueError: unknown source, a dataset without defaults for that source, unknown override
            names or invalid values.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown reference {source!r}; known: {'|'.join(SOURCES)}")
    opts: Dict[str, Any] = dict(_BASE[source])
    if dataset is not None:
        if dataset not in DATASET_DEFAULTS[source]:
            raise ValueError(f"the {source} reference has no option defaults for dataset {dataset!r}; "
                             f"known: {'|'.join(DATASET_DEFAULTS[source])}")
        opts.update(DATASET_DEFAULTS[source][dataset])
    names = {f.name for f in dataclasses.fields(ReferenceOptions)} - {"source"}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown reference options: {sorted(unknown)}")
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return ReferenceOptions(source=source, **opts)
